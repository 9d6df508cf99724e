"""Faults injected into the trainer toolkit: non-finite steps, corrupt or
half-written checkpoints, and interrupted denoiser runs (resumed ==
uninterrupted, with and without the latent cache). The tokenizer's
preemption and corrupt-checkpoint runs are in test_tokenizer_training.py."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from walt import checkpoint as ckpt_lib
from walt.train import denoiser_trainer
from walt.train import preemption
from walt.train import state as state_lib


# ----------------------------------------------------------- non-finite steps
def _state(lr=0.1):
  tx = optax.adam(lr)
  params = {'w': jnp.ones(3), 'b': jnp.zeros(2)}
  return state_lib.TrainState.create(params, tx), tx


def _grads(value=1.0):
  return {'w': jnp.full(3, value), 'b': jnp.full(2, 1.0)}


@pytest.mark.parametrize('grads,loss,code', [
    (_grads(np.nan), 1.0, state_lib.NONFINITE_GRADS),
    (_grads(), np.inf, state_lib.NONFINITE_LOSS),
    (_grads(np.nan), np.nan,
     state_lib.NONFINITE_GRADS | state_lib.NONFINITE_LOSS),
])
def test_non_finite_step_is_skipped_inside_the_step(grads, loss, code):
  state, tx = _state()
  step = jax.jit(lambda s, g, m: state_lib.guarded_apply_gradients(
      s, g, tx, 0.9, m))
  new, metrics = step(state, grads, {'loss': jnp.asarray(loss)})
  assert int(metrics['nonfinite']) == code
  assert int(new.step) == 1  # the data and RNG move on
  jax.tree.map(np.testing.assert_array_equal,
               (new.params, new.opt_state, new.ema_params),
               (state.params, state.opt_state, state.ema_params))
  # A finite step after it is applied as if the bad one never happened.
  kept, metrics = step(new, _grads(), {'loss': jnp.asarray(1.0)})
  assert int(metrics['nonfinite']) == 0
  assert not np.allclose(kept.params['w'], state.params['w'])
  assert np.all(np.isfinite(kept.params['w']))


def test_an_update_that_overflows_the_params_is_skipped():
  state, tx = _state(lr=1e38)
  state = state.replace(params={'w': jnp.full(3, 3e38), 'b': jnp.zeros(2)})
  new, metrics = state_lib.guarded_apply_gradients(
      state, _grads(-1.0), tx, 0.9, {'loss': jnp.asarray(1.0)})
  assert int(metrics['nonfinite']) == state_lib.NONFINITE_PARAMS
  np.testing.assert_array_equal(new.params['w'], state.params['w'])


def test_bad_step_counter_stops_on_the_nth_consecutive_skip():
  counter = preemption.BadStepCounter(3)
  for step, code in [(1, 0), (2, 1), (3, 1), (4, 0), (5, 2), (6, 2)]:
    counter.update(step, code)  # a kept step resets the run of bad ones
  assert counter.consecutive == 2 and counter.total == 4
  with pytest.raises(FloatingPointError,
                     match=r'gradients at step 7: 3 consecutive steps '
                           r'\(5\.\.7\)'):
    counter.update(7, state_lib.NONFINITE_GRADS)


# --------------------------------------------------------------- checkpoints
def _tree(step):
  return {'a': np.full((4, 4), float(step), np.float32),
          'b': np.arange(step + 3, dtype=np.float32)[:3]}


def _target():
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      x.shape, x.dtype, sharding=jax.sharding.SingleDeviceSharding(
          jax.devices()[0])), _tree(0))


@pytest.fixture
def three_checkpoints(tmp_path):
  config = __import__('ml_collections').ConfigDict({'x': 1})
  directory = str(tmp_path / 'checkpoints')
  ckpt = ckpt_lib.Checkpointer(directory, keep=5, async_save=False)
  for step in (1, 2, 3):
    ckpt.save(step, _tree(step), {'position': step}, config, force=True)
  ckpt.close()
  return directory


def _truncate_files(directory):
  files = [os.path.join(d, f) for d, _, fs in os.walk(directory) for f in fs]
  assert files
  for path in files:
    with open(path, 'r+b') as f:
      f.truncate(max(os.path.getsize(path) // 3, 0))


def test_corrupt_and_half_written_checkpoints_fall_back_to_a_good_one(
    three_checkpoints):
  directory = three_checkpoints
  _truncate_files(os.path.join(directory, '3', 'state'))  # truncated
  shutil.rmtree(os.path.join(directory, '2', 'state'))  # half-written
  ckpt = ckpt_lib.Checkpointer(directory, keep=5, async_save=False)
  state, data, _, step = ckpt.restore_latest_good(_target(), quarantine=True)
  assert step == 1 and data == {'position': 1}
  np.testing.assert_array_equal(state['a'], _tree(1)['a'])
  # The broken steps are moved aside, not deleted, and no longer "latest".
  aside = os.path.join(os.path.dirname(directory), 'corrupt_checkpoints')
  assert sorted(os.listdir(aside)) == ['2', '3']
  assert ckpt.all_steps() == [1]
  # New saves of those steps work and prune nothing that was set aside.
  ckpt.save(2, _tree(2), {}, __import__('ml_collections').ConfigDict(),
            force=True)
  ckpt.close()
  assert sorted(os.listdir(aside)) == ['2', '3']


def test_a_target_that_fits_no_checkpoint_moves_nothing(three_checkpoints):
  directory = three_checkpoints
  wrong = jax.tree.map(lambda x: jax.ShapeDtypeStruct(
      (7,) + x.shape, x.dtype, sharding=x.sharding), _target())
  ckpt = ckpt_lib.Checkpointer(directory, keep=5, async_save=False)
  with pytest.raises(RuntimeError, match='nothing was moved'):
    ckpt.restore_latest_good(wrong, quarantine=True)
  assert ckpt.all_steps() == [1, 2, 3]
  ckpt.close()
  assert not os.path.exists(os.path.join(os.path.dirname(directory),
                                         'corrupt_checkpoints'))


# ------------------------------------------------- denoiser: exact resume
def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return {r['step']: r for r in map(json.loads, f) if 'loss' in r}


def _denoiser_config(data_dir, tokenizer_dir, cache, stop_at_step=0):
  from tests.test_denoiser_training import _config
  c = _config(data_dir, tokenizer_dir, steps=8, cache=cache)
  with c.unlocked():
    c.eval_every = 0
    c.checkpoint_every = 8
    c.stop_at_step = stop_at_step
    c.latents.num_examples, c.latents.batch_size = 24, 8
  return c


@pytest.mark.slow
@pytest.mark.parametrize('cached', [False, True], ids=['pixels', 'cache'])
def test_denoiser_resumed_equals_uninterrupted(sprites_data_dir,
                                               tokenizer_dir, tmp_path,
                                               cached):
  """Self-conditioning and frame-conditioning draws, EMA, optimizer state
  and data position all survive the interruption, bitwise."""
  cache = str(tmp_path / 'cache') if cached else ''
  if cached:
    denoiser_trainer.run(_denoiser_config(sprites_data_dir, tokenizer_dir,
                                          cache), str(tmp_path / 'c'),
                         mode='cache_latents')
  straight_dir, split_dir = str(tmp_path / 'a'), str(tmp_path / 'b')
  straight = denoiser_trainer.run(
      _denoiser_config(sprites_data_dir, tokenizer_dir, cache), straight_dir)
  first = denoiser_trainer.run(
      _denoiser_config(sprites_data_dir, tokenizer_dir, cache,
                       stop_at_step=3), split_dir)
  assert int(first.step) == 3
  resumed = denoiser_trainer.run(
      _denoiser_config(sprites_data_dir, tokenizer_dir, cache), split_dir)
  assert int(resumed.step) == 8
  for name in ('params', 'ema_params', 'opt_state'):
    jax.tree.map(np.testing.assert_array_equal, getattr(resumed, name),
                 getattr(straight, name))
  a, b = _metrics(straight_dir), _metrics(split_dir)
  assert sorted(a) == sorted(b) == list(range(1, 9))
  for step in a:
    assert a[step]['loss'] == b[step]['loss'], step
    assert a[step]['skipped_steps'] == 0
