"""Train state: params, optimizer state, EMA params and model extras, and
the optimizer + EMA update. Its sharded initialisation is
`walt.parallel.sharding.init_sharded`.
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
