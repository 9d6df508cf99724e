"""The eval job's polling loop (`poll_seconds > 0`): started before its
generator has any checkpoint, it evaluates each checkpoint written while it
waits, in order, and stops once `stop_at_step` is evaluated.

The job's waits are replaced by a function that writes the next checkpoint
(a checkpoint appears during a wait, as beside a training job), so nothing
here sleeps and a job that never looks again fails after a few polls
instead of hanging."""

import os
import shutil
import time
import types

import numpy as np
import pytest

from walt import checkpoint as ckpt_lib
from walt import config_lib
from walt import preflight
from walt.evaluation import eval_job
from walt.evaluation import results as results_lib
from walt.evaluation import tasks

POLL = 7  # seconds the job asks to wait (never really waited)


def _eval_config(generator, **fields):
  c = config_lib.load_file('eval/sprites.py')
  c.unlock()
  c.generator_workdir = generator
  c.poll_seconds = POLL
  c.update(fields)
  c.lock()
  config_lib.validate(c, extra=eval_job.VALIDATORS)
  return c


def _fake_waits(monkeypatch, on_wait, max_waits=6):
  """Replaces the job's `time.sleep`: each wait calls `on_wait(i)` (i = 0,
  1, ...) instead of sleeping; returns the list of requested seconds."""
  waits = []

  def sleep(seconds):
    waits.append(seconds)
    if len(waits) > max_waits:
      raise AssertionError(f'still polling after {max_waits} waits: the job '
                           'does not see the new checkpoints')
    on_wait(len(waits) - 1)

  monkeypatch.setattr(eval_job, 'time', types.SimpleNamespace(
      time=time.time, sleep=sleep))
  return waits


def _save(directory, step):
  ckpt = ckpt_lib.Checkpointer(directory, async_save=False)
  ckpt.save(step, {'w': np.full((2,), step, np.float32)},
            {'next_index': step}, config_lib.ConfigDict({'job': 'walt'}),
            force=True)
  ckpt.close()


class _RecordingEvaluator:
  """Stands in for `tasks.Evaluator`: records the steps it is given."""

  steps = []

  def __init__(self, config):
    self.config = config

  def __call__(self, step, workdir):
    del workdir
    _RecordingEvaluator.steps.append(step)
    return {'class_accuracy': step / 100}, 4, {'task': 'sprites'}


def test_polling_evaluates_checkpoints_written_after_it_started(
    tmp_path, monkeypatch):
  generator = str(tmp_path / 'denoiser')
  workdir = str(tmp_path / 'eval')
  c = _eval_config(generator, stop_at_step=20)
  # No checkpoint yet: with polling, preflight lets the job start and wait.
  preflight.check(c, workdir, 'eval')
  monkeypatch.setattr(tasks, 'Evaluator', _RecordingEvaluator)
  _RecordingEvaluator.steps = []
  directory = os.path.join(generator, 'checkpoints')
  written = []

  def write_next(i):
    # Wait 0: step 10 appears; wait 1: step 20 (the last one asked for).
    if i < 2:
      step = 10 * (i + 1)
      assert eval_job.checkpoint_steps(generator) == written
      _save(directory, step)
      written.append(step)

  waits = _fake_waits(monkeypatch, write_next)
  results = eval_job.run(c, workdir)
  assert _RecordingEvaluator.steps == [10, 20]
  assert set(results) == {10, 20}
  assert waits == [POLL, POLL]  # stopped at stop_at_step, no third wait
  for step in (10, 20):
    r = results_lib.read_results(workdir, step)
    assert r['step'] == step and r['class_accuracy'] == step / 100
  # A rerun finds both evaluated and waits for the next checkpoint.
  _RecordingEvaluator.steps = []
  c = _eval_config(generator, stop_at_step=30)
  waits = _fake_waits(monkeypatch, lambda i: _save(directory, 30))
  assert set(eval_job.run(c, workdir)) == {30}
  assert _RecordingEvaluator.steps == [30] and waits == [POLL]


@pytest.mark.slow
def test_polling_job_evaluates_a_trained_checkpoint_copied_in_while_waiting(
    trained, sprites_data_dir, tmp_path, monkeypatch):
  """The real evaluator: the generator workdir is empty when the job starts;
  the trained denoiser's checkpoint is copied in during the first wait,
  then loaded and scored."""
  source, config, _ = trained
  step = config.total_steps
  generator = str(tmp_path / 'denoiser')
  c = _eval_config(generator, stop_at_step=step, num_samples=16,
                   batch_size=16)
  with c.unlocked():
    c.data.update({'name': config.data.name, 'data_dir': sprites_data_dir})
    c.sampler.steps = 2
  copy = lambda i: shutil.copytree(os.path.join(source, 'checkpoints'),
                                   os.path.join(generator, 'checkpoints'))
  waits = _fake_waits(monkeypatch, lambda i: copy(i) if i == 0 else None)
  results = eval_job.run(c, str(tmp_path / 'eval'))
  assert waits == [POLL] and set(results) == {step}
  r = results_lib.read_results(str(tmp_path / 'eval'), step)
  assert r['num_samples'] == 16
  assert 0 <= r['metrics']['class_accuracy'] <= 1
