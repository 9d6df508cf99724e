"""The Grain input pipeline: determinism, process slices, resume, sharding,
and bad records (skipped, counted, fatal when too many)."""

import glob
import json
import os
import shutil

import jax
import numpy as np
import pytest

from tests.conftest import TINY_DATASET
from walt.data import pipeline
from walt.data import sprites
from walt.parallel import mesh as mesh_lib


def _spec(data_dir, **kw):
  kw = {'frames': 5, 'resolution': (32, 32), 'num_threads': 2, **kw}
  return pipeline.DataSpec(name=TINY_DATASET, data_dir=data_dir, **kw)


def _host_batches(ds, n, start=0):
  return [ds[i] for i in range(start, start + n)]


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))


def test_same_seed_same_batches_other_seed_other_order(sprites_data_dir):
  spec = _spec(sprites_data_dir, image_fraction=0.25)
  make = lambda seed: pipeline.make_dataset(spec, global_batch_size=8,
                                            seed=seed)
  _assert_batches_equal(_host_batches(make(0), 4), _host_batches(make(0), 4))
  a, b = _host_batches(make(0), 2), _host_batches(make(1), 2)
  assert not np.array_equal(a[0]['record'], b[0]['record'])


def test_decoded_batches_are_normalised_labelled_clips(sprites_data_dir):
  spec = _spec(sprites_data_dir, image_fraction=0.25)
  batches = _host_batches(
      pipeline.make_dataset(spec, global_batch_size=8, seed=0), 4)
  for batch in batches:
    video = batch['video']
    assert video.shape == (8, 5, 32, 32, 3) and video.dtype == np.float32
    assert video.min() >= -1.0 and video.max() <= 1.0
    assert video.min() < -0.5 and video.max() > 0.5
    for sample, labels, is_image, records in zip(
        video, batch['label'], batch['is_image'], batch['record']):
      if is_image:
        # A stack of independent images: each frame has its own record and
        # label, read back from its pixels.
        assert len(set(records.tolist())) == len(records)
        for frame, label in zip(sample, labels):
          assert sprites.classify(frame) == label
      else:
        assert len(set(records.tolist())) == 1 and len(set(labels)) == 1
        assert sprites.classify(sample) == labels[0]
  flags = np.concatenate([b['is_image'] for b in batches])
  assert flags.mean() == pytest.approx(0.25)


@pytest.mark.parametrize('process_count', [2, 4])
def test_processes_read_disjoint_rows_of_the_one_process_batches(
    sprites_data_dir, process_count):
  """Any number of processes sees the 1-process stream of global batches:
  process p's host batch is its block of rows of each global batch (and
  reads only those), whatever the seed and with image stacks mixed in."""
  spec = _spec(sprites_data_dir, image_fraction=0.25)
  source = pipeline.data_source(spec)
  for seed in (0, 1):
    one = pipeline.make_dataset(spec, global_batch_size=8, seed=seed,
                                process_index=0, process_count=1,
                                source=source)
    hosts = [pipeline.make_dataset(spec, global_batch_size=8, seed=seed,
                                   process_index=i,
                                   process_count=process_count, source=source)
             for i in range(process_count)]
    for step in (0, 1, 37):
      glued = [h[step] for h in hosts]
      for key in ('record', 'label', 'is_image', 'video'):
        np.testing.assert_array_equal(
            np.concatenate([g[key] for g in glued]), one[step][key])
  # Rows off a sharding: each device's rows, in order, for this process.
  mesh = mesh_lib.create_mesh({'data': -1, 'fsdp': 2})
  assert pipeline.batch_rows(mesh_lib.batch_sharding(mesh), 16) == list(
      range(16))
  with pytest.raises(ValueError, match='process 2 not in'):
    pipeline.process_rows(2, 2, 8)


