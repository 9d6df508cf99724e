"""The Grain input pipeline: tfds data source -> global, sharded `jax.Array`s.

Order of operations (each step deterministic, so a run is reproducible and its
iterator state is just a position):

    source -> record ids -> per-process slice [process_index::process_count]
      -> seeded shuffle (reshuffled every epoch) -> repeat
      -> decode / crop / normalise to [-1, 1] (per-example seeded rng)
      -> [mixed with stacks of 1+t independent images]
      -> batch (global batch / process count)
      -> global jax.Array, batch axis sharded on the mesh's data axes.

Each element of a batch (shapes per process; the global arrays have the global
batch size):
  video     float32 [b, t, h, w, 3] in [-1, 1]
  label     int32   [b, t]  class per frame (one class for a video; each packed
                            image has its own)
  is_image  bool    [b]     the sample is a stack of independent images
  record    int32   [b, t]  position in the data source of each frame's record
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterator, Mapping

import grain
import jax
import ml_collections
import numpy as np

from walt.data import registry
from walt.data import video_ops
from walt.parallel import mesh as mesh_lib


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What to read and how; built from `config.data` by `DataSpec.from_config`."""
  name: str
  data_dir: str | None
  split: str = 'train'
  frames: int = 17
  resolution: tuple[int, int] = (64, 64)
  crop: tuple[int, int] | None = None  # then crop (random if random_crop)
  image_fraction: float = 0.0  # of samples that are stacks of images
  video_key: str = 'video'
  label_key: str = 'label'
  image_key: str = 'image'
  image_label_key: str = 'image_label'
  shuffle: bool = True
  random_crop: bool = True
  num_epochs: int | None = None  # None: repeat forever
  num_threads: int = 2  # host threads decoding examples
  prefetch: int = 4  # host batches read ahead (>= num_threads)
  build: bool = False  # prepare generated data sets that are missing
  # False: arrays are already model inputs (e.g. cached latents `[t, h, w,
  # c]`): only the temporal crop applies, no resizing or [-1, 1] scaling.
  pixels: bool = True

  @classmethod
  def from_config(cls, data: ml_collections.ConfigDict, **overrides
                  ) -> 'DataSpec':
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.to_dict().items() if k in fields}
    values.update(overrides)
    res = values.get('resolution', cls.resolution)
    values['resolution'] = (res, res) if isinstance(res, int) else tuple(res)
    if values.get('crop') is not None:
      crop = values['crop']
      values['crop'] = (crop, crop) if isinstance(crop, int) else tuple(crop)
    return cls(**values)


def data_source(spec: DataSpec):
  """The random-access tfds source of `spec.split` (array_record), or a
  latent cache directory (`name='latent_cache'`, `data_dir` = the cache)."""
  if spec.name == 'latent_cache':
    from walt.data import latent_cache
    return latent_cache.LatentCacheSource(spec.data_dir)
  if spec.build:
    from walt.data import build  # the builder is only needed when building
    builder = build.ensure_built(spec.name, spec.data_dir)
  else:
    builder = registry.builder(spec.name, spec.data_dir)
    if not builder.is_prepared():
      raise FileNotFoundError(
          f'data set {spec.name} is not prepared in {builder.data_dir}. Build '
          f'it with: python -m walt.data.build --dataset={spec.name} '
          f'--data_dir={spec.data_dir or "DIR"}')
  return builder.as_data_source(split=spec.split)


def _with_record_ids(source) -> grain.MapDataset:
  n = len(source)
  # Indices seen here keep counting across epochs (repeat passes them on).
  return grain.MapDataset.source(source).map_with_index(
      lambda i, ex: {**ex, '_record': i % n})


def process_slice(ds: grain.MapDataset, process_index: int,
                  process_count: int) -> grain.MapDataset:
  """Every `process_count`-th element starting at `process_index`."""
  if not 0 <= process_index < process_count:
    raise ValueError(f'process {process_index} not in [0, {process_count})')
  return ds[process_index::process_count]


def _epochs(ds: grain.MapDataset, spec: DataSpec, seed: int
            ) -> grain.MapDataset:
  if spec.shuffle:
    ds = ds.shuffle(seed=seed)
  # Repeating a shuffled dataset reshuffles each epoch with a derived seed.
  return ds.repeat(spec.num_epochs)


def _decode(spec: DataSpec, key: str, frames: int):
  height, width = spec.resolution

  def decode(example, rng: np.random.Generator):
    rng = rng if spec.random_crop else None
    video = np.asarray(example[key])
    if video.ndim == 3:  # an image
      video = video[None]
    video = video_ops.temporal_crop(video, frames, rng)
    if not spec.pixels:
      return video.astype(np.float32)
    video = video_ops.resize_and_crop(video, height, width, rng)
    if spec.crop is not None:
      video = video_ops.crop(video, *spec.crop, rng)
    return video_ops.to_float(video)

  return decode


def _video_sample(spec: DataSpec):
  decode = _decode(spec, spec.video_key, spec.frames)

  def fn(example, rng):
    return {
        'video': decode(example, rng),
        'label': np.full((spec.frames,), example[spec.label_key], np.int32),
        'is_image': np.bool_(False),
        'record': np.full((spec.frames,), example['_record'], np.int32),
    }
  return fn


def _image_frame(spec: DataSpec):
  decode = _decode(spec, spec.image_key, 1)

  def fn(example, rng):
    return {'image': decode(example, rng)[0],
            'label': np.int32(example[spec.image_label_key]),
            'record': np.int32(example['_record'])}
  return fn


