"""The Grain input pipeline: determinism, process slices, resume, sharding."""

import json

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


@pytest.mark.parametrize('process_count', [2, 3])
def test_process_slices_are_disjoint_and_cover_the_split(sprites_data_dir,
                                                         process_count):
  source = pipeline.data_source(_spec(sprites_data_dir))
  n = len(source)
  seen = []
  for index in range(process_count):
    records = set()
    for seed in (0, 1):  # slicing happens before the (seeded) shuffle
      spec = _spec(sprites_data_dir, num_epochs=1)
      ds = pipeline.make_dataset(
          spec, global_batch_size=process_count, seed=seed,
          process_index=index, process_count=process_count, source=source)
      got = {int(r) for b in ds for r in b['record'][:, 0]}
      assert not records or got == records
      records = got
    assert records == set(range(index, n, process_count))
    seen.append(records)
  assert set().union(*seen) == set(range(n))
  assert sum(map(len, seen)) == n


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


def test_crop_from_a_larger_stored_clip(sprites_data_dir):
  spec = _spec(sprites_data_dir, frames=1, resolution=(16, 16))
  batch = pipeline.make_dataset(spec, global_batch_size=4, seed=0)[0]
  assert batch['video'].shape == (4, 1, 16, 16, 3)