def test_each_epoch_is_a_new_permutation(sprites_data_dir):
  spec = _spec(sprites_data_dir)
  ds = pipeline.make_dataset(spec, global_batch_size=8, seed=0)
  per_epoch = 256 // 8
  records = [b['record'][:, 0] for b in _host_batches(ds, 2 * per_epoch)]
  first = np.concatenate(records[:per_epoch])
  second = np.concatenate(records[per_epoch:])
  assert sorted(first) == sorted(second) == list(range(256))
  assert not np.array_equal(first, second)


def test_resumed_iterator_continues_exactly(sprites_data_dir):
  mesh = mesh_lib.create_mesh({'data': -1, 'fsdp': 2})
  spec = _spec(sprites_data_dir, image_fraction=0.25)
  make = lambda: pipeline.make_iterator(spec, mesh, global_batch_size=8,
                                        seed=3)
  uninterrupted = make()
  reference = [next(uninterrupted) for _ in range(36)]  # crosses an epoch
  interrupted = make()
  for _ in range(29):
    next(interrupted)
  saved = interrupted.state_json()
  json.loads(saved)  # plain JSON, stored beside checkpoints
  del interrupted
  resumed = make()
  resumed.restore_json(saved)
  _assert_batches_equal([next(resumed) for _ in range(7)], reference[29:])


def test_global_batches_are_sharded_over_the_data_axes(sprites_data_dir):
  mesh = mesh_lib.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  it = pipeline.make_iterator(_spec(sprites_data_dir), mesh,
                              global_batch_size=8, seed=0)
  host = it.next_host_batch()
  batch = it.to_global(host)
  video = batch['video']
  assert isinstance(video, jax.Array) and video.shape == (8, 5, 32, 32, 3)
  assert video.sharding.spec == jax.sharding.PartitionSpec(('data', 'fsdp'))
  # 4-way batch split, replicated over `tensor`: 2 rows per device.
  assert {s.data.shape[0] for s in video.addressable_shards} == {2}
  np.testing.assert_array_equal(np.asarray(video), host['video'])


def test_batch_must_divide_the_batch_sharding(sprites_data_dir):
  mesh = mesh_lib.create_mesh({'data': -1})
  with pytest.raises(ValueError, match='not divisible'):
    pipeline.make_iterator(_spec(sprites_data_dir), mesh,
                           global_batch_size=12, seed=0)


def _windows(stored, frames, height, width):
  """Every `[frames, height, width, 3]` window of a stored uint8 clip, as
  [-1, 1] floats: `{(start, top, left): window}`."""
  t, h, w, _ = stored.shape
  return {(s, i, j): stored[s:s + frames, i:i + height, j:j + width].astype(
      np.float32) / 127.5 - 1 for s in range(t - frames + 1)
          for i in range(h - height + 1) for j in range(w - width + 1)}


def test_crop_from_a_larger_stored_clip(sprites_data_dir):
  """Batches against the stored clips' pixels (found by the batch's
  `record`): a 16x16 resolution from 32x32 clips is the 2x2 box average of
  some frame (rounded to uint8); a 16x16 crop is a window of the clip,
  the centred one without random crops. Catches a resize or crop that
  moves, mixes or rescales pixels (or reads another record)."""
  source = pipeline.data_source(_spec(sprites_data_dir))
  spec = _spec(sprites_data_dir, frames=1, resolution=(16, 16))
  batch = pipeline.make_dataset(spec, global_batch_size=4, seed=0)[0]
  assert batch['video'].shape == (4, 1, 16, 16, 3)
  for video, record in zip(batch['video'], batch['record'][:, 0]):
    stored = np.asarray(source[int(record)]['video'])
    box = stored.astype(np.float64).reshape(5, 16, 2, 16, 2, 3).mean((2, 4))
    box = np.round(box) / 127.5 - 1
    assert any(np.allclose(video[0], frame, atol=1e-6) for frame in box), (
        record)
  for random_crop in (True, False):
    spec = _spec(sprites_data_dir, frames=2, crop=(16, 16),
                 random_crop=random_crop)
    batch = pipeline.make_dataset(spec, global_batch_size=4, seed=0)[0]
    assert batch['video'].shape == (4, 2, 16, 16, 3)
    for video, record in zip(batch['video'], batch['record'][:, 0]):
      windows = _windows(np.asarray(source[int(record)]['video']), 2, 16, 16)
      found = [k for k, v in windows.items()
               if np.allclose(video, v, atol=1e-6)]
      assert found, (random_crop, record)
      if not random_crop:  # the first frames, centred
        assert (0, 8, 8) in found, found