def _pack_images(stack: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`frames` batched images -> one sample shaped like a video."""
  return {'video': stack['image'], 'label': stack['label'],
          'is_image': np.bool_(True), 'record': stack['record']}


def make_dataset(spec: DataSpec, *, global_batch_size: int, seed: int,
                 process_index: int | None = None,
                 process_count: int | None = None,
                 source=None) -> grain.MapDataset:
  """The per-process dataset of host batches (numpy dicts, see module doc)."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size % process_count:
    raise ValueError(f'global batch {global_batch_size} is not divisible by '
                     f'{process_count} processes')
  if not 0.0 <= spec.image_fraction <= 1.0:
    raise ValueError(f'image_fraction {spec.image_fraction} not in [0, 1]')
  source = data_source(spec) if source is None else source
  records = process_slice(_with_record_ids(source), process_index,
                          process_count)
  # Distinct seeds per stream and purpose, all derived from the job seed.
  seeds = np.random.SeedSequence(seed).generate_state(4)
  parts, weights = [], []
  if spec.image_fraction < 1.0:
    videos = _epochs(records, spec, int(seeds[0]))
    parts.append(videos.random_map(_video_sample(spec), seed=int(seeds[1])))
    weights.append(1.0 - spec.image_fraction)
  if spec.image_fraction > 0.0:
    images = _epochs(records, spec, int(seeds[2]))
    images = images.random_map(_image_frame(spec), seed=int(seeds[3]))
    images = images.batch(spec.frames, drop_remainder=True).map(_pack_images)
    parts.append(images)
    weights.append(spec.image_fraction)
  ds = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, weights)
  return ds.batch(global_batch_size // process_count, drop_remainder=True)


class GlobalBatchIterator:
  """Iterates global, sharded batches; its state is a small JSON-able dict.

  Host batches come from Grain's prefetching iterator (threads); each becomes
  a `jax.Array` with the batch axis sharded over the mesh's batch axes via
  `jax.make_array_from_process_local_data`, so every process contributes only
  its own slice.
  """

  def __init__(self, dataset: grain.MapDataset, mesh: jax.sharding.Mesh,
               rules: mesh_lib.LogicalRules = mesh_lib.DEFAULT_RULES,
               num_threads: int = 2, prefetch: int = 4):
    self._dataset = dataset
    self._sharding = mesh_lib.batch_sharding(mesh, rules)
    options = grain.ReadOptions(num_threads=num_threads,
                                prefetch_buffer_size=max(prefetch,
                                                         num_threads))
    self._iterator = iter(dataset.to_iter_dataset(options))

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self

  def __len__(self) -> int:
    """Batches in one pass (finite data sets)."""
    return len(self._dataset)

  def next_host_batch(self) -> dict[str, np.ndarray]:
    return next(self._iterator)

  def __next__(self) -> dict[str, jax.Array]:
    return self.to_global(self.next_host_batch())

  def to_global(self, host_batch: Mapping[str, np.ndarray]
                ) -> dict[str, jax.Array]:
    return {k: jax.make_array_from_process_local_data(self._sharding, v)
            for k, v in host_batch.items()}

  def get_state(self) -> dict[str, Any]:
    return self._iterator.get_state()

  def set_state(self, state: Mapping[str, Any]) -> None:
    self._iterator.set_state(dict(state))

  def state_json(self) -> str:
    return json.dumps(self.get_state(), sort_keys=True)

  def restore_json(self, text: str) -> None:
    self.set_state(json.loads(text))


def make_iterator(spec: DataSpec, mesh: jax.sharding.Mesh, *,
                  global_batch_size: int, seed: int,
                  rules: mesh_lib.LogicalRules = mesh_lib.DEFAULT_RULES,
                  source=None) -> GlobalBatchIterator:
  """The iterator a job trains on: this process's slice, as global arrays."""
  parallel = mesh_lib.batch_parallelism(mesh, rules)
  if global_batch_size % parallel:
    raise ValueError(f'global batch {global_batch_size} is not divisible by '
                     f'the {parallel}-way batch sharding of the mesh')
  ds = make_dataset(spec, global_batch_size=global_batch_size, seed=seed,
                    source=source)
  return GlobalBatchIterator(ds, mesh, rules, spec.num_threads, spec.prefetch)


def eval_batches(data: ml_collections.ConfigDict, *, batch_size: int,
                 num_examples: int | None, seed: int = 0,
                 mesh: jax.sharding.Mesh | None = None,
                 rules: mesh_lib.LogicalRules = mesh_lib.DEFAULT_RULES,
                 **overrides) -> Iterator[dict[str, Any]]:
  """One ordered pass over a split of `data` for evaluation: no shuffling,
  centred (no random) crops of whole frames (`crop=None`), videos only;
  `overrides` set other `DataSpec` fields (split, frames, ...). Stops after
  `num_examples // batch_size` batches (at least one; all if None).

  With a `mesh`: global batches sharded over its batch axes, each process
  reading its own slice. Without: host numpy batches, every process reading
  all of them (scores computed identically everywhere).
  """
  fields = dict(crop=None, shuffle=False, random_crop=False, num_epochs=1,
                image_fraction=0.0)
  fields.update(overrides)
  spec = DataSpec.from_config(data, **fields)
  if mesh is None:
    ds = make_dataset(spec, global_batch_size=batch_size, seed=seed,
                      process_index=0, process_count=1)
    count, batches = len(ds), iter(ds)
  else:
    batches = make_iterator(spec, mesh, global_batch_size=batch_size,
                            seed=seed, rules=rules)
    count = len(batches)
  if num_examples is not None:
    count = min(count, max(num_examples // batch_size, 1))
  for _ in range(count):
    yield next(batches)
