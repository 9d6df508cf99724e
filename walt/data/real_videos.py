r"""tfds builders for user-held copies of UCF-101, Kinetics-600, ImageNet
and captioned video collections (`webvideo`).

walt cannot download these; put your copy in a manual dir and build:

    python -m walt.data.build --dataset=ucf101/17x128x128 --data_dir=DATA \
        --manual_dir=MANUAL
    python -m walt.data.build --dataset=kinetics600/17x128x128 \
        --data_dir=DATA --manual_dir=MANUAL

Layouts (the official releases):
- UCF-101 (https://www.crcv.ucf.edu/data/UCF101.php): `MANUAL/UCF-101/<Class>/
  v_<Class>_gXX_cYY.avi` and `MANUAL/ucfTrainTestlist/{classInd.txt,
  trainlist01.txt, testlist01.txt}` (split 1).
- Kinetics-600 (https://github.com/cvdfoundation/kinetics-dataset, CSVs from
  https://deepmind.com/research/open-source/kinetics): `MANUAL/kinetics600/
  {train,validate,test}.csv` (`label,youtube_id,time_start,time_end,split`;
  test without labels) and the clips anywhere under `MANUAL/kinetics600/`,
  named `<youtube_id>_<start:06d>_<end:06d>.<ext>` as the crawlers write them.

- webvideo (WebVid-style collections of videos with captions):
  `MANUAL/train.csv` (and optionally `MANUAL/validation.csv`) with a header
  row and the columns `path,caption`; paths relative to MANUAL (or
  absolute). Configs: `base` 17x128x128, `base_wide` 17x128x224, `sr1`
  17x256x448, `sr2` 17x512x896 (the cascade's stages), `5x32x32`.

Each example is the first `frames` frames (every `frame_stride`-th) of a
video, scaled (antialiased) so its shorter side is the target size and
centre-cropped, uint8 `[frames, h, w, 3]`; `label` is the class index (-1 for
unlabelled Kinetics test clips and for webvideo, which has `caption`). Missing, unreadable or too-short videos are
skipped and counted in `info.metadata['skipped']` and the build log.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import os
from typing import Iterator

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from walt.data import shard_writer

INSTRUCTIONS = __doc__
EXAMPLES_PER_SHARD = 500
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.webm')


@dataclasses.dataclass
class ClipConfig(tfds.core.BuilderConfig):
  frames: int = 17
  height: int = 128
  width: int = 128
  frame_stride: int = 1


def _config(frames, height, width, stride=1) -> ClipConfig:
  return ClipConfig(name=f'{frames}x{height}x{width}' + (
      f'_s{stride}' if stride > 1 else ''), frames=frames, height=height,
                    width=width, frame_stride=stride,
                    description=f'{frames} frames of {height}x{width}, '
                    f'stride {stride}')


def read_video(path: str) -> np.ndarray:
  """uint8 `[t, h, w, 3]` (ffmpeg bundled by imageio-ffmpeg)."""
  import imageio_ffmpeg  # pylint: disable=g-import-not-at-top
  import mediapy  # pylint: disable=g-import-not-at-top
  mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())
  return np.asarray(mediapy.read_video(path))


def scale_and_center_crop(frames: np.ndarray, height: int, width: int
                          ) -> np.ndarray:
  """Antialiased resize so the frame covers `height x width`, then centre
  crop; uint8 `[t, h, w, 3]` -> `[t, height, width, 3]`."""
  h, w = frames.shape[1:3]
  scale = max(height / h, width / w)
  size = (max(width, round(w * scale)), max(height, round(h * scale)))
  out = []
  for f in frames:
    img = Image.fromarray(f).resize(size, Image.Resampling.BICUBIC,
                                    reducing_gap=None)
    x = np.asarray(img)
    top, left = (x.shape[0] - height) // 2, (x.shape[1] - width) // 2
    out.append(x[top:top + height, left:left + width])
  return np.stack(out)


class _ManualVideoBuilder(tfds.core.GeneratorBasedBuilder):
  """Shared: reading, clipping, skipping, shard-by-shard writing."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  NUM_CLASSES = 0
  CAPTIONS = False  # items carry a caption (a `caption` text feature)

  def __init__(self, *, file_format='array_record', **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    raw = tfds.features.Encoding.BYTES
    features = {
        'video': tfds.features.Tensor(
            shape=(c.frames, c.height, c.width, 3), dtype=np.uint8,
            encoding=raw),
        'label': tfds.features.Scalar(dtype=np.int64),
        'video_id': tfds.features.Text(),
        'index': tfds.features.Scalar(dtype=np.int64),
    }
    if self.CAPTIONS:
      features['caption'] = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self, description=self.__doc__,
        features=tfds.features.FeaturesDict(features),
        supervised_keys=('video', 'label'),
        metadata=tfds.core.MetadataDict(),
    )

  # Subclasses: (split -> [(video_id, path or None, label[, caption])],
  # class names).
  def _index(self, manual_dir: str):
    raise NotImplementedError

  def _read(self, path: str) -> np.ndarray:
    return read_video(path)

  def _download_and_prepare(self, dl_manager, download_config=None):
    del download_config
    try:
      manual_dir = os.fspath(dl_manager.manual_dir)
    except AssertionError as e:  # tfds: missing or empty manual dir
      raise FileNotFoundError(
          f'{self.name}: {e}\nwalt cannot download this data set: get it '
          'from the address above, lay it out as described and pass '
          '--manual_dir (python -m walt.data.build)') from None
    splits, names = self._index(manual_dir)
    self._skipped = {}
    shards = {}
    for split, items in splits.items():
      self._skipped[split] = {'missing': 0, 'unreadable': 0, 'too_short': 0}
      shards[split] = [functools.partial(self._examples, split,
                                         items[i:i + EXAMPLES_PER_SHARD], i)
                       for i in range(0, len(items), EXAMPLES_PER_SHARD)]
    shard_writer.write_splits(self, shards)
    self.info.metadata['class_names'] = list(names)
    self.info.metadata['skipped'] = self._skipped
    logging.info('%s: skipped %s', self.name, self._skipped)

  def _split_generators(self, dl_manager):
    raise NotImplementedError('written by _download_and_prepare')

  def _generate_examples(self, **kwargs):
    raise NotImplementedError('written by _download_and_prepare')

  def _examples(self, split: str, items, offset: int
                ) -> Iterator[tuple[int, dict]]:
    c = self.builder_config
    need = (c.frames - 1) * c.frame_stride + 1
    for i, (video_id, path, label, *caption) in enumerate(items):
      skipped = self._skipped[split]
      if path is None:
        skipped['missing'] += 1
        continue
      try:
        video = self._read(path)
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('skipping unreadable %s: %s', path, e)
        skipped['unreadable'] += 1
        continue
      if video.ndim != 4 or len(video) < need:
        skipped['too_short'] += 1
        continue
      clip = video[:need:c.frame_stride]
      if clip.shape[1:3] != (c.height, c.width):
        clip = scale_and_center_crop(clip, c.height, c.width)
      example = {'video': clip, 'label': int(label), 'video_id': video_id,
                 'index': offset + i}
      if self.CAPTIONS:
        example['caption'] = caption[0]
      yield offset + i, example


