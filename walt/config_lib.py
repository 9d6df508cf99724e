"""Config conventions: `get_config(arg)`, `parse_arg`, common fields, `validate`.

A config file is data: `get_config(arg)` returns a locked `ConfigDict` built
from `base_config()` plus its own fields; `arg` is the text after ':' in
`--config=file.py:arg` and selects named variants, e.g. `quick` or
`variant=L,runlocal=True`. Every job calls `validate(config)` before it builds
or compiles anything, so mistakes fail in seconds with a message that says
which field to change.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable, Sequence

import ml_collections

from walt.parallel import mesh as mesh_lib

ConfigDict = ml_collections.ConfigDict


def parse_arg(arg: str | None, **spec: Any) -> ConfigDict:
  """Parses `k=v,k2=v2` into a ConfigDict whose defaults/types come from `spec`.

  A token without '=' sets `variant` when `spec` has one (so `file.py:quick`
  means `variant=quick`), else it turns a boolean field on. Values are cast to
  the type of the default; unknown keys raise.
  """
  out = ConfigDict(dict(spec))
  for token in filter(None, (t.strip() for t in (arg or '').split(','))):
    if '=' in token:
      key, value = (s.strip() for s in token.split('=', 1))
    elif 'variant' in spec:
      key, value = 'variant', token
    else:
      key, value = token, 'True'
    if key not in spec:
      raise ValueError(f'unknown config argument {key!r}; known: {sorted(spec)}')
    out[key] = _cast(value, spec[key], key)
  out.lock()
  return out


def _cast(value: str, default: Any, key: str) -> Any:
  if isinstance(default, bool):
    if value.lower() in ('1', 'true', 'yes'):
      return True
    if value.lower() in ('0', 'false', 'no'):
      return False
    raise ValueError(f'{key}={value!r} is not a boolean')
  if isinstance(default, int):
    return int(value)
  if isinstance(default, float):
    return float(value)
  return value


def base_config(clips: bool = True, steps: bool = True) -> ConfigDict:
  """Fields every job has (the public contract of `--config.<field>=`):
  job, seed, batch size, mesh, data set. `clips`: the job reads clips of
  `data.frames` x `data.resolution` from `data.split`; `steps`: it runs
  `total_steps` steps, logging and checkpointing (an eval job has neither:
  it reads the generator's clip shape and evaluates checkpoints)."""
  c = ConfigDict()
  c.job = ''  # which program `walt.main` runs (see walt/main.py)
  c.seed = 0
  c.batch_size = 8  # global, over all processes and devices
  c.mesh = ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1})
  c.logical_rules = ConfigDict()  # overrides of mesh.DEFAULT_RULES
  c.data = ConfigDict({
      'name': 'moving_sprites/17x64x64',
      'data_dir': ml_collections.FieldReference(None, field_type=str),
      'build': True,  # generated data sets are built on first use
  })
  if clips:
    c.data.update({'split': 'train', 'frames': 17, 'resolution': (64, 64),
                   'image_fraction': 0.0})
  if steps:
    c.total_steps = 1000
    c.log_every = 50
    c.checkpoint_every = 1000
  return c


def trainer_config(job: str) -> ConfigDict:
  """`base_config()` plus the fields every trainer on `walt.train.loop` reads
  (resume order, cadences, EMA, time slicing); trainers set their values."""
  c = base_config()
  c.job = job
  c.keep_checkpoints = 3
  c.eval_every = 0
  c.summary_every = 0
  c.ema_decay = 0.999
  c.resume = ''  # continue another run (state, data position, step)
  c.init_from = ''  # take params (and EMA) from a checkpoint, start at 0
  c.stop_at_step = 0  # > 0: stop (and checkpoint) there; rerun to resume
  # Stop after this many consecutive steps with a non-finite loss, gradient
  # or update; each such step is skipped inside the step function.
  c.max_bad_steps = 20
  # Gradient accumulation: each step runs the batch as this many equal
  # microbatches (activations of batch_size / microbatches at a time) and
  # applies their mean gradient once: the same update as one big batch.
  c.microbatches = 1
  # A parameter of at least this many elements may not stay replicated on
  # a mesh that shards parameters (fsdp or tensor > 1); 0: no check.
  c.replicated_param_limit = 1 << 20
  c.data.crop = ml_collections.FieldReference(None, field_type=tuple)
  return c


def check_frames(frames: int, what: str = 'data.frames') -> None:
  """Videos have 1 + 4k frames (the tokenizer's 4x causal time compression)."""
  if frames < 1 or (frames - 1) % 4:
    raise ValueError(f'{what}={frames}: frames must be of the form 1+4k '
                     '(1, 5, 9, 13, 17, ...)')


Validator = Callable[[ConfigDict, dict[str, int]], None]


