"""One Orbax `CheckpointManager` saving train state, data-iterator state and
config together (async, keep-N), and the resume order every job follows:

    WORKDIR/checkpoints (latest step that restores)  ->  config.resume  ->  config.init_from
    ->  scratch

`resume` continues another run (state, data position and step); `init_from`
takes only params (and EMA params) from a checkpoint and starts at step 0.

Inference reads only what it needs: `restore_params` restores the (EMA)
params subtree of a step's train state (an Orbax partial restore), so no
optimizer, discriminator or trainer is built to make a restore target.
"""

from __future__ import annotations

import json
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from walt import storage

ITEMS = ('state', 'data', 'config')


class Checkpointer:
  """Saves and restores `(state, data iterator state, config)` per step."""

  def __init__(self, directory: str, keep: int = 3, async_save: bool = True):
    self.directory = storage.resolve(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=ITEMS,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True,
            enable_async_checkpointing=async_save))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state, data_state: dict[str, Any] | None,
           config: ml_collections.ConfigDict, force: bool = False) -> bool:
    return self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state or {}),
        config=ocp.args.JsonSave(json.loads(config.to_json_best_effort()))),
                              force=force)

  def restore(self, step: int | None, target) -> tuple[Any, dict, dict]:
    """(state placed like `target`, data state, config dict) of `step`
    (default: the latest readable one, see `restore_latest_good`)."""
    if step is None:
      return self.restore_latest_good(target)[:3]
    out = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target),
        data=ocp.args.JsonRestore(), config=ocp.args.JsonRestore()))
    return out['state'], dict(out['data'] or {}), dict(out['config'] or {})

  def restore_latest_good(self, target, quarantine: bool = False
                          ) -> tuple[Any, dict, dict, int]:
    """The newest step that restores, newest first.

    A step that fails (truncated or half-written files) is reported and the
    previous one tried. Only once an older step has restored with the same
    `target` are the newer failures known to be broken files rather than a
    target that does not fit (a changed config): then, with `quarantine`,
    they are moved (never deleted) to `corrupt_checkpoints/STEP` beside this
    directory, so new saves neither collide with nor prune them.

    Returns:
      (state, data state, config dict, step).

    Raises:
      FileNotFoundError: no checkpoint; RuntimeError: none restores (nothing
        is moved then), listing each step's error.
    """
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    failed = []
    for step in steps:
      state, error = self._try_restore(step, target)
      if error is None and jax.process_count() > 1:
        # Every host must resume from the same step: a step is good only if
        # it restored on all of them.
        from jax.experimental import multihost_utils
        everywhere = multihost_utils.process_allgather(np.array(
            error is None))
        if not np.all(everywhere):
          error = RuntimeError('did not restore on every process')
      if error is not None:
        logging.error('checkpoint %s/%d does not restore (%s: %s); trying '
                      'the previous one', self.directory, step,
                      type(error).__name__, error)
        failed.append((step, error))
        continue
      if failed and quarantine:
        self._quarantine([s for s, _ in failed])
      if failed:
        logging.warning('restored step %d instead of %s', step,
                        [s for s, _ in failed])
      return (*state, step)
    raise RuntimeError(
        f'no checkpoint in {self.directory} restores; nothing was moved. '
        'Errors, newest first:\n' + '\n'.join(
            f'  step {s}: {type(e).__name__}: {e}' for s, e in failed))

  def _try_restore(self, step: int, target, attempts: int = 2):
    """((state, data, config), None) or (None, the last error); a second
    attempt so that a passing storage error does not condemn a step."""
    error = None
    for _ in range(attempts):
      try:
        return self.restore(step, target), None
      except Exception as e:  # pylint: disable=broad-except
        error = e
    return None, error

  def _quarantine(self, steps: list[int]) -> None:
    if jax.process_index() == 0:
      aside = storage.join(self.directory.rsplit('/', 1)[0],
                           'corrupt_checkpoints')
      for step in steps:
        target = storage.join(aside, str(step))
        try:
          storage.makedirs(aside)
          if storage.exists(target):
            target = storage.join(aside,
                                  f'{step}.{len(storage.listdir(aside))}')
          storage.move(storage.join(self.directory, str(step)), target)
          logging.error('moved unreadable checkpoint step %d to %s', step,
                        target)
        except OSError as e:
          # Training can go on from the good step; the broken one stays.
          logging.error('could not move unreadable checkpoint step %d to '
                        '%s: %s', step, target, e)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices('walt_checkpoint_quarantine')
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def split_path(path: str) -> tuple[str, int | None]:
  """`DIR` or `DIR/checkpoints` or `DIR/checkpoints/STEP` -> (manager dir,
  step or None for the latest)."""
  path = storage.resolve(path)
  parent, base = path.rsplit('/', 1) if '/' in path else ('', path)
  if base.isdigit():
    return parent, int(base)
  if storage.isdir(storage.join(path, 'checkpoints')):
    return storage.join(path, 'checkpoints'), None
  return path, None


