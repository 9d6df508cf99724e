"""The one training loop every model uses.

A model plugs in a *task* object, built on the job's mesh (`task.mesh`,
`task.rules`: the loop uses them, it builds none of its own):

    task.init_state(rng) -> boxed TrainState            (pure; traced once)
    task.train_step(state, batch) -> (state, metrics)   (pure; jitted, donated;
                                     updates through `state.guarded_apply_
                                     gradients`, whose `nonfinite` metric the
                                     loop counts)
    task.evaluate(state, step) -> dict | None           (host; eval hook)
    task.summaries(state, batch, step, logger)          (host; videos)
    task.finalize(state, checkpointer)                  (host; after training)
    task.prepare_batch(batch) -> batch                  (optional; host, e.g.
                                                         frozen-encoder pass)
    task.batch_shapes(batch_size) -> dict of ShapeDtypeStruct
                                     (what train_step reads; offline
                                     compilation, `abstract_step`)

`run` is every trainer's entry point: `train`, or restore the latest
checkpoint and run one of the task's other modes. The loop owns everything
else: data iterator, sharded init, resume order
(workdir -> config.resume -> config.init_from -> scratch), the jitted step,
metrics (`metrics.jsonl`, TensorBoard, progress with ETA), checkpoints
(state + data position + config; a corrupt latest one falls back to the
previous), preemption (SIGTERM: save and return), consecutive skipped
non-finite steps (`max_bad_steps`), and eval/summary cadence.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Protocol

from absl import logging
import flax.linen as nn
import jax
import optax

from walt import checkpoint as ckpt_lib
from walt import storage
from walt.data import pipeline
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib
from walt.train import metrics as metrics_lib
from walt.train import preemption
from walt.train import state as state_lib


class Task(Protocol):
  mesh: jax.sharding.Mesh
  rules: mesh_lib.LogicalRules
  def init_state(self, rng: jax.Array) -> state_lib.TrainState: ...
  def train_step(self, state, batch) -> tuple[Any, dict]: ...
  def evaluate(self, state, step: int) -> dict | None: ...
  def summaries(self, state, batch, step: int, logger) -> None: ...
  def finalize(self, state, checkpointer) -> None: ...


def make_optimizer(opt, total_steps: int) -> optax.GradientTransformation:
  """Adam(W) with linear warm-up then cosine decay, and clipping.

  Non-finite steps are not the optimizer's business: the step function keeps
  or skips the whole update (`state.guarded_apply_gradients`).

  opt: ConfigDict with lr, b1, b2, weight_decay, warmup_steps, grad_clip,
    min_lr_ratio.
  """
  warmup = max(opt.warmup_steps, 1)
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, opt.lr, warmup, max(total_steps, warmup + 1),
      end_value=opt.lr * opt.min_lr_ratio)
  parts = []
  if opt.grad_clip:
    parts.append(optax.clip_by_global_norm(opt.grad_clip))
  if opt.weight_decay:
    parts.append(optax.adamw(schedule, b1=opt.b1, b2=opt.b2,
                             weight_decay=opt.weight_decay))
  else:
    parts.append(optax.adam(schedule, b1=opt.b1, b2=opt.b2))
  return optax.chain(*parts)


def train(task: Task, config, workdir: str) -> Any:
  """Trains `task` to `config.total_steps`; returns the final state."""
  mesh, rules = task.mesh, task.rules
  # A task may read something other than `config.data` (e.g. cached latents).
  spec = (task.data_spec() if hasattr(task, 'data_spec')
          else pipeline.DataSpec.from_config(config.data))
  data = pipeline.make_iterator(spec, mesh, global_batch_size=config.batch_size,
                                seed=config.seed, rules=rules)
  rng = jax.random.key(config.seed)

  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    shardings, target = _abstract_state(task, rng, mesh, rules)
    check_param_sharding(config, target, shardings, mesh)
    ckpt = ckpt_lib.Checkpointer(storage.join(workdir, 'checkpoints'),
                                 keep=config.keep_checkpoints)
    state, data_state, origin = ckpt_lib.resume_or_init(
        ckpt, config,
        lambda: sharding_lib.init_sharded(task.init_state, mesh, rules, rng)[0],
        target)
    if data_state:
      data.set_state(data_state)
    start = int(jax.device_get(state.step))
    logging.info('Train state from %s; step %d of %d', origin, start,
                 config.total_steps)
    step_fn = _jit_step(task, shardings)

    logger = metrics_lib.MetricLogger(workdir, config.total_steps, start)
    eval_every = config.eval_every
    summary_every = config.summary_every
    bad_steps = preemption.BadStepCounter(config.max_bad_steps)
    watcher = preemption.PreemptionWatcher()
    step = start
    # `stop_at_step` ends this run early (a time slice of a longer schedule);
    # the next run with the same workdir resumes where it stopped.
    stop = min(config.stop_at_step or config.total_steps,
               config.total_steps)
    prepare = getattr(task, 'prepare_batch', None) or (lambda b: b)
    pending = None  # (step, its `nonfinite` flag), read one step late
    preempted = False
    try:
      for step in range(start + 1, stop + 1):
        batch = prepare(next(data))
        state, metrics = step_fn(state, batch)
        # The previous step's flag is read while this one runs, so the check
        # costs no pipeline stall; the skip itself happened inside the step.
        if pending is not None:
          bad_steps.update(pending[0], int(pending[1]))
        pending = (step, metrics['nonfinite'])
        last = step == config.total_steps
        preempted = watcher.reached(step)
        if step % config.log_every == 0 or last or step == start + 1:
          metrics = jax.device_get(metrics)
          metrics['skipped_steps'] = bad_steps.total + int(
              metrics['nonfinite'] != 0)
          skipped = getattr(data, 'skipped_records', None)
          if skipped is not None:
            metrics['skipped_records'] = skipped
          logger.log(step, metrics)
        if preempted:
          # Save first: the grace period before SIGKILL is short, so no
          # summaries or evaluation on this step.
          bad_steps.update(*map(int, pending))
          pending = None
          ckpt.save(step, state, data.get_state(), config, force=True)
          ckpt.wait()
          logging.warning('preempted: saved step %d of %d; rerun the same '
                          'command to continue', step, config.total_steps)
          break
        if summary_every and (step % summary_every == 0 or last):
          task.summaries(state, batch, step, logger)
        if step % config.checkpoint_every == 0 or last or step == stop:
          bad_steps.update(*map(int, pending))
          pending = None
          ckpt.save(step, state, data.get_state(), config,
                    force=last or step == stop)
        if eval_every and (step % eval_every == 0 or last):
          _evaluate(task, state, step, logger)
      if pending is not None:
        bad_steps.update(*map(int, pending))
    finally:
      # The last async save finishes before SIGTERM's default comes back.
      ckpt.wait()
      watcher.close()
    if step == config.total_steps and not preempted:
      if start >= config.total_steps and eval_every:
        _evaluate(task, state, step, logger)
      task.finalize(state, ckpt)
    ckpt.close()
    logger.close()
  return state


def eval_params(state):
  """What evaluation and inference use: the EMA params when the run keeps
  them, else the raw params."""
  return state.ema_params if state.ema_params is not None else state.params


def run(task: Task, config, workdir: str, mode: str,
        modes: dict[str, Callable[[Any, int], Any]] | None = None):
  """`mode='train'`: `train(task, ...)`. Otherwise restores the latest
  checkpoint of `workdir` and runs `modes[mode](state, step)` under the
  task's mesh, printing a dict result as JSON; returns the state."""
  if mode == 'train':
    return train(task, config, workdir)
  modes = modes or {}
  if mode not in modes:
    raise ValueError(f'unknown mode {mode!r}: '
                     f'{", ".join(["train", *modes])}')
  state = restore_latest(task, config, workdir, task.mesh, task.rules)
  step = int(jax.device_get(state.step))
  with jax.set_mesh(task.mesh), nn.logical_axis_rules(task.rules):
    result = modes[mode](state, step)
  if isinstance(result, dict):
    print(json.dumps(result))
  return state