class Ucf101(_ManualVideoBuilder):
  """UCF-101 (split 1) from a user-held copy."""

  NUM_CLASSES = 101
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  BUILDER_CONFIGS = [_config(17, 128, 128), _config(17, 64, 64),
                     _config(5, 32, 32)]

  def _index(self, manual_dir):
    lists = os.path.join(manual_dir, 'ucfTrainTestlist')
    videos = os.path.join(manual_dir, 'UCF-101')
    for p in (lists, videos):
      if not os.path.isdir(p):
        raise FileNotFoundError(f'ucf101: {p} is missing (see {__name__})')
    with open(os.path.join(lists, 'classInd.txt')) as f:
      names = [line.split()[1] for line in f if line.strip()]
    index = {n: i for i, n in enumerate(names)}
    splits = {}
    for split, name in (('train', 'trainlist01.txt'), ('test', 'testlist01.txt')):
      items = []
      with open(os.path.join(lists, name)) as f:
        for line in f:
          if not line.strip():
            continue
          rel = line.split()[0]
          path = os.path.join(videos, rel)
          items.append((rel, path if os.path.exists(path) else None,
                        index[rel.split('/')[0]]))
      splits[split] = items
    return splits, names


class Kinetics600(_ManualVideoBuilder):
  """Kinetics-600 from a user-held copy (official CSVs + clips)."""

  NUM_CLASSES = 600
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  BUILDER_CONFIGS = [_config(17, 128, 128), _config(17, 64, 64),
                     _config(5, 32, 32)]
  SPLITS = {'train': 'train.csv', 'validation': 'validate.csv',
            'test': 'test.csv'}

  def _index(self, manual_dir):
    root = os.path.join(manual_dir, 'kinetics600')
    if not os.path.isdir(root):
      raise FileNotFoundError(f'kinetics600: {root} is missing (see '
                              f'{__name__})')
    files = {}
    for path in glob.glob(os.path.join(root, '**', '*'), recursive=True):
      stem, ext = os.path.splitext(os.path.basename(path))
      if ext.lower() in VIDEO_EXTENSIONS:
        files.setdefault(stem, path)
    rows = {}
    for split, name in self.SPLITS.items():
      path = os.path.join(root, name)
      if os.path.exists(path):
        with open(path, newline='') as f:
          rows[split] = list(csv.DictReader(f))
    if 'train' not in rows:
      raise FileNotFoundError(f'kinetics600: {root}/train.csv is missing '
                              '(the class list comes from it)')
    names = sorted({r['label'] for r in rows['train']})
    index = {n: i for i, n in enumerate(names)}
    splits = {}
    for split, split_rows in rows.items():
      items = []
      for r in split_rows:
        video_id = (f'{r["youtube_id"]}_{int(float(r["time_start"])):06d}_'
                    f'{int(float(r["time_end"])):06d}')
        label = index.get(r.get('label') or '', -1)
        items.append((video_id, files.get(video_id), label))
      splits[split] = items
    return splits, names


