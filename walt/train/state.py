"""Train state: params, optimizer state, EMA params and model extras, and
the optimizer + EMA update, guarded against numerical faults. Its sharded
initialisation is `walt.parallel.sharding.init_sharded`.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """Everything a training step reads and writes (one pytree, checkpointed).

  `extra` holds model-specific state (e.g. a discriminator and its optimizer).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  ema_params: Any
  extra: Any

  @classmethod
  def create(cls, params, tx: optax.GradientTransformation,
             ema: bool = True, extra: Any = None) -> 'TrainState':
    return cls(step=jnp.zeros((), jnp.int32), params=params,
               opt_state=tx.init(params),
               ema_params=(jax.tree.map(jnp.copy, params) if ema else None),
               extra={} if extra is None else extra)


def ema_decay(decay: float, step: jax.Array) -> jax.Array:
  """`decay`, warmed up as min(decay, (1 + step) / (10 + step)) so that the
  EMA of a short or young run is not dominated by its initialisation."""
  step = jnp.asarray(step, jnp.float32)
  return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema, new, decay):
  """`decay * ema + (1 - decay) * new`, leafwise."""
  return jax.tree.map(lambda e, p: e * decay + (1.0 - decay) * p, ema, new)


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation,
                    ema_decay_max: float, **changes) -> TrainState:
  """One optimizer update of `state.params` (+ EMA when the state keeps one,
  with `ema_decay`'s warm-up); `changes` replace other fields (e.g. extra)."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = state.ema_params
  if ema is not None:
    ema = ema_update(ema, params, ema_decay(ema_decay_max, state.step))
  return state.replace(step=state.step + 1, params=params,
                       opt_state=opt_state, ema_params=ema, **changes)


# Bits of the `nonfinite` metric: which quantity of a step was not finite.
NONFINITE_LOSS, NONFINITE_GRADS, NONFINITE_PARAMS = 1, 2, 4
NONFINITE_NAMES = {NONFINITE_LOSS: 'loss', NONFINITE_GRADS: 'gradients',
                   NONFINITE_PARAMS: 'updated params or optimizer state'}


def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guarded_apply_gradients(state: TrainState, grads, tx, ema_decay_max: float,
                            metrics: dict, **changes
                            ) -> tuple[TrainState, dict]:
  """`apply_gradients`, kept only if the step was finite.

  The check runs inside the step, on the step it happens: the loss
  (`metrics['loss']` and every other metric), the gradients, and the updated
  params (and `changes`, e.g. a discriminator's) must all be finite, else the
  step is skipped: `step` advances (the data and RNG move on) but params,
  optimizer state, EMA and `changes` stay as they were, so non-finite values
  never reach a checkpoint.

  Returns:
    (state, metrics + `nonfinite`: 0 for a kept step, else a bitmask of
    `NONFINITE_LOSS | NONFINITE_GRADS | NONFINITE_PARAMS`; the loop counts
    consecutive skipped steps against `config.max_bad_steps`).
  """
  new = apply_gradients(state, grads, tx, ema_decay_max, **changes)
  bad_loss = ~_all_finite(metrics)
  bad_grads = ~_all_finite(grads)
  # Non-finite gradients make non-finite params: name only the cause. The
  # optimizer state counts too: an overflowing second moment would freeze
  # params silently (their updates become 0).
  bad_params = ~_all_finite((new.params, new.opt_state, new.extra)
                            ) & ~bad_grads
  code = (bad_loss * NONFINITE_LOSS + bad_grads * NONFINITE_GRADS +
          bad_params * NONFINITE_PARAMS).astype(jnp.int32)
  keep = code == 0
  kept = jax.tree.map(lambda n, o: jnp.where(keep, n, o),
                      (new.params, new.opt_state, new.ema_params, new.extra),
                      (state.params, state.opt_state, state.ema_params,
                       state.extra))
  params, opt_state, ema, extra = kept
  state = new.replace(params=params, opt_state=opt_state, ema_params=ema,
                      extra=extra)
  return state, {**metrics, 'nonfinite': code}


def describe_nonfinite(code: int) -> str:
  """'loss and gradients' for the `nonfinite` bitmask of a skipped step."""
  names = [n for bit, n in NONFINITE_NAMES.items() if code & bit]
  return ' and '.join(names) or 'nothing'
