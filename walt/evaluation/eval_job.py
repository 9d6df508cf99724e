r"""The evaluation job (`config.job = 'eval'`): samples from a trained W.A.L.T
denoiser and scores them against real data.

    python -m walt.main --config=configs/eval/<task>.py --workdir=EVAL_DIR \
        --config.generator_workdir=DENOISER_DIR [--config.poll_seconds=600]

Tasks (`config.task`, see `walt/evaluation/tasks.py`):
- `ucf101`: class-conditional FVD and IS (I3D), `repeats` x `num_samples`.
- `k600_frame_prediction`: condition on `cond_frames`, predict the rest of an
  `eval_frames` clip, FVD against the real clips.
- `imagenet`: class-conditional FID and IS (InceptionV3) against reference
  statistics; samples saved as an ADM-style `.npz`.
- `sprites`: oracle class accuracy, frame-prediction PSNR/SSIM next to a
  copy-last-frame baseline (moving_sprites, nothing downloaded).

Each evaluated checkpoint step writes `EVAL_DIR/eval/<step>/results.json`
(`metrics`, `num_samples`, `protocol`). With `poll_seconds > 0` the job keeps
watching the denoiser workdir and evaluates each new checkpoint (it can run
beside training) until `stop_at_step` is evaluated.
"""

from __future__ import annotations

import time

from absl import logging
import jax
import numpy as np

from walt import checkpoint as ckpt_lib
from walt import config_lib
from walt import defaults
from walt import storage
from walt.diffusion import sampling
from walt.evaluation import resize
from walt.evaluation import results as results_lib

TASKS = defaults.EVAL_TASKS
# Kept for config files that call it from here.
default_config = defaults.evaluation


def check_config(config, mesh_shape) -> None:
  del mesh_shape
  if config.task not in TASKS:
    raise ValueError(f'task={config.task!r}: one of {TASKS}')
  if not config.generator_workdir:
    raise ValueError('set --config.generator_workdir=DENOISER_DIR (a trained '
                     'W.A.L.T workdir)')
  if config.num_samples <= 0 or config.repeats <= 0:
    raise ValueError('num_samples and repeats must be positive')
  if config.cond_frames and config.cond_frames >= config.eval_frames:
    raise ValueError(f'cond_frames={config.cond_frames} must be below '
                     f'eval_frames={config.eval_frames}')
  if config.cond_frames:
    config_lib.check_frames(config.cond_frames, 'cond_frames')
  check_sampling(config)


def check_sampling(config) -> None:
  """The sampler, feature and polling fields."""
  s = config.sampler
  if s.get('sampler', 'ddim') not in sampling.SAMPLERS:
    raise ValueError(f'sampler.sampler={s.sampler!r}: one of '
                     f'{sampling.SAMPLERS}')
  if s.steps < 1:
    raise ValueError(f'sampler.steps={s.steps} must be at least 1')
  if config.features.resize_method not in resize.METHODS:
    raise ValueError(f'features.resize_method='
                     f'{config.features.resize_method!r}: one of '
                     f'{resize.METHODS}')
  for field in ('poll_seconds', 'step', 'stop_at_step'):
    if config[field] < 0:
      raise ValueError(f'{field}={config[field]} must be >= 0 (0: off)')
  if config.eval_frames < 1:
    raise ValueError(f'eval_frames={config.eval_frames} must be positive')
  if s.get('reconstruction_weight', 0.0) < 0:
    raise ValueError(f'sampler.reconstruction_weight='
                     f'{s.reconstruction_weight} must be >= 0')


VALIDATORS = (check_config,)


def checkpoint_steps(generator_workdir: str) -> list[int]:
  directory, _ = ckpt_lib.split_path(generator_workdir)
  if not storage.isdir(directory):
    return []
  ckpt = ckpt_lib.Checkpointer(directory, async_save=False)
  try:
    return sorted(ckpt.all_steps())
  finally:
    ckpt.close()


def no_checkpoint_error(generator_workdir: str) -> FileNotFoundError:
  return FileNotFoundError(
      f'no checkpoint in {generator_workdir}: train a denoiser there first '
      f'(python -m walt.main --config=configs/walt/... '
      f'--workdir={generator_workdir}), or set --config.poll_seconds=N to '
      'wait for its checkpoints')


def evaluated_steps(workdir: str) -> set[int]:
  root = storage.join(workdir, 'eval')
  return {int(d) for d in storage.listdir(root)
          if d.isdigit() and storage.exists(storage.join(root, d,
                                                         'results.json'))}


def _agree(steps) -> list[int]:
  """Process 0's view of a list of steps, on every process (so all processes
  evaluate the same checkpoints in the same order)."""
  steps = sorted(steps)[-64:]
  if jax.process_count() == 1:
    return steps
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  arr = np.full(64, -1, np.int64)
  arr[:len(steps)] = steps
  arr = np.asarray(multihost_utils.broadcast_one_to_all(arr))
  return [int(v) for v in arr if v >= 0]


def steps_to_evaluate(config, workdir: str):
  """Yields checkpoint steps: the requested / latest one, then (polling) each
  new one, skipping steps that already have results."""
  while True:
    available = _agree(checkpoint_steps(config.generator_workdir))
    done = set(_agree(evaluated_steps(workdir)))
    if config.step:
      wanted = [config.step] if config.step in available else []
    else:
      wanted = [s for s in available if s not in done][-1:] if not \
          config.poll_seconds else [s for s in available if s not in done]
    for step in wanted:
      yield step
      done.add(step)
    finished = (config.step and config.step in done) or (
        config.stop_at_step and config.stop_at_step in done)
    if not config.poll_seconds or finished:
      if not available:
        raise no_checkpoint_error(config.generator_workdir)
      if config.step and config.step not in available:
        raise FileNotFoundError(f'no checkpoint at step {config.step} in '
                                f'{config.generator_workdir}: {available}')
      return
    logging.info('waiting %d s for new checkpoints in %s',
                 config.poll_seconds, config.generator_workdir)
    time.sleep(config.poll_seconds)


def run(config, workdir: str, mode: str = 'eval'):
  if mode not in ('eval', 'train'):
    raise ValueError(f'--mode={mode}: the eval job has mode eval only')
  from walt.evaluation import tasks  # pylint: disable=g-import-not-at-top
  results = {}
  evaluator = tasks.Evaluator(config)
  for step in steps_to_evaluate(config, workdir):
    started = time.time()
    metrics, num_samples, protocol = evaluator(step, workdir)
    protocol['seconds'] = round(time.time() - started, 1)
    path = results_lib.write_results(workdir, step, metrics, num_samples,
                                     protocol)
    logging.info('step %d: %s -> %s', step, metrics, path)
    results[step] = metrics
    if jax.process_index() == 0:
      print(f'eval step {step}: ' + ', '.join(
          f'{k} {v:.4g}' for k, v in metrics.items()
          if isinstance(v, (int, float, np.floating))), flush=True)
  return results
