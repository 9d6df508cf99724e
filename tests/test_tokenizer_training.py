"""The tokenizer job on the shared trainer toolkit, end to end on tiny data:
learning, eval files, latent stats, checkpoint round trip, exact resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import flax.linen as nn
import jax
import numpy as np
import pytest

from tests.conftest import CompileCounter
from tests.conftest import TINY_DATASET
from tests.test_tokenizer import _load_config
from walt import config_lib
from walt import inference
from walt.models import tokenizer as tok
from walt.parallel import mesh as mesh_lib
from walt.train import loop
from walt.train import tokenizer_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(data_dir, total_steps, gan_start=20):
  c = _load_config('configs/tokenizer/sprites.py', 'quick')
  c.unlock()
  c.data.update({'name': TINY_DATASET, 'data_dir': data_dir, 'frames': 5,
                 'resolution': (32, 32)})
  c.model.update({'base_channels': 8, 'num_groups': 4})
  c.discriminator.update({'base_channels': 4,
                          'channel_multipliers': (1, 1)})
  c.loss.gan_start = gan_start
  c.optimizer.warmup_steps = c.disc_optimizer.warmup_steps = 5
  c.batch_size, c.total_steps = 8, total_steps
  c.log_every, c.checkpoint_every = 5, 15
  c.eval_every = c.summary_every = 30
  c.eval.update({'frames': 5, 'batch_size': 8, 'num_examples': 16,
                 'num_summary_videos': 1})
  c.latent_stats.update({'num_examples': 16, 'batch_size': 8})
  c.mesh.fsdp = 2
  c.lock()
  config_lib.validate(c, extra=tokenizer_trainer.VALIDATORS)
  return c


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope='module')
def uninterrupted(sprites_data_dir, tmp_path_factory):
  """(workdir, final state) of a 30-step run with a GAN phase from step 20."""
  workdir = str(tmp_path_factory.mktemp('tok_a'))
  return workdir, tokenizer_trainer.run(_config(sprites_data_dir, 30),
                                        workdir)


def test_loss_falls_and_job_writes_its_files(uninterrupted):
  uninterrupted, _ = uninterrupted
  rows = [r for r in _metrics(uninterrupted) if 'loss' in r]
  assert {'step', 'loss', 'steps_per_sec', 'psnr'} <= set(rows[0])
  assert rows[-1]['step'] == 30
  assert rows[-1]['l2'] < 0.5 * rows[0]['l2']
  assert rows[-1]['d_loss'] > 0  # the GAN phase (from step 20) ran
  results = json.load(open(os.path.join(uninterrupted, 'eval', '30',
                                        'results.json')))
  assert {'psnr', 'ssim'} <= set(results) and results['num_samples'] == 16
  assert results['metrics']['psnr'] == results['psnr']
  assert results['protocol']['split'] == 'validation'
  stats = json.load(open(os.path.join(uninterrupted, 'latent_stats.json')))
  channels = _load_config('configs/tokenizer/sprites.py',
                          'quick').model.latent_channels
  assert len(stats['mean']) == len(stats['std']) == channels
  assert all(s > 0 for s in stats['std'])
  mean, std = inference.load_latent_stats(uninterrupted)
  z = np.random.default_rng(0).normal(mean, std, size=(4000, channels))
  zn = np.asarray(tok.normalize(z, mean, std))
  np.testing.assert_allclose(zn.mean(0), 0, atol=0.1)
  np.testing.assert_allclose(zn.std(0), 1, atol=0.1)
  np.testing.assert_allclose(np.asarray(tok.denormalize(zn, mean, std)), z,
                             rtol=1e-5, atol=1e-5)
  samples = os.listdir(os.path.join(uninterrupted, 'samples', '30'))
  assert {'reconstruction_0.mp4', 'reconstruction_0.gif'} <= set(samples)


def _restore(config, workdir):
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config({})
  task = tokenizer_trainer.TokenizerTask(config, workdir, mesh, rules)
  return loop.restore_latest(task, config, workdir, mesh, rules)


def _assert_trees_equal(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(
      np.asarray(x), np.asarray(y)), a, b)


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted(sprites_data_dir, uninterrupted,
                                               tmp_path):
  workdir = str(tmp_path)
  first = _config(sprites_data_dir, 30)
  first.unlock()
  first.stop_at_step = 15  # "preempted" after step 15
  tokenizer_trainer.run(first, workdir)
  assert not os.path.exists(os.path.join(workdir, 'eval'))
  config = _config(sprites_data_dir, 30)
  assert int(_restore(config, workdir).step) == 15
  tokenizer_trainer.run(config, workdir)  # resumes state and data position
  resumed, straight = _restore(config, workdir), uninterrupted[1]
  assert int(resumed.step) == 30
  _assert_trees_equal(resumed.params, straight.params)
  _assert_trees_equal(resumed.ema_params, straight.ema_params)
  _assert_trees_equal(resumed.extra, straight.extra)
  steps = [r['step'] for r in _metrics(workdir) if 'loss' in r]
  assert steps == sorted(set(steps)) and steps[-1] == 30


def test_checkpoint_restore_gives_the_final_state(sprites_data_dir,
                                                  uninterrupted):
  workdir, final = uninterrupted
  restored = _restore(_config(sprites_data_dir, 30), workdir)
  _assert_trees_equal(restored, final)


def preemption_config(data_dir, total_steps):
  """`_config` without eval, summaries or latent stats (params unchanged)."""
  config = _config(data_dir, total_steps)
  with config.unlocked():
    config.eval_every = config.summary_every = 0
    config.latent_stats.num_examples = 0
  return config


def test_preempted_job_saves_exits_0_and_resumes_exactly(
    sprites_data_dir, uninterrupted, tmp_path):
  """SIGTERM at whatever step the job is on (once it reached a step drawn
  from a seed, WALT_TEST_SEED or a fresh one, named in every failure so
  the draw can be repeated): it saves that step and exits 0; the same
  command then finishes the run as if nothing happened. Catches a
  preempted job that saves another step than the one it reached, exits
  non-zero, or resumes into another state than the uninterrupted run's."""
  workdir = str(tmp_path)
  seed = int(os.environ.get('WALT_TEST_SEED') or
             np.random.SeedSequence().entropy % (1 << 32))
  target = int(np.random.default_rng(seed).integers(2, 14))
  why = f'SIGTERM once step {target} was logged (WALT_TEST_SEED={seed})'
  env = dict(os.environ, PYTHONPATH=ROOT,
             WALT_TEST_XLA_CACHE=jax.config.jax_compilation_cache_dir or '')
  proc = subprocess.Popen(
      [sys.executable, '-m', 'tests.preemption_worker', sprites_data_dir,
       workdir, '30'], cwd=ROOT, env=env, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 600
  metrics = os.path.join(workdir, 'metrics.jsonl')
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and any(
        r.get('step', 0) >= target for r in _metrics(workdir)):
      break
    time.sleep(0.2)
  assert proc.poll() is None, (why, proc.communicate()[0][-3000:])
  proc.send_signal(signal.SIGTERM)
  out = proc.communicate(timeout=300)[0]
  assert proc.returncode == 0, (why, out[-3000:])
  config = preemption_config(sprites_data_dir, 30)
  saved = int(_restore(config, workdir).step)
  assert target <= saved < 30, (why, saved)
  assert f'preempted: saved step {saved}' in out, (why, out[-3000:])
  tokenizer_trainer.run(config, workdir)  # the same job, continued
  resumed, straight = _restore(config, workdir), uninterrupted[1]
  assert int(resumed.step) == 30, why
  try:
    _assert_trees_equal(resumed.params, straight.params)
    _assert_trees_equal(resumed.ema_params, straight.ema_params)
    _assert_trees_equal(resumed.extra, straight.extra)
  except AssertionError as e:
    raise AssertionError(f'{why}, saved step {saved}: {e}') from None


def test_corrupt_latest_checkpoint_falls_back_and_resumes_exactly(
    sprites_data_dir, uninterrupted, tmp_path):
  """The step-30 checkpoint truncated: the job reports it, moves it aside,
  resumes from step 15 and reaches the uninterrupted state again."""
  source, straight = uninterrupted
  workdir = str(tmp_path / 'w')
  shutil.copytree(os.path.join(source, 'checkpoints'),
                  os.path.join(workdir, 'checkpoints'))
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == [
      '15', '30']
  state_dir = os.path.join(workdir, 'checkpoints', '30', 'state')
  for d, _, files in os.walk(state_dir):
    for name in files:
      path = os.path.join(d, name)
      with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)
  config = _config(sprites_data_dir, 30)
  resumed = tokenizer_trainer.run(config, workdir)
  assert os.listdir(os.path.join(workdir, 'corrupt_checkpoints')) == ['30']
  _assert_trees_equal(resumed.params, straight.params)
  _assert_trees_equal(resumed.ema_params, straight.ema_params)
  assert [r['step'] for r in _metrics(workdir) if 'loss' in r][0] == 16