class Webvideo(_ManualVideoBuilder):
  """Videos with captions (WebVid-style) from a user-held collection:
  `train.csv` / `validation.csv` of `path,caption` beside the files."""

  CAPTIONS = True
  MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
  BUILDER_CONFIGS = [
      ClipConfig(name='base', frames=17, height=128, width=128),
      ClipConfig(name='base_wide', frames=17, height=128, width=224),
      ClipConfig(name='sr1', frames=17, height=256, width=448),
      ClipConfig(name='sr2', frames=17, height=512, width=896),
      _config(5, 32, 32)]
  SPLITS = {'train': 'train.csv', 'validation': 'validation.csv'}

  def _index(self, manual_dir):
    if not os.path.exists(os.path.join(manual_dir, self.SPLITS['train'])):
      raise FileNotFoundError(f'webvideo: {manual_dir}/train.csv is missing '
                              f'(see {__name__})')
    splits = {}
    for split, name in self.SPLITS.items():
      path = os.path.join(manual_dir, name)
      if not os.path.exists(path):
        continue
      with open(path, newline='', encoding='utf-8') as f:
        reader = csv.DictReader(f)
        if not {'path', 'caption'} <= set(reader.fieldnames or ()):
          raise ValueError(f'webvideo: {path} has columns {reader.fieldnames}'
                           '; expected a header with path,caption')
        items = []
        for row in reader:
          video = os.path.join(manual_dir, row['path'])
          items.append((row['path'], video if os.path.exists(video) else None,
                        -1, row['caption'].strip()))
      splits[split] = items
    return splits, []


def adm_center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """ADM's `center_crop_arr`: halve with a box filter while the short side is
  >= 2x `size`, bicubic-resize the short side to `size`, centre-crop."""
  img = Image.fromarray(image)
  while min(img.size) >= 2 * size:
    img = img.resize(tuple(x // 2 for x in img.size), Image.Resampling.BOX)
  scale = size / min(img.size)
  img = img.resize(tuple(round(x * scale) for x in img.size),
                   Image.Resampling.BICUBIC)
  x = np.asarray(img.convert('RGB'))
  top, left = (x.shape[0] - size) // 2, (x.shape[1] - size) // 2
  return x[top:top + size, left:left + size]


class ImagenetFolder(_ManualVideoBuilder):
  """ImageNet (ILSVRC-2012) from a user-held copy arranged by class:
  `MANUAL/train/<wnid>/*.JPEG` and `MANUAL/val/<wnid>/*.JPEG` (the layout
  of torchvision / ADM). Class index = position of the wnid in sorted order.
  Each example is a 1-frame `video` `[1, s, s, 3]` centre-cropped as ADM does
  (`adm_center_crop`), so images go through the video pipeline unchanged."""

  NUM_CLASSES = 1000
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      'Get ILSVRC-2012 from https://image-net.org (train and val), arrange '
      'val by class like train, and pass the folder holding train/ and val/ '
      'as --manual_dir.')
  BUILDER_CONFIGS = [_config(1, 256, 256), _config(1, 64, 64),
                     _config(1, 32, 32)]

  def _index(self, manual_dir):
    splits = {}
    train = os.path.join(manual_dir, 'train')
    if not os.path.isdir(train):
      raise FileNotFoundError(f'imagenet_folder: {train} is missing')
    names = sorted(d for d in os.listdir(train)
                   if os.path.isdir(os.path.join(train, d)))
    index = {n: i for i, n in enumerate(names)}
    for split, folder in (('train', 'train'), ('validation', 'val')):
      root = os.path.join(manual_dir, folder)
      if not os.path.isdir(root):
        continue
      items = []
      for wnid in sorted(os.listdir(root)):
        if wnid not in index:
          continue
        for f in sorted(os.listdir(os.path.join(root, wnid))):
          items.append((f'{wnid}/{f}', os.path.join(root, wnid, f),
                        index[wnid]))
      splits[split] = items
    return splits, names

  def _read(self, path: str) -> np.ndarray:
    with Image.open(path) as img:
      image = np.asarray(img.convert('RGB'))
    return adm_center_crop(image, self.builder_config.height)[None]