def validate(config: ConfigDict, num_devices: int | None = None,
             num_processes: int | None = None,
             extra: Sequence[Validator] = ()) -> dict[str, int]:
  """Checks a config before anything is built; returns the resolved mesh.

  Checks: required fields, frames of the form 1+4k, resolution divisible by 8,
  trainer fields (`check_trainer_fields`), mesh axes resolvable on the
  devices, global batch divisible by processes and by the batch sharding;
  then each `extra(config, mesh_shape)` (a model's own checks, e.g. windows
  dividing the latent grid). Unknown fields never get here: configs are
  locked, so `--config.<typo>=...` fails while flags are parsed.

  Raises:
    ValueError: naming the field to change.
  """
  import jax  # deferred: configs are importable without initialising JAX

  num_devices = jax.device_count() if num_devices is None else num_devices
  num_processes = (jax.process_count() if num_processes is None
                   else num_processes)
  for field in ('seed', 'batch_size', 'mesh', 'data'):
    if field not in config:
      raise ValueError(f'config lacks the common field {field!r}; build '
                       'configs on walt.config_lib.base_config()')
  step_fields = ('total_steps', 'log_every', 'checkpoint_every')
  for field in ('batch_size',) + step_fields:
    if field in config and config[field] <= 0:
      raise ValueError(f'{field}={config[field]} must be positive')
  if 'frames' in config.data:
    check_frames(config.data.frames)
    height, width = _resolution(config.data.resolution)
    if height % 8 or width % 8:
      raise ValueError(f'data.resolution={config.data.resolution}: both '
                       'sides must be divisible by 8 (the tokenizer '
                       'downsamples 8x)')
  check_trainer_fields(config)
  shape = dict(zip(mesh_lib.MESH_AXES, mesh_lib.resolve_mesh_shape(
      config.mesh.to_dict(), num_devices)))
  check_batch_size(config, shape, 'batch_size')
  check_microbatches(config, shape)
  if config.batch_size % num_processes:
    raise ValueError(f'batch_size={config.batch_size} is not divisible by '
                     f'{num_processes} processes')
  for fn in extra:
    fn(config, shape)
  return shape


def check_trainer_fields(config: ConfigDict) -> None:
  """Cadences, EMA, checkpoints kept, image fraction and crop."""
  for field in ('eval_every', 'summary_every', 'stop_at_step'):
    if field in config and config[field] < 0:
      raise ValueError(f'{field}={config[field]} must be >= 0 (0: off)')
  if 'keep_checkpoints' in config and config.keep_checkpoints < 1:
    raise ValueError(f'keep_checkpoints={config.keep_checkpoints} must be '
                     'at least 1')
  if 'ema_decay' in config and not 0.0 <= config.ema_decay < 1.0:
    raise ValueError(f'ema_decay={config.ema_decay} not in [0, 1) (0: no '
                     'EMA)')
  fraction = config.data.get('image_fraction', 0.0)
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f'data.image_fraction={fraction} not in [0, 1]')
  if config.data.get('crop') is not None:
    crop = _resolution(config.data.crop)
    height, width = _resolution(config.data.resolution)
    if crop[0] > height or crop[1] > width:
      raise ValueError(f'data.crop={config.data.crop} exceeds '
                       f'data.resolution={config.data.resolution} (clips '
                       'are resized to the resolution, then cropped)')


def batch_parallelism(config: ConfigDict, mesh_shape: dict[str, int]
                      ) -> tuple[int, tuple[str, ...]]:
  """(ways the batch is split, mesh axes splitting it) under the config's
  logical rules."""
  rules = mesh_lib.rules_from_config(config.get('logical_rules', {}))
  axes = dict(rules).get('act_batch') or ()
  axes = (axes,) if isinstance(axes, str) else tuple(axes)
  parallel = 1
  for axis in axes:
    parallel *= mesh_shape[axis]
  return parallel, axes


def check_batch_size(config: ConfigDict, mesh_shape: dict[str, int],
                     field: str) -> None:
  """`field` (a dotted path to a global batch size the job shards over the
  mesh without padding) must divide by the batch sharding."""
  value = config
  for key in field.split('.'):
    value = value[key]
  parallel, axes = batch_parallelism(config, mesh_shape)
  if value % parallel:
    raise ValueError(
        f'{field}={value} is not divisible by the batch sharding {parallel} '
        f'(mesh {mesh_shape}, batch axes {axes}): use a multiple of '
        f'{parallel} or change --config.mesh')


def check_microbatches(config: ConfigDict, mesh_shape: dict[str, int]
                       ) -> None:
  """Each of `microbatches` slices of the batch is sharded like the batch:
  batch_size / microbatches must divide by the batch sharding."""
  k = config.get('microbatches', 1)
  if k < 1:
    raise ValueError(f'microbatches={k} must be >= 1')
  parallel, axes = batch_parallelism(config, mesh_shape)
  if config.batch_size % (k * parallel):
    raise ValueError(
        f'batch_size={config.batch_size} does not split into microbatches='
        f'{k} slices divisible by the batch sharding {parallel} (mesh '
        f'{mesh_shape}, batch axes {axes}): batch_size must be a multiple '
        f'of {k * parallel}')


def _resolution(res) -> tuple[int, int]:
  return (res, res) if isinstance(res, int) else tuple(res)


def configs_dir() -> str:
  """The repository's `configs/` (next to the `walt` package)."""
  here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(here, 'configs')


def load_file(relative: str, arg: str | None = None,
              directory: str | None = None) -> ConfigDict:
  """`get_config(arg)` of `<directory or configs_dir()>/<relative>`."""
  path = os.path.join(directory or configs_dir(), relative)
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} is missing: run from a clone of the '
                            'repository or pass the configs directory')
  spec = importlib.util.spec_from_file_location('walt_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)

