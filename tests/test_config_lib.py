"""Config conventions: parse_arg, locking, validation before compiling."""

import importlib.util
import pathlib

import pytest

from walt import config_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_config(relpath, arg=None):
  spec = importlib.util.spec_from_file_location('cfg', ROOT / relpath)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_parse_arg_variants_and_types():
  a = config_lib.parse_arg('quick', variant='default', runlocal=False, n=2)
  assert a.variant == 'quick' and a.runlocal is False and a.n == 2
  b = config_lib.parse_arg('variant=L,runlocal=True,n=5', variant='default',
                           runlocal=False, n=2)
  assert (b.variant, b.runlocal, b.n) == ('L', True, 5)
  with pytest.raises(ValueError, match='unknown config argument'):
    config_lib.parse_arg('typo=1', variant='default')
  with pytest.raises(ValueError, match='not a boolean'):
    config_lib.parse_arg('runlocal=maybe', runlocal=False)
  assert config_lib.parse_arg(None, variant='default').variant == 'default'


@pytest.mark.parametrize('arg', [None, 'quick', 'hires'])
def test_data_configs_load_locked_and_valid(arg):
  config = load_config('configs/data/sprites.py', arg)
  config_lib.validate(config, num_devices=8, num_processes=1)
  with pytest.raises(AttributeError):
    config.typo_field = 1  # locked: typos in overrides raise
  with pytest.raises(ValueError):
    load_config('configs/data/sprites.py', 'no_such_variant')


def _valid():
  c = config_lib.base_config()
  c.data.frames, c.batch_size = 17, 8
  return c


@pytest.mark.parametrize('field,value,message', [
    ('frames', 16, '1\\+4k'),
    ('resolution', (60, 64), 'divisible by 8'),
    ('batch_size', 6, 'batch sharding'),
    ('total_steps', 0, 'positive'),
])
def test_validate_rejects_bad_configs(field, value, message):
  c = _valid()
  if field in ('frames', 'resolution'):
    c.data[field] = value
  else:
    c[field] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c, num_devices=8, num_processes=1)


def test_validate_checks_mesh_processes_and_model_hooks():
  c = _valid()
  c.mesh.fsdp = 3
  with pytest.raises(ValueError, match='not divisible'):
    config_lib.validate(c, num_devices=8, num_processes=1)
  c = _valid()
  c.mesh.data, c.mesh.tensor = 1, -1
  with pytest.raises(ValueError, match='processes'):
    config_lib.validate(c, num_devices=3, num_processes=3)
  shape = config_lib.validate(_valid(), num_devices=8, num_processes=1)
  assert shape == {'data': 8, 'fsdp': 1, 'tensor': 1}

  def windows_divide(config, mesh_shape):
    raise ValueError('window 3 does not divide 16')
  with pytest.raises(ValueError, match='window'):
    config_lib.validate(_valid(), num_devices=8, num_processes=1,
                        extra=[windows_divide])


@pytest.mark.parametrize('field,value,message', [
    ('eval_every', -1, 'eval_every=-1 must be >= 0'),
    ('ema_decay', 1.0, 'ema_decay=1.0 not in \\[0, 1\\)'),
    ('keep_checkpoints', 0, 'keep_checkpoints=0 must be at least 1'),
    ('data.image_fraction', 1.5, 'data.image_fraction=1.5 not in'),
    ('data.crop', (72, 64), 'data.crop=\\(72, 64\\) exceeds'),
])
def test_validate_rejects_bad_trainer_fields(field, value, message):
  c = config_lib.trainer_config('x')
  node, _, leaf = field.rpartition('.')
  (c[node] if node else c)[leaf] = value
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c, num_devices=8, num_processes=1)


def _job_config(relpath, arg, fields):
  c = load_config(relpath, arg)
  c.unlock()
  for key, value in fields.items():
    node, _, leaf = key.rpartition('.')
    (c[node] if node else c)[leaf] = value
  return c


@pytest.mark.parametrize('relpath,arg,fields,message', [
    # Batches the tokenizer's eval and latent statistics shard unpadded.
    ('configs/tokenizer/sprites.py', 'quick',
     {'batch_size': 8, 'eval.batch_size': 4},
     'eval.batch_size=4 is not divisible by the batch sharding 8'),
    ('configs/tokenizer/sprites.py', 'quick',
     {'batch_size': 8, 'latent_stats.batch_size': 12},
     'latent_stats.batch_size=12'),
    ('configs/tokenizer/sprites.py', 'quick',
     {'batch_size': 8, 'eval.frames': 8},
     'eval.frames, data.resolution: 8 frames: need 1 \\+ 4k'),
    ('configs/walt/sprites.py', 'quick',
     {'model.spatiotemporal_window': (0, 3, 3)},
     'config.model: window \\(0, 3, 3\\) does not divide the token grid'),
    ('configs/eval/sprites.py', None, {'sampler.sampler': 'euler'},
     "sampler.sampler='euler': one of"),
    ('configs/eval/sprites.py', None, {'features.resize_method': 'area'},
     "features.resize_method='area'"),
    ('configs/eval/sprites.py', None, {'poll_seconds': -5},
     'poll_seconds=-5 must be >= 0'),
])
def test_job_validators_name_the_field(relpath, arg, fields, message):
  from walt import jobs
  c = _job_config(relpath, arg, fields)
  job = jobs.load(c.job)
  with pytest.raises(ValueError, match=message):
    config_lib.validate(c, num_devices=8, num_processes=1,
                        extra=job.VALIDATORS)