def restore_from(path: str, target_state) -> tuple[Any, dict, dict]:
  """(state, data state, config) of the checkpoint at `path` (a workdir, its
  `checkpoints` dir, or one step's dir), placed like `target_state`."""
  directory, step = split_path(path)
  ckpt = Checkpointer(directory, async_save=False)
  try:
    return ckpt.restore(step, target_state)
  finally:
    ckpt.close()


def restore_params(path: str, abstract_params, use_ema: bool = True):
  """The params (EMA by default, raw if the run kept no EMA or `use_ema` is
  False) of the checkpoint at `path` (see `split_path`; default: latest),
  placed like `abstract_params` (`jax.ShapeDtypeStruct`s with shardings).

  Returns:
    (params, step).
  """
  directory, step = split_path(path)
  if not storage.isdir(directory):
    raise FileNotFoundError(f'no checkpoint directory {directory}')
  if step is None:
    ckpt = Checkpointer(directory, async_save=False)
    try:
      step = ckpt.latest_step()
    finally:
      ckpt.close()
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
  state_dir = storage.join(directory, str(step), 'state')
  handler = ocp.PyTreeCheckpointer()
  saved = handler.metadata(state_dir)
  saved = getattr(saved, 'item_metadata', saved)
  saved = getattr(saved, 'tree', saved)
  if saved is None or 'params' not in saved:
    raise ValueError(f'{state_dir} holds no train state params')
  key = 'ema_params' if use_ema and saved.get('ema_params') else 'params'
  target = {key: abstract_params}
  restore_args = jax.tree.map(
      lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, dtype=a.dtype),
      target)
  out = handler.restore(state_dir, args=ocp.args.PyTreeRestore(
      target, restore_args=restore_args, partial_restore=True))
  return out[key], step


def read_config(path: str) -> ml_collections.ConfigDict:
  """The config saved with the checkpoint at `path` (see `split_path`)."""
  directory, step = split_path(path)
  ckpt = Checkpointer(directory, async_save=False)
  try:
    step = ckpt.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    out = ckpt._manager.restore(step, args=ocp.args.Composite(  # pylint: disable=protected-access
        config=ocp.args.JsonRestore()))
  finally:
    ckpt.close()
  return ml_collections.ConfigDict(dict(out['config']))


def resume_or_init(ckpt: Checkpointer, config, init, target):
  """Follows the resume order. `init()` -> fresh state (scratch).

  Returns:
    (state, data iterator state or None, where it came from).
  """
  if ckpt.latest_step() is not None:
    state, data, _, step = ckpt.restore_latest_good(target, quarantine=True)
    return state, data, f'workdir step {step}'
  resume = config.get('resume')
  if resume:
    state, data, _ = restore_from(resume, target)
    return state, data, f'resume {resume}'
  state = init()
  init_from = config.get('init_from')
  if init_from:
    source, _, _ = restore_from(init_from, target)
    state = state.replace(params=source.params, ema_params=source.ema_params)
    logging.info('Initialised params from %s', init_from)
    return state, None, f'init_from {init_from}'
  return state, None, 'scratch'