def _abstract_state(task: Task, rng, mesh, rules):
  """(shardings, restore target) of the task's state, without allocating."""
  abstract = jax.eval_shape(task.init_state, rng)
  shardings = sharding_lib.tree_shardings(abstract, mesh, rules)
  return shardings, sharding_lib.abstract_target(abstract, shardings)


def abstract_step(task: Task, config, batch_size: int | None = None,
                  rng: jax.Array | None = None):
  """The job's jitted train step and its abstract arguments (shapes and
  shardings, nothing allocated): what `walt.tools.aot` lowers for a TPU
  slice. Call under `jax.set_mesh(task.mesh)` and the task's rules (with
  `rng` made outside it when the mesh's devices are abstract).

  Returns:
    (jitted step, abstract state, abstract batch).
  """
  batch_size = batch_size or config.batch_size
  if rng is None:
    rng = jax.random.key(config.seed)
  shardings, target = _abstract_state(task, rng, task.mesh, task.rules)
  batch_sharding = mesh_lib.batch_sharding(task.mesh, task.rules)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sharding)
           for k, v in task.batch_shapes(batch_size).items()}
  return _jit_step(task, shardings), target, batch


def _jit_step(task: Task, shardings):
  """The step as every job runs it: state donated, output state sharded
  like the input."""
  return jax.jit(task.train_step, out_shardings=(shardings, None),
                 donate_argnums=(0,))


def check_param_sharding(config, target, shardings, mesh) -> None:
  """`sharding.check_param_sharding` on the model's params and extras (a
  discriminator), with `config.replicated_param_limit`."""
  limit = config.get('replicated_param_limit',
                     sharding_lib.REPLICATED_PARAM_LIMIT)
  sharding_lib.check_param_sharding((target.params, target.extra),
                                    (shardings.params, shardings.extra),
                                    mesh, limit)


def restore_latest(task: Task, config, workdir: str, mesh, rules):
  """The latest checkpointed state of `workdir`, sharded on `mesh`."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    _, target = _abstract_state(task, jax.random.key(config.seed), mesh,
                                rules)
  return ckpt_lib.restore_from(workdir, target)[0]


def _evaluate(task: Task, state, step: int, logger) -> None:
  started = time.time()
  results = task.evaluate(state, step)
  if results:
    logger.log(step, results, prefix='eval/')
    logging.info('eval at step %d (%.0f s): %s', step, time.time() - started,
                 results)
