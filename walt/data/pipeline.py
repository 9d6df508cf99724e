"""The Grain input pipeline: tfds data source -> global, sharded `jax.Array`s.

Order of operations (each step deterministic, so a run is reproducible and its
iterator state is just a position):

    record ids -> seeded shuffle (reshuffled every epoch) -> repeat
      -> read + validate + decode / crop / normalise to [-1, 1] (per-position
         seeded rng; an unreadable or malformed record's slot is filled by the
         next readable record of the stream, see "Bad records")
      -> [mixed with stacks of 1+t independent images]
      = the global stream: global batch j is its elements [j*B, (j+1)*B)
      -> this process's rows of each global batch (only those are read)
      -> batch (global batch / process count)
      -> global jax.Array, batch axis sharded on the mesh's data axes.

The global stream is the same for any number of processes, so a run's
batches (and, with per-example randomness keyed by global row, its losses)
do not depend on how many hosts it runs on, and its iterator state (a batch
position) restores on any process count.

Each element of a batch (shapes per process; the global arrays have the global
batch size):
  video     float32 [b, t, h, w, 3] in [-1, 1]
  label     int32   [b, t]  class per frame (one class for a video; each packed
                            image has its own)
  is_image  bool    [b]     the sample is a stack of independent images
  record    int32   [b, t]  position in the data source of each frame's record
  skipped   int32   [b]     (only with `make_dataset(skip_counts=True)`) bad
                            records of this process whose slot the sample
                            fills (0 or 1 for a video, up to t for a stack)

Bad records: a record whose read or decode raises (corrupt or truncated
array_record chunk, too few frames, wrong rank / channels / dtype / latent
shape) is skipped: its slot in the stream takes the next readable record in
stream order (read with the slot's own rng), so a batch holds only good
records. Slot contents depend only on the seed and the records' bytes, every
position keeps its place (random access, `len` and the iterator state, a
position, are unchanged; other processes are unaffected), so a resumed run
still equals an uninterrupted one. The price: the record after a bad one is
seen twice in that epoch. The first few failures are logged with the record
and the reason; `GlobalBatchIterator.skipped_records` counts them. When more
than `max_skip_fraction` of the reads (out of at least `skip_check_after`)
fail, or a whole epoch of the data set is unreadable, a ValueError
names the data set, split, counts and an example reason.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
from typing import Any, Iterator, Mapping, Sequence

from absl import logging
import grain
import jax
import ml_collections
import numpy as np

from walt import storage
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
  # Unreadable / malformed records are skipped (module doc) until more than
  # this fraction of the reads, counted over at least `skip_check_after`
  # reads, failed: then the data set is broken, not noisy, and we stop.
  max_skip_fraction: float = 0.5
  skip_check_after: int = 100
  # Example fields passed through unchanged with each video (a cascade
  # stage's cached `low_res`, `text`, `text_mask`); videos only.
  extra_keys: tuple[str, ...] = ()

  @classmethod
  def from_config(cls, data: ml_collections.ConfigDict, **overrides
                  ) -> 'DataSpec':
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.to_dict().items() if k in fields}
    values.update(overrides)
    values['extra_keys'] = tuple(values.get('extra_keys', ()))
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
  storage.require_local(spec.data_dir, 'data.data_dir')
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


class _BatchRows(grain.MapDataset):
  """Element k: row `rows[k % len(rows)]` of global batch `k // len(rows)`
  of `parent`, a stream whose global batch j is its elements
  [j * global_batch, (j + 1) * global_batch). Random access: a process reads
  only its own rows."""

  def __init__(self, parent: grain.MapDataset, global_batch: int,
               rows: Sequence[int]):
    super().__init__(parent)
    self._global_batch, self._rows = global_batch, tuple(rows)
    self._length = len(parent) // global_batch * len(self._rows)

  def __len__(self) -> int:
    return self._length

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    batch, row = divmod(index, len(self._rows))
    return self._parent[batch * self._global_batch + self._rows[row]]

  def __str__(self) -> str:
    return f'_BatchRows(global_batch={self._global_batch}, rows={self._rows})'


def process_rows(process_index: int, process_count: int,
                 global_batch_size: int) -> range:
  """The rows of every global batch that process `process_index` holds:
  the `process_index`-th contiguous block, as `jax.make_array_from_process_
  local_data` places host batches on a mesh whose devices are in process
  order (`batch_rows` reads the exact rows off a sharding)."""
  if not 0 <= process_index < process_count:
    raise ValueError(f'process {process_index} not in [0, {process_count})')
  local = global_batch_size // process_count
  return range(process_index * local, (process_index + 1) * local)


def batch_rows(sharding: jax.sharding.Sharding, global_batch_size: int
               ) -> list[int]:
  """Rows of a `[global_batch_size, ...]` array that this process's devices
  hold under `sharding`, in increasing order (the order of its host batch)."""
  rows = set()
  for index in sharding.addressable_devices_indices_map(
      (global_batch_size,)).values():
    rows.update(range(*index[0].indices(global_batch_size)))
  return sorted(rows)


def _epochs(ds: grain.MapDataset, spec: DataSpec, seed: int
            ) -> grain.MapDataset:
  if spec.shuffle:
    ds = ds.shuffle(seed=seed)
  # Repeating a shuffled dataset reshuffles each epoch with a derived seed.
  return ds.repeat(spec.num_epochs)


def _where(spec: DataSpec) -> str:
  where = f' in {spec.data_dir}' if spec.data_dir else ''
  return f'data set {spec.name}{where}, split {spec.split!r}'


class _BadRecords:
  """Tally of failed reads of one data set, shared by its streams and by
  Grain's decoding threads (hence the lock); logs the first few failures and
  raises once the data set looks broken rather than noisy (module doc)."""

  MAX_LOGGED = 5

  def __init__(self, spec: DataSpec):
    self._spec = spec
    self._lock = threading.Lock()
    self.reads = 0
    self.bad = 0
    self.example = ''  # the first failure: 'record i: Error: message'
    self._logged: set[int] = set()

  def read(self, record: int, error: Exception | None) -> None:
    """Counts one read of `record` (failed if `error`); raises ValueError
    when more than `max_skip_fraction` of max(reads, skip_check_after)
    failed, so a handful of early failures do not stop a run."""
    spec = self._spec
    with self._lock:
      self.reads += 1
      if error is None:
        return
      self.bad += 1
      reason = f'{type(error).__name__}: {error}'[:300]
      self.example = self.example or f'record {record}: {reason}'
      # A record is re-read by the slot before it when both are bad: log
      # each record once, and only the first few.
      log = (len(self._logged) < self.MAX_LOGGED
             and record not in self._logged)
      if log:
        self._logged.add(record)
      last = len(self._logged) == self.MAX_LOGGED
      bad, reads = self.bad, self.reads
    if log:
      logging.warning('%s: skipping record %d (%s)%s', _where(spec), record,
                      reason, '; further bad records are counted, not logged'
                      if last else '')
    if bad > spec.max_skip_fraction * max(reads, spec.skip_check_after):
      raise ValueError(
          f'{_where(spec)}: {bad}/{reads} records read were unreadable or '
          f'malformed (more than max_skip_fraction={spec.max_skip_fraction} '
          f'of max(reads, skip_check_after={spec.skip_check_after})); e.g. '
          f'{self.example}. Check or rebuild the data set.')

  def all_bad(self, count: int) -> ValueError:
    return ValueError(
        f'{_where(self._spec)}: {count} consecutive records of this '
        f"process's slice (a whole epoch) are unreadable or malformed "
        f'({self.bad}/{self.reads} reads failed); e.g. {self.example}. '
        'Check or rebuild the data set.')


def _readable_stream(order: grain.MapDataset, source, sample_fn,
                     bad: _BadRecords, epoch_length: int, seed: int
                     ) -> grain.MapDataset:
  """Position j of the stream -> `sample_fn(source[record], record, rng)`
  for record `order[j]` or, if its read or decode raises, for the next
  readable record after j in stream order (wrapping around at the end of a
  finite stream); an extra `_skipped` field is 1 when the slot's own record
  was bad. At most `epoch_length` (one epoch) records are tried.

  `order` holds record ids (shuffled, repeated); `rng` is position j's,
  rewound for each attempt, so a slot's content depends only on the seed and
  on which records are bad.
  """
  length = len(order)

  def fill(position: int, rng: np.random.Generator) -> dict[str, Any]:
    start = rng.bit_generator.state
    for offset in range(epoch_length):
      record = int(order[(position + offset) % length])
      rng.bit_generator.state = start
      try:
        sample = sample_fn(source[record], record, rng)
      except Exception as e:  # pylint: disable=broad-except
        # Whatever a corrupt record raises (Riegeli hash mismatch, protobuf
        # or msgpack errors, shape checks): counted, logged, and fatal only
        # when too frequent (`bad.read`).
        bad.read(record, e)
        continue
      bad.read(record, None)
      sample['_skipped'] = np.int32(offset > 0)
      return sample
    raise bad.all_bad(epoch_length)

  return grain.MapDataset.range(length).random_map(fill, seed=seed)


def _decode(spec: DataSpec, key: str, frames: int,
            trailing_shape: tuple[int, ...] | None = None):
  """example[key] (`[t, H, W, 3]` uint8 clip or `[H, W, 3]` image; latents:
  `[t, h, w, c]` / `[h, w, c]` float) -> `[frames, h, w, c]` float32.
  Malformed arrays raise ValueError (the record is then skipped)."""
  height, width = spec.resolution

  def decode(example, rng: np.random.Generator):
    rng = rng if spec.random_crop else None
    video = np.asarray(example[key])
    if video.ndim == 3:  # an image
      video = video[None]
    if video.ndim != 4:
      raise ValueError(f'{key} has shape {video.shape}; [t, h, w, c] or '
                       '[h, w, c] expected')
    if spec.pixels and (video.shape[-1] != 3 or video.dtype != np.uint8):
      raise ValueError(f'{key} is {video.dtype} {video.shape}; uint8 RGB '
                       '(3 channels) expected')
    if trailing_shape is not None and video.shape[1:] != trailing_shape:
      raise ValueError(f'{key} has shape {video.shape}; [t, '
                       f'{", ".join(map(str, trailing_shape))}] expected')
    video = video_ops.temporal_crop(video, frames, rng)
    if not spec.pixels:
      return video.astype(np.float32)
    video = video_ops.resize_and_crop(video, height, width, rng)
    if spec.crop is not None:
      video = video_ops.crop(video, *spec.crop, rng)
    return video_ops.to_float(video)

  return decode


def _video_sample(spec: DataSpec, trailing_shape=None):
  decode = _decode(spec, spec.video_key, spec.frames, trailing_shape)

  def fn(example, record: int, rng):
    sample = {
        'video': decode(example, rng),
        'label': np.full((spec.frames,), example[spec.label_key], np.int32),
        'is_image': np.bool_(False),
        'record': np.full((spec.frames,), record, np.int32),
    }
    for key in spec.extra_keys:
      if key not in example:
        raise ValueError(f'{key} missing from the record')
      value = np.asarray(example[key])
      sample[key] = value.astype(np.float32) if value.dtype.kind == 'f' \
          else value
    return sample
  return fn


def _image_frame(spec: DataSpec, trailing_shape=None):
  decode = _decode(spec, spec.image_key, 1, trailing_shape)

  def fn(example, record: int, rng):
    return {'image': decode(example, rng)[0],
            'label': np.int32(example[spec.image_label_key]),
            'record': np.int32(record)}
  return fn


def _pack_images(stack: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`frames` batched images -> one sample shaped like a video."""
  return {'video': stack['image'], 'label': stack['label'],
          'is_image': np.bool_(True), 'record': stack['record'],
          '_skipped': np.int32(stack['_skipped'].sum())}


