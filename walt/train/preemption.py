"""Preemption notices and numerical faults, as the training loop sees them.

`PreemptionWatcher.reached(step)` is True once the job has been asked to stop
(SIGTERM, which Cloud TPU, GKE and SLURM send before evicting a job): the loop
then saves at that step and returns, so the job exits 0 and the same command
continues from there.

- One process: a SIGTERM handler sets a flag (the previous handler comes back
  on `close`).
- Several processes (`jax.distributed`): JAX's preemption service receives the
  notice on any host and agrees on one step for every host
  (`multihost_utils.reached_preemption_sync_point`), so all hosts save the same
  step collectively; no Python handler is installed, it would hide the notice
  from that service.

`BadStepCounter` counts consecutive steps that the step function skipped
(`state.guarded_apply_gradients`: non-finite loss, gradients or params) and
stops the job after `max_bad_steps` of them in a row.
"""

from __future__ import annotations

import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils

from walt.train import state as state_lib


class PreemptionWatcher:
  """Whether the job has been told to stop; see the module docstring."""

  def __init__(self):
    self._signalled = False
    self._installed = False
    self._previous = None
    self._multi_process = jax.process_count() > 1
    if (not self._multi_process and
        threading.current_thread() is threading.main_thread()):
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)
      self._installed = True

  def _on_sigterm(self, signum, frame) -> None:
    del signum, frame
    if not self._signalled:
      logging.warning('SIGTERM: saving at the end of this step, then exiting')
    self._signalled = True

  def reached(self, step: int) -> bool:
    """True when the job should save at `step` and stop (call every step)."""
    if self._multi_process:
      return bool(multihost_utils.reached_preemption_sync_point(step))
    return self._signalled

  def close(self) -> None:
    if self._installed:
      # None: a handler set outside Python; the default is the closest.
      signal.signal(signal.SIGTERM, self._previous if self._previous
                    is not None else signal.SIG_DFL)
      self._installed = False


class BadStepCounter:
  """Consecutive skipped (non-finite) steps against `max_bad_steps`."""

  def __init__(self, max_bad_steps: int):
    if max_bad_steps < 1:
      raise ValueError(f'max_bad_steps={max_bad_steps} must be >= 1')
    self.max_bad_steps = max_bad_steps
    self.consecutive = 0
    self.total = 0
    self._first = None

  def update(self, step: int, code: int) -> None:
    """`code`: the step's `nonfinite` metric (0: the update was kept).

    Raises:
      FloatingPointError: the `max_bad_steps`-th skipped step in a row, naming
        the steps and the non-finite quantities.
    """
    if not code:
      self.consecutive, self._first = 0, None
      return
    self.total += 1
    self.consecutive += 1
    if self._first is None:
      self._first = step
    what = state_lib.describe_nonfinite(code)
    logging.warning('step %d skipped: non-finite %s (%d in a row, stop at %d)',
                    step, what, self.consecutive, self.max_bad_steps)
    if self.consecutive >= self.max_bad_steps:
      raise FloatingPointError(
          f'non-finite {what} at step {step}: {self.consecutive} consecutive '
          f'steps ({self._first}..{step}) were skipped (max_bad_steps='
          f'{self.max_bad_steps}). Params were never updated with non-finite '
          'values, so the checkpoints hold finite state; lower the learning '
          'rate, add grad_clip, or check the data, then rerun to resume.')