class _PoisonedTask(tokenizer_trainer.TokenizerTask):
  """Feeds NaN pixels from step `poison_from` on (a bad batch / overflow)."""
  poison_from = 6

  def prepare_batch(self, batch):
    self.calls = getattr(self, 'calls', 0) + 1
    if self.calls >= self.poison_from:
      batch = dict(batch, video=batch['video'] * np.nan)
    return batch


def test_non_finite_steps_stop_the_job_and_never_reach_a_checkpoint(
    sprites_data_dir, tmp_path):
  # The `tokenizer_dir` fixture's job: its step is compiled already.
  config = _config(sprites_data_dir, 10, gan_start=10_000)
  with config.unlocked():
    config.checkpoint_every, config.max_bad_steps = 4, 3
    config.eval_every = config.summary_every = 0
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config({})
  task = _PoisonedTask(config, str(tmp_path), mesh, rules)
  # Steps 6, 7 and 8 are skipped; the third stops the job before step 8's
  # checkpoint, naming the step and what was not finite.
  with pytest.raises(FloatingPointError,
                     match=r'non-finite loss.* at step 8: 3 consecutive'):
    loop.train(task, config, str(tmp_path))
  assert sorted(os.listdir(os.path.join(str(tmp_path), 'checkpoints'))) == [
      '4']
  state = _restore(config, str(tmp_path))
  assert all(np.all(np.isfinite(np.asarray(x)))
             for x in jax.tree.leaves((state.params, state.ema_params,
                                       state.opt_state)))
  rows = {r['step']: r for r in _metrics(str(tmp_path)) if 'loss' in r}
  assert rows[5]['nonfinite'] == 0 and rows[5]['skipped_steps'] == 0