def _skip_counts(batch: dict[str, np.ndarray], keep: bool
                 ) -> dict[str, np.ndarray]:
  skipped = batch.pop('_skipped')
  if keep:
    batch['skipped'] = skipped
  return batch


def make_dataset(spec: DataSpec, *, global_batch_size: int, seed: int,
                 process_index: int | None = None,
                 process_count: int | None = None,
                 rows: Sequence[int] | None = None,
                 source=None, skip_counts: bool = False) -> grain.MapDataset:
  """The per-process dataset of host batches (numpy dicts, see module doc;
  `skip_counts` adds the `skipped` field): `rows` of every global batch
  (default: `process_rows(process_index, process_count, ...)`)."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if global_batch_size % process_count:
    raise ValueError(f'global batch {global_batch_size} is not divisible by '
                     f'{process_count} processes')
  if rows is None:
    rows = process_rows(process_index, process_count, global_batch_size)
  if not 0.0 <= spec.image_fraction <= 1.0:
    raise ValueError(f'image_fraction {spec.image_fraction} not in [0, 1]')
  if spec.extra_keys and spec.image_fraction > 0:
    raise ValueError(f'extra_keys {spec.extra_keys} come with videos only: '
                     'image_fraction must be 0')
  source = data_source(spec) if source is None else source
  # Record ids only: reading happens per slot, where failures are caught.
  ids = grain.MapDataset.range(len(source))
  needed = max(global_batch_size, spec.frames if spec.image_fraction > 0
               else 1)
  # Repeated forever, a small split still fills batches (an overfit run);
  # read a finite number of times, it would yield no batch at all.
  if not len(ids) or (spec.num_epochs is not None
                      and len(ids) * spec.num_epochs < needed):
    raise ValueError(
        f'{_where(spec)} has {len(source)} records: fewer than one global '
        f'batch of {global_batch_size}'
        + (f' (or one stack of {spec.frames} images)'
           if spec.image_fraction > 0 else ''))
  # Cached latents know their shape: a record of another shape is malformed.
  latent_shape = (getattr(source, 'metadata', None) or {}).get(
      'latent_shape') if not spec.pixels else None
  trailing = tuple(latent_shape[1:]) if latent_shape else None
  bad = _BadRecords(spec)
  # Distinct seeds per stream and purpose, all derived from the job seed.
  seeds = np.random.SeedSequence(seed).generate_state(4)
  parts, weights = [], []
  if spec.image_fraction < 1.0:
    parts.append(_readable_stream(
        _epochs(ids, spec, int(seeds[0])), source,
        _video_sample(spec, trailing), bad, len(ids), int(seeds[1])))
    weights.append(1.0 - spec.image_fraction)
  if spec.image_fraction > 0.0:
    images = _readable_stream(
        _epochs(ids, spec, int(seeds[2])), source,
        _image_frame(spec, trailing), bad, len(ids), int(seeds[3]))
    images = images.batch(spec.frames, drop_remainder=True).map(_pack_images)
    parts.append(images)
    weights.append(spec.image_fraction)
  ds = parts[0] if len(parts) == 1 else grain.MapDataset.mix(parts, weights)
  ds = _BatchRows(ds, global_batch_size, rows)
  ds = ds.batch(len(rows), drop_remainder=True)
  return ds.map(functools.partial(_skip_counts, keep=skip_counts))


class GlobalBatchIterator:
  """Iterates global, sharded batches; its state is a small JSON-able dict.

  Host batches come from Grain's prefetching iterator (threads); each becomes
  a `jax.Array` with the batch axis sharded over the mesh's batch axes via
  `jax.make_array_from_process_local_data`, so every process contributes only
  its own slice.

  `skipped_records`: bad records this process skipped in the batches
  consumed so far (module doc), counted from the batches' `skipped` field
  (so read-ahead does not count) and carried in the state, so after
  `set_state` it continues from the saved value. The state holds the key
  only once a record was skipped: states of clean data sets are the plain
  Grain position, and states saved before the count existed restore as 0.
  """

  STATE_KEY = 'skipped_records'

  def __init__(self, dataset: grain.MapDataset, mesh: jax.sharding.Mesh,
               rules: mesh_lib.LogicalRules = mesh_lib.DEFAULT_RULES,
               num_threads: int = 2, prefetch: int = 4):
    self._dataset = dataset
    self._sharding = mesh_lib.batch_sharding(mesh, rules)
    options = grain.ReadOptions(num_threads=num_threads,
                                prefetch_buffer_size=max(prefetch,
                                                         num_threads))
    self._iterator = iter(dataset.to_iter_dataset(options))
    self.skipped_records = 0

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self

  def __len__(self) -> int:
    """Batches in one pass (finite data sets)."""
    return len(self._dataset)

  def next_host_batch(self) -> dict[str, np.ndarray]:
    batch = next(self._iterator)
    skipped = batch.pop('skipped', None)  # absent unless skip_counts
    if skipped is not None:
      self.skipped_records += int(np.sum(skipped))
    return batch

  def __next__(self) -> dict[str, jax.Array]:
    return self.to_global(self.next_host_batch())

  def to_global(self, host_batch: Mapping[str, np.ndarray]
                ) -> dict[str, jax.Array]:
    return {k: jax.make_array_from_process_local_data(self._sharding, v)
            for k, v in host_batch.items()}

  def get_state(self) -> dict[str, Any]:
    state = dict(self._iterator.get_state())
    if self.skipped_records:
      state[self.STATE_KEY] = self.skipped_records
    return state

  def set_state(self, state: Mapping[str, Any]) -> None:
    state = dict(state)
    self.skipped_records = int(state.pop(self.STATE_KEY, 0))
    self._iterator.set_state(state)

  def state_json(self) -> str:
    return json.dumps(self.get_state(), sort_keys=True)

  def restore_json(self, text: str) -> None:
    self.set_state(json.loads(text))


def make_iterator(spec: DataSpec, mesh: jax.sharding.Mesh, *,
                  global_batch_size: int, seed: int,
                  rules: mesh_lib.LogicalRules = mesh_lib.DEFAULT_RULES,
                  source=None) -> GlobalBatchIterator:
  """The iterator a job trains on: this process's rows of the global
  batches (`batch_rows` of the mesh's batch sharding), as global arrays."""
  parallel = mesh_lib.batch_parallelism(mesh, rules)
  if global_batch_size % parallel:
    raise ValueError(f'global batch {global_batch_size} is not divisible by '
                     f'the {parallel}-way batch sharding of the mesh')
  rows = batch_rows(mesh_lib.batch_sharding(mesh, rules), global_batch_size)
  ds = make_dataset(spec, global_batch_size=global_batch_size, seed=seed,
                    rows=rows, source=source, skip_counts=True)
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