# ---------------------------------------------------------------- bad records
class _FaultySource:
  """A tfds source whose records `faults[i]` fail: 'unreadable' raises on
  read (like a corrupt array_record chunk); the others return a malformed
  `video` and `image` (the image stream reads the same records)."""

  def __init__(self, source, faults: dict[int, str], size: int | None = None):
    self._source, self._faults = source, faults
    self._size = len(source) if size is None else size

  def __len__(self):
    return self._size

  def __getitem__(self, i):
    kind = self._faults.get(i)
    if kind == 'unreadable':
      raise RuntimeError(f'Corrupted Riegeli/records file at record {i}')
    ex = dict(self._source[i])
    if kind == 'short':  # fewer frames than the 5 requested
      ex['video'], ex['image'] = ex['video'][:2], ex['image'][None, None]
    elif kind == 'channels':
      ex['video'], ex['image'] = ex['video'][..., :2], ex['image'][..., :2]
    elif kind == 'rank':
      ex['video'], ex['image'] = ex['video'][0, 0], ex['image'][0]
    elif kind == 'dtype':
      ex['video'] = ex['video'].astype(np.float32)
      ex['image'] = ex['image'].astype(np.float32)
    return ex


def _stream_order(spec, source, seed, n):
  """Record ids of the first `n` slots of the (video-only) stream."""
  ds = pipeline.make_dataset(spec, global_batch_size=8, seed=seed,
                             source=source)
  return np.concatenate([ds[i]['record'][:, 0] for i in range(-(-n // 8))])


def test_bad_records_are_skipped_and_counted(sprites_data_dir):
  spec = _spec(sprites_data_dir)
  source = pipeline.data_source(spec)
  order = _stream_order(spec, source, seed=4, n=64)
  # Every kind of fault, including two bad records in a row.
  kinds = {1: 'unreadable', 2: 'short', 10: 'channels', 20: 'rank',
           33: 'dtype', 47: 'unreadable'}
  faults = {int(order[p]): kind for p, kind in kinds.items()}
  mesh = mesh_lib.create_mesh({'data': -1})
  it = pipeline.make_iterator(spec, mesh, global_batch_size=8, seed=4,
                              source=_FaultySource(source, faults))
  clean = pipeline.make_dataset(spec, global_batch_size=8, seed=4,
                                source=source)
  got = [it.next_host_batch() for _ in range(6)]  # slots 0..47
  records = np.concatenate([b['record'][:, 0] for b in got])
  # A bad record's slot holds the next good record of the stream; every
  # other slot is exactly what the clean data set gives.
  good = [r for r in order if r not in faults]
  expected = [r if r not in faults else good[np.searchsorted(
      [p for p, x in enumerate(order) if x not in faults], p)]
              for p, r in enumerate(order[:48])]
  np.testing.assert_array_equal(records, expected)
  assert not set(records.tolist()) & set(faults)
  for i, batch in enumerate(got):
    own = [r not in faults for r in order[8 * i:8 * i + 8]]
    np.testing.assert_array_equal(batch['video'][own], clean[i]['video'][own])
    assert batch['video'].shape == (8, 5, 32, 32, 3)
    assert 'skipped' not in batch
  assert it.skipped_records == len(kinds)
  assert it.get_state()['skipped_records'] == len(kinds)


def test_resume_with_bad_records_is_exact(sprites_data_dir):
  spec = _spec(sprites_data_dir, image_fraction=0.25)
  source = pipeline.data_source(spec)
  # ~10% bad, spread over the split; both faults break videos and images.
  faults = {i: ('unreadable' if i % 20 == 3 else 'channels')
            for i in range(len(source)) if i % 10 == 3}
  mesh = mesh_lib.create_mesh({'data': -1, 'fsdp': 2})
  make = lambda: pipeline.make_iterator(
      spec, mesh, global_batch_size=8, seed=3,
      source=_FaultySource(source, faults))
  uninterrupted = make()
  reference = [next(uninterrupted) for _ in range(36)]  # crosses an epoch
  for batch in reference:
    assert not set(np.asarray(batch['record']).ravel().tolist()) & set(faults)
  interrupted = make()
  for _ in range(29):
    next(interrupted)
  saved = interrupted.state_json()
  skipped_at_29 = interrupted.skipped_records
  assert json.loads(saved)['skipped_records'] == skipped_at_29 > 0
  del interrupted
  resumed = make()
  resumed.restore_json(saved)
  assert resumed.skipped_records == skipped_at_29
  _assert_batches_equal([next(resumed) for _ in range(7)], reference[29:])
  assert resumed.skipped_records == uninterrupted.skipped_records
  # 36 batches: 288 slots of which ~ 3/4 videos and 1/4 stacks of 5 images.
  assert 40 < uninterrupted.skipped_records < 120


def _corrupt_copy(sprites_data_dir, tmp_path, corrupt):
  """A copy of the tiny data set with its train shard's bytes `corrupt`ed."""
  data_dir = str(tmp_path / 'tfds')
  shutil.copytree(sprites_data_dir, data_dir)
  shard, = glob.glob(os.path.join(data_dir, TINY_DATASET, '*',
                                  '*-train.array_record-*'))
  with open(shard, 'rb') as f:
    data = bytearray(f.read())
  with open(shard, 'wb') as f:
    f.write(corrupt(data))
  return data_dir


def test_corrupt_array_record_chunks_are_skipped(sprites_data_dir, tmp_path):
  def flip(data):  # a few bytes inside three records' chunks
    for offset in (100_000, 400_000, 700_000):
      data[offset:offset + 16] = bytes(b ^ 0xFF for b in
                                       data[offset:offset + 16])
    return data
  spec = _spec(_corrupt_copy(sprites_data_dir, tmp_path, flip),
               shuffle=False, num_epochs=1)
  source = pipeline.data_source(spec)
  bad = set()
  for i in range(len(source)):
    try:
      source[i]
    except RuntimeError:
      bad.add(i)
  assert 1 <= len(bad) <= 6
  ds = pipeline.make_dataset(spec, global_batch_size=8, seed=0,
                             skip_counts=True)
  batches = list(ds)
  seen = {int(r) for b in batches for r in b['record'][:, 0]}
  assert seen == set(range(len(source))) - bad
  assert sum(int(b['skipped'].sum()) for b in batches) == len(bad)


def test_unreadable_data_set_stops_with_a_clear_error(sprites_data_dir,
                                                      tmp_path):
  truncate = lambda data: data[:len(data) // 2]  # loses the chunk index
  spec = _spec(_corrupt_copy(sprites_data_dir, tmp_path, truncate))
  ds = pipeline.make_dataset(spec, global_batch_size=8, seed=0)
  with pytest.raises(ValueError, match=(
      r"data set moving_sprites/5x32x32 in .*, split 'train': 51/51 records "
      r'read were unreadable.*e\.g\. record \d+: RuntimeError: Corrupted')):
    ds[0]


@pytest.mark.parametrize('max_skip_fraction', [0.5, 0.9])
def test_too_many_bad_records_raise(sprites_data_dir, max_skip_fraction):
  spec = _spec(sprites_data_dir, max_skip_fraction=max_skip_fraction)
  source = pipeline.data_source(spec)
  faults = {i: 'short' for i in range(len(source)) if i % 5 < 3}  # 60%
  mesh = mesh_lib.create_mesh({'data': -1})
  it = pipeline.make_iterator(spec, mesh, global_batch_size=8, seed=0,
                              source=_FaultySource(source, faults))
  if max_skip_fraction > 0.6:
    for _ in range(20):  # noisy but tolerated
      next(it)
    assert it.skipped_records > 60
    return
  # Raised in a Grain reader thread, re-raised by the iterator.
  with pytest.raises(ValueError, match=(
      r"split 'train': \d+/\d+ records read were unreadable or malformed "
      r'.*max_skip_fraction=0\.5.*e\.g\. record \d+: ValueError: clip has 2 '
      'frames, 5 requested')):
    for _ in range(20):
      next(it)


def test_a_slice_without_one_readable_record_raises(sprites_data_dir):
  spec = _spec(sprites_data_dir, num_epochs=1)
  source = _FaultySource(pipeline.data_source(spec),
                         {i: 'rank' for i in range(16)}, size=16)
  ds = pipeline.make_dataset(spec, global_batch_size=8, seed=0, source=source)
  with pytest.raises(ValueError, match=(
      r'16 consecutive records .*\(a whole epoch\).*16/16 reads failed.*'
      r'record \d+: ValueError: video has shape \(32, 3\)')):
    ds[0]


@pytest.mark.parametrize('size,process_count,image_fraction', [
    (6, 1, 0.0), (12, 2, 0.0), (6, 2, 0.5)])
def test_split_smaller_than_a_batch_raises_when_read_once(sprites_data_dir, size,
                                           process_count, image_fraction):
  spec = _spec(sprites_data_dir, image_fraction=image_fraction)
  source = _FaultySource(pipeline.data_source(spec), {}, size=size)
  # Repeated (training), the small split fills its batches by repeating.
  ds = pipeline.make_dataset(
      spec, global_batch_size=8 if image_fraction else 16, seed=0,
      source=source, process_index=0, process_count=process_count)
  assert np.all(ds[0]['record'] < size)
  spec = _spec(sprites_data_dir, image_fraction=image_fraction, num_epochs=1)
  with pytest.raises(ValueError, match=(
      rf"moving_sprites/5x32x32 .*split 'train' has {size} records: fewer "
      'than one global batch')):
    pipeline.make_dataset(spec, global_batch_size=8 if image_fraction else 16,
                          seed=0, source=source, process_index=0,
                          process_count=process_count)


class _Latents:
  """An in-memory latent cache: `[2, 4, 4, 8]` latents, record 3's with
  the wrong channel count."""
  metadata = {'latent_shape': [2, 4, 4, 8]}

  def __len__(self):
    return 32

  def __getitem__(self, i):
    c = 6 if i == 3 else 8
    return {'video': np.full((2, 4, 4, c), i, np.float32), 'label': 0,
            'image': np.zeros((4, 4, c), np.float32), 'image_label': 0}


def test_latents_of_the_wrong_shape_are_skipped():
  spec = pipeline.DataSpec(name='latent_cache', data_dir=None, frames=2,
                           pixels=False, shuffle=False, num_epochs=1)
  ds = pipeline.make_dataset(spec, global_batch_size=8, seed=0,
                             source=_Latents(), skip_counts=True)
  batch = ds[0]
  np.testing.assert_array_equal(batch['record'][:, 0],
                                [0, 1, 2, 4, 4, 5, 6, 7])
  np.testing.assert_array_equal(batch['video'][:, 0, 0, 0, 0],
                                [0, 1, 2, 4, 4, 5, 6, 7])
  np.testing.assert_array_equal(batch['skipped'], [0, 0, 0, 1, 0, 0, 0, 0])