def test_eval_and_latent_stats_modes_use_the_latest_checkpoint(
    sprites_data_dir, uninterrupted):
  workdir, final = uninterrupted
  config = _config(sprites_data_dir, 30)
  results_path = os.path.join(workdir, 'eval', '30', 'results.json')
  before = json.load(open(results_path))
  os.remove(results_path)
  state = tokenizer_trainer.run(config, workdir, mode='eval')
  assert int(state.step) == 30
  after = json.load(open(results_path))
  assert after['psnr'] == pytest.approx(before['psnr'], abs=1e-4)
  stats_path = os.path.join(workdir, 'latent_stats.json')
  before = json.load(open(stats_path))
  os.remove(stats_path)
  tokenizer_trainer.run(config, workdir, mode='latent_stats')
  after = json.load(open(stats_path))
  np.testing.assert_allclose(after['mean'], before['mean'], atol=1e-5)
  with pytest.raises(ValueError, match='unknown mode'):
    tokenizer_trainer.run(config, workdir, mode='sample')


def test_evaluation_compiles_once_per_job(sprites_data_dir, uninterrupted,
                                          tmp_path):
  """Second eval, summaries and latent statistics compile nothing; the
  inference tokenizer restores the EMA params without a trainer."""
  workdir, state = uninterrupted
  config = _config(sprites_data_dir, 30)
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  task = tokenizer_trainer.TokenizerTask(config, str(tmp_path), mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    first = task.evaluate(state, 1)
    tokenizer_trainer.compute_latent_stats(task, state, 1)
    with CompileCounter() as second:
      again = task.evaluate(state, 2)
      tokenizer_trainer.compute_latent_stats(task, state, 2)
  assert second.count == 0
  assert again == first
  loaded = inference.load_tokenizer(workdir, mesh)
  _assert_trees_equal(loaded.params, state.ema_params)
