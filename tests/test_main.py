"""`python -m walt.main` end to end with the input-pipeline job, and what it
checks before a job starts: config fields and every input (preflight)."""

import json
import os
import subprocess
import sys

import mediapy
import pytest

from tests.conftest import CompileCounter
from walt import config_lib
from walt import preflight
from walt.data import pipeline  # noqa: F401
from walt.evaluation import eval_job

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, timeout=300):
  env = {**os.environ, 'PYTHONPATH': ROOT}
  return subprocess.run([sys.executable, '-m', 'walt.main', *args], env=env,
                        cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


def _config(relative, arg=None, **fields):
  """A configs/ file with `fields` set (`a__b` sets `a.b`)."""
  c = config_lib.load_file(relative, arg)
  c.unlock()
  for key, value in fields.items():
    node, _, leaf = key.rpartition('__')
    (c[node] if node else c)[leaf] = value
  c.lock()
  return c


def test_data_job_streams_batches_and_writes_preview(sprites_data_dir,
                                                     tmp_path):
  workdir = tmp_path / 'work'
  r = _run(['--config=configs/data/sprites.py:quick', f'--workdir={workdir}',
            f'--config.data.data_dir={sprites_data_dir}',
            '--config.total_steps=5', '--config.batch_size=8',
            '--config.mesh.fsdp=2'])
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.loads((workdir / 'data_job.json').read_text())
  assert summary['batches'] == 5 and summary['examples_per_sec'] > 0
  assert summary['mesh'] == {'data': 4, 'fsdp': 2, 'tensor': 1}
  assert summary['iterator_state'] == {'next_index': 5}
  preview = mediapy.read_image(str(workdir / 'data_preview.png'))
  assert preview.shape == (8 * 32, 5 * 32, 3)  # a row of 5 frames per sample


@pytest.mark.parametrize('override,message', [
    ('--config.data.frames=4', '1\\+4k'),
    ('--config.batch_size=7', 'not divisible'),
    ('--config.no_such_field=1', 'no_such_field'),
    ('--config.data.nme=x', "--config.data.nme: the config has no field "
     "'data.nme'; did you mean \"name\""),
    ('--config.data.image_fraction=1.5', 'data.image_fraction=1.5 not in'),
])
def test_bad_configs_fail_before_anything_runs(tmp_path, override, message):
  r = _run(['--config=configs/data/sprites.py:quick',
            f'--workdir={tmp_path}', override])
  assert r.returncode != 0
  assert __import__('re').search(message, r.stderr), r.stderr[-2000:]
  assert not (tmp_path / 'data_job.json').exists()


def test_eval_job_names_every_missing_input_at_once(tmp_path):
  """K600 FVD with no weights, data or denoiser: one error lists all three,
  each with where to get it; polling for checkpoints does not postpone it."""
  args = ['--config=configs/eval/k600_frame_prediction.py',
          f'--workdir={tmp_path / "eval"}',
          f'--config.generator_workdir={tmp_path / "denoiser"}',
          f'--config.features.weights={tmp_path / "i3d.npz"}',
          f'--config.data.data_dir={tmp_path / "data"}']
  r = _run(args)
  assert r.returncode == 1, r.stderr[-3000:]
  err = r.stderr
  assert 'the eval job cannot start: 3 missing inputs' in err
  assert f'i3d weights not found at {tmp_path}/i3d.npz' in err
  assert (f'python -m walt.evaluation.convert --network=i3d '
          f'--src=MODULE_DIR --out={tmp_path}/i3d.npz') in err
  assert ('python -m walt.data.build --dataset=kinetics600/17x128x128 '
          f'--data_dir={tmp_path}/data --manual_dir=YOUR_COPY') in err
  assert f'no checkpoint in {tmp_path}/denoiser' in err
  assert 'Traceback' not in err
  # Polling waits for checkpoints, never for weights or data (a wait of
  # poll_seconds=3600 would end in the subprocess timeout instead).
  r = _run(args + ['--config.poll_seconds=3600'], timeout=120)
  assert r.returncode == 1, r.stderr[-3000:]
  assert '2 missing inputs' in r.stderr and 'i3d weights' in r.stderr
  assert 'no checkpoint in' not in r.stderr
  assert not (tmp_path / 'eval').exists()


def test_preflight_compiles_nothing_and_waits_for_nothing(tmp_path):
  c = _config('eval/k600_frame_prediction.py', poll_seconds=3600,
              generator_workdir=str(tmp_path / 'denoiser'),
              features__weights=str(tmp_path / 'i3d.npz'),
              data__data_dir=str(tmp_path / 'data'))
  config_lib.validate(c, extra=eval_job.VALIDATORS)
  with CompileCounter() as compiles, pytest.raises(
      preflight.MissingInputs) as e:
    # poll_seconds=3600: a wait would hang here; a compile would count.
    preflight.check(c, str(tmp_path / 'eval'), 'eval')
  assert compiles.count == 0
  assert [p.split(':')[0] for p in e.value.problems] == [
      'features.weights', "reference.split (kinetics600/17x128x128, split "
      "'test')"]


def test_denoiser_job_names_its_tokenizer_and_the_command(tmp_path):
  tok = tmp_path / 'tok'
  c = _config('walt/sprites.py', 'quick', tokenizer__workdir=str(tok),
              data__data_dir=str(tmp_path / 'data'))
  workdir = str(tmp_path / 'w')
  problems = preflight.missing_inputs(c, workdir)
  assert len(problems) == 1, problems  # the data set is generated on use
  assert problems[0].startswith(
      f'tokenizer.workdir: no tokenizer checkpoint under {tok}: train one '
      f'with python -m walt.main --config=configs/tokenizer/sprites.py'
      f'[:variant] --workdir={tok}, the variant for moving_sprites/17x32x32')
  (tok / 'checkpoints' / '100').mkdir(parents=True)  # a checkpoint, no stats
  problems = preflight.missing_inputs(c, workdir)
  assert len(problems) == 1 and 'latent_stats.json is missing' in problems[0]
  assert f'--workdir={tok} --mode=latent_stats' in problems[0]
  (tok / 'latent_stats.json').write_text('{}')
  assert preflight.missing_inputs(c, workdir) == []
  # A latent cache is read unless this mode writes it; eval restores the
  # workdir's checkpoint.
  cache = _config('walt/sprites.py', 'quick', tokenizer__workdir=str(tok),
                  latents__cache=str(tmp_path / 'cache'))
  problems = preflight.missing_inputs(cache, workdir)
  assert len(problems) == 1 and problems[0].startswith('latents.cache: no '
                                                       'latent cache in')
  assert '--mode=cache_latents' in problems[0]
  assert preflight.missing_inputs(cache, workdir, 'cache_latents') == []
  with pytest.raises(preflight.MissingInputs, match=f'--mode=eval restores '
                     f'the latest checkpoint of {workdir}, which has none'):
    preflight.check(c, workdir, 'eval')
  with pytest.raises(ValueError, match='train, eval, cache_latents'):
    preflight.check(c, workdir, 'sample')


def test_missing_data_set_names_the_build_command(tmp_path):
  data_dir = tmp_path / 'data'
  r = _run(['--config=configs/data/sprites.py:quick', f'--workdir={tmp_path}',
            f'--config.data.data_dir={data_dir}', '--config.data.build=False',
            '--config.data.name=moving_sprites/17x32x32'], timeout=120)
  assert r.returncode == 1, r.stderr[-3000:]
  assert ('data set moving_sprites/17x32x32 is not prepared in '
          f'{data_dir}/moving_sprites/17x32x32/') in r.stderr
  assert ('Build it with: python -m walt.data.build '
          f'--dataset=moving_sprites/17x32x32 --data_dir={data_dir}'
          ) in r.stderr
  assert not os.path.exists(data_dir)
  # A real-video data set also needs the user's copy.
  c = _config('tokenizer/k600.py', data__data_dir=str(data_dir),
              resume=str(tmp_path / 'old_run'),
              loss__perceptual_weights=str(tmp_path / 'resnet50.npz'))
  problems = preflight.missing_inputs(c, str(tmp_path / 'w'))
  assert [p.split(' (')[0].split(':')[0] for p in problems] == [
      'data', 'eval.split', 'latent_stats', 'loss.perceptual_weights',
      'resume'], problems
  assert '--dataset=kinetics600/17x128x128' in problems[0]
  assert '--manual_dir=YOUR_COPY' in problems[0]
  assert 'python -m walt.models.perceptual' in problems[3]


def test_prepared_data_passes_and_a_wrong_split_is_named(sprites_data_dir,
                                                         tmp_path):
  from tests.conftest import TINY_DATASET
  c = _config('data/sprites.py', 'quick', data__data_dir=sprites_data_dir,
              data__name=TINY_DATASET, data__build=False)
  assert preflight.missing_inputs(c, str(tmp_path)) == []
  c = _config('data/sprites.py', 'quick', data__data_dir=sprites_data_dir,
              data__name=TINY_DATASET, data__build=False, data__split='tset')
  (problem,) = preflight.missing_inputs(c, str(tmp_path))
  assert "Unknown split 'tset'" in problem
