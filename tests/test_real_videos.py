"""UCF-101 and Kinetics-600 builders on tiny generated copies in the official
layouts: clips, labels, splits, and skipped (missing / unreadable / short)
videos counted."""

import csv
import os

import imageio_ffmpeg
import jax
import mediapy
import numpy as np
import pytest

from walt.data import build
from walt.data import pipeline

mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())


def _video(path, frames, seed, h=40, w=56):
  """Writes random 8x8 colour blocks moving one block right per frame."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 255, (h // 8, w // 8, 3)).astype(np.uint8)
  v = np.stack([np.roll(base, k, axis=1) for k in range(frames)])
  v = np.repeat(np.repeat(v, 8, 1), 8, 2)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  mediapy.write_video(path, v, fps=10)
  SOURCES[str(path)] = v
  return v


SOURCES = {}  # path -> the frames written there


def _scaled_and_cropped(frames, size=32):
  """uint8 `[t, h, w, 3]` scaled so the short side is `size` (JAX's
  antialiased bicubic, not the builder's PIL), centre-cropped, rounded."""
  t, h, w, _ = frames.shape
  scale = size / min(h, w)
  hh, ww = round(h * scale), round(w * scale)
  out = np.asarray(jax.image.resize(np.asarray(frames, np.float32),
                                    (t, hh, ww, 3), 'bicubic',
                                    antialias=True))
  top, left = (hh - size) // 2, (ww - size) // 2
  return np.clip(np.round(out), 0, 255)[:, top:top + size, left:left + size]


def _assert_clip_from(clip, path, frames=5):
  """A builder example's clip against the first `frames` frames of the
  video at `path`: decoded here, they differ from the clip only by the two
  resamplers' rounding (0.1 levels on average; up to 7 where PIL clamps
  its 8-bit pass between the two axes at a block edge); the pixels written
  there, by the codec too (~3 levels on average)."""
  clip = np.asarray(clip, np.float64)
  decoded = _scaled_and_cropped(np.asarray(mediapy.read_video(path))[:frames])
  err = np.abs(clip - decoded)
  assert err.max() <= 10 and err.mean() < 0.5, (path, err.max(), err.mean())
  written = _scaled_and_cropped(SOURCES[str(path)][:frames])
  assert np.abs(clip - written).mean() < 5, path


def _read(name, data_dir, split):
  spec = pipeline.DataSpec(name=name, data_dir=data_dir, split=split,
                           frames=5, resolution=(32, 32), shuffle=False,
                           random_crop=False)
  return pipeline.data_source(spec)


def test_ucf101_builder(tmp_path):
  """Splits, labels and skips of the UCF-101 layout; every clip is the
  first 5 frames of its video, scaled and centre-cropped. Catches clips
  from the wrong frames, video or window, or with the wrong resampling."""
  manual = tmp_path / 'manual'
  classes = ['ApplyEyeMakeup', 'Basketball']
  lists = manual / 'ucfTrainTestlist'
  os.makedirs(lists)
  (lists / 'classInd.txt').write_text('1 ApplyEyeMakeup\n2 Basketball\n')
  train, test = [], []
  for k, c in enumerate(classes):
    for g in range(3):
      rel = f'{c}/v_{c}_g{g:02d}_c01.avi'
      _video(str(manual / 'UCF-101' / rel), 6, 10 * k + g)
      (train if g < 2 else test).append(rel)
  # One missing and one unreadable training video.
  train.append('Basketball/v_Basketball_g09_c01.avi')
  bad = manual / 'UCF-101' / 'Basketball' / 'v_Basketball_g08_c01.avi'
  bad.write_bytes(b'not a video')
  train.append('Basketball/v_Basketball_g08_c01.avi')
  (lists / 'trainlist01.txt').write_text(
      ''.join(f'{r} {classes.index(r.split("/")[0]) + 1}\n' for r in train))
  (lists / 'testlist01.txt').write_text(''.join(f'{r}\n' for r in test))
  builder = build.ensure_built('ucf101/5x32x32', str(tmp_path / 'data'),
                               str(manual))
  skipped = builder.info.metadata['skipped']
  assert skipped['train'] == {'missing': 1, 'unreadable': 1, 'too_short': 0}
  assert builder.info.metadata['class_names'] == classes
  source = _read('ucf101/5x32x32', str(tmp_path / 'data'), 'train')
  assert len(source) == 4
  labels = sorted(int(source[i]['label']) for i in range(4))
  assert labels == [0, 0, 1, 1]
  ex = source[0]
  assert ex['video'].shape == (5, 32, 32, 3) and ex['video'].dtype == np.uint8
  test_source = _read('ucf101/5x32x32', str(tmp_path / 'data'), 'test')
  assert len(test_source) == 2
  for src in (source, test_source):
    for i in range(len(src)):
      rel = str(src[i]['video_id'], 'utf-8')
      assert int(src[i]['label']) == classes.index(rel.split('/')[0])
      _assert_clip_from(src[i]['video'], str(manual / 'UCF-101' / rel))


def test_kinetics600_builder_and_missing_manual_dir(tmp_path):
  """Kinetics CSVs and clips: labels, skips, and each split's clip the
  first frames of its file, scaled and centre-cropped (catches clips
  from the wrong file, frames or window); no manual dir: what to do."""
  root = tmp_path / 'manual' / 'kinetics600'
  rows = {'train': [('abseiling', 'aaa', 0, 10), ('zumba', 'bbb', 5, 15),
                    ('zumba', 'ccc', 0, 10)],
          'validate': [('abseiling', 'ddd', 1, 11)]}
  for split, items in rows.items():
    os.makedirs(root, exist_ok=True)
    with open(root / f'{split}.csv', 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
      for label, yid, s, e in items:
        w.writerow([label, yid, s, e, split])
  with open(root / 'test.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['youtube_id', 'time_start', 'time_end', 'split'])
    w.writerow(['eee', 0, 10, 'test'])
  _video(str(root / 'train' / 'abseiling' / 'aaa_000000_000010.mp4'), 6, 1)
  _video(str(root / 'train' / 'zumba' / 'bbb_000005_000015.mp4'), 3, 2)  # short
  _video(str(root / 'validate' / 'ddd_000001_000011.mp4'), 8, 3)
  _video(str(root / 'test' / 'eee_000000_000010.mp4'), 5, 4)
  data_dir = str(tmp_path / 'data')
  builder = build.ensure_built('kinetics600/5x32x32', data_dir,
                               str(tmp_path / 'manual'))
  assert builder.info.metadata['skipped']['train'] == {
      'missing': 1, 'unreadable': 0, 'too_short': 1}
  train = _read('kinetics600/5x32x32', data_dir, 'train')
  assert len(train) == 1 and int(train[0]['label']) == 0
  _assert_clip_from(train[0]['video'],
                    str(root / 'train' / 'abseiling' / 'aaa_000000_000010.mp4'))
  test = _read('kinetics600/5x32x32', data_dir, 'test')
  assert len(test) == 1 and int(test[0]['label']) == -1
  _assert_clip_from(test[0]['video'],
                    str(root / 'test' / 'eee_000000_000010.mp4'))
  validation = _read('kinetics600/5x32x32', data_dir, 'validation')
  _assert_clip_from(validation[0]['video'],
                    str(root / 'validate' / 'ddd_000001_000011.mp4'))
  with pytest.raises(FileNotFoundError, match='cannot download'):
    build.ensure_built('kinetics600/5x32x32', str(tmp_path / 'other'),
                       str(tmp_path / 'nowhere'))


def test_imagenet_folder_builder(tmp_path):
  from PIL import Image
  from walt.data import real_videos
  manual = tmp_path / 'manual'
  rng = np.random.default_rng(0)
  for split, n in (('train', 2), ('val', 1)):
    for wnid in ('n01440764', 'n01443537'):
      os.makedirs(manual / split / wnid)
      for i in range(n):
        Image.fromarray(rng.integers(0, 255, (50, 70, 3), np.uint8)).save(
            manual / split / wnid / f'{i}.JPEG')
  (manual / 'train' / 'n01443537' / 'broken.JPEG').write_bytes(b'xx')
  data_dir = str(tmp_path / 'data')
  builder = build.ensure_built('imagenet_folder/1x32x32', data_dir,
                               str(manual))
  assert builder.info.metadata['skipped']['train']['unreadable'] == 1
  spec = pipeline.DataSpec(name='imagenet_folder/1x32x32', data_dir=data_dir,
                           split='validation', frames=1, resolution=(32, 32))
  source = pipeline.data_source(spec)
  assert len(source) == 2
  assert sorted(int(source[i]['label']) for i in range(2)) == [0, 1]
  # ADM's crop: short side to 32 (box halving, then bicubic), centred.
  image = rng.integers(0, 255, (100, 140, 3), np.uint8)
  out = real_videos.adm_center_crop(image, 32)
  assert out.shape == (32, 32, 3)
  small = np.asarray(Image.fromarray(image).resize((70, 50), Image.BOX).resize(
      (45, 32), Image.BICUBIC))
  np.testing.assert_array_equal(out, small[:, 6:38])


def test_webvideo_builder_keeps_captions_and_counts_skips(tmp_path):
  """Captions and skips of a path,caption collection; each clip is its
  caption's video (first frames, scaled, centre-cropped). Catches clips
  paired with another row's caption or cut from the wrong frames."""
  manual = tmp_path / 'manual'
  rows = [('clips/a.mp4', 'a dog runs on the beach', 6),
          ('clips/b.mp4', 'waves, "crashing" at night', 7),
          ('clips/short.mp4', 'too short', 3),
          ('clips/gone.mp4', 'missing file', None),
          ('clips/bad.mp4', 'unreadable', 'bad')]
  for i, (rel, _, frames) in enumerate(rows):
    if frames == 'bad':
      (manual / rel).write_bytes(b'not a video')
    elif frames is not None:
      _video(str(manual / rel), frames, i)
  with open(manual / 'train.csv', 'w', newline='', encoding='utf-8') as f:
    w = csv.writer(f)
    w.writerow(['path', 'caption'])
    w.writerows((rel, caption) for rel, caption, _ in rows)
  with open(manual / 'validation.csv', 'w', newline='') as f:
    csv.writer(f).writerows([('path', 'caption'), ('clips/a.mp4', 'again')])
  data_dir = str(tmp_path / 'data')
  builder = build.ensure_built('webvideo/5x32x32', data_dir, str(manual))
  assert builder.info.metadata['skipped']['train'] == {
      'missing': 1, 'unreadable': 1, 'too_short': 1}
  train = _read('webvideo/5x32x32', data_dir, 'train')
  got = sorted((str(train[i]['caption'], 'utf-8') if isinstance(
      train[i]['caption'], bytes) else train[i]['caption'])
               for i in range(len(train)))
  assert got == ['a dog runs on the beach', 'waves, "crashing" at night']
  assert train[0]['video'].shape == (5, 32, 32, 3)
  for i in range(len(train)):  # each clip from its caption's file
    caption = train[i]['caption']
    caption = str(caption, 'utf-8') if isinstance(caption, bytes) else caption
    rel = next(r for r, c, _ in rows if c == caption)
    _assert_clip_from(train[i]['video'], str(manual / rel))
  assert len(_read('webvideo/5x32x32', data_dir, 'validation')) == 1
  (manual / 'train.csv').write_text('file,text\nclips/a.mp4,x\n')
  with pytest.raises(ValueError, match='expected a header with path,caption'):
    build.ensure_built('webvideo/5x32x32', str(tmp_path / 'data2'),
                       str(manual))
