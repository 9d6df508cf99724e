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
  # Stop when this many consecutive logged steps have a non-finite loss
  # (the optimizer skips non-finite updates meanwhile).
  c.max_nonfinite_logs = 3
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
  mesh axes resolvable on the devices, global batch divisible by processes and
  by the batch sharding; then each `extra(config, mesh_shape)` (a model's own
  checks, e.g. windows dividing the latent grid).

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
  shape = dict(zip(mesh_lib.MESH_AXES, mesh_lib.resolve_mesh_shape(
      config.mesh.to_dict(), num_devices)))
  rules = mesh_lib.rules_from_config(config.get('logical_rules', {}))
  batch_axes = dict(rules).get('act_batch') or ()
  batch_axes = (batch_axes,) if isinstance(batch_axes, str) else batch_axes
  parallel = 1
  for axis in batch_axes:
    parallel *= shape[axis]
  if config.batch_size % parallel:
    raise ValueError(
        f'batch_size={config.batch_size} is not divisible by the batch '
        f'sharding {parallel} (mesh {shape}, batch axes {batch_axes})')
  if config.batch_size % num_processes:
    raise ValueError(f'batch_size={config.batch_size} is not divisible by '
                     f'{num_processes} processes')
  for fn in extra:
    fn(config, shape)
  return shape


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

