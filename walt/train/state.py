"""Train state and its sharded initialisation.

`init_sharded` is the one way every model gets its state onto the mesh:
`jax.eval_shape(init)` -> logical partition specs (from the
`nn.with_logical_partitioning` metadata of the model's params, which optax
states inherit) -> mesh shardings through the config's logical rules ->
`jax.jit(init, out_shardings=...)`, so no full copy of the state ever exists
on one device. The returned state holds plain arrays (boxes removed).
"""

from __future__ import annotations

from typing import Any, Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from walt.parallel import mesh as mesh_lib


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


def state_shardings(abstract_boxed_state, mesh: jax.sharding.Mesh,
                    rules: mesh_lib.LogicalRules):
  """Mesh shardings for every leaf of a (boxed) state's unboxed form."""
  specs = nn.get_partition_spec(abstract_boxed_state)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def init_sharded(init_fn: Callable[..., Any], mesh: jax.sharding.Mesh,
                 rules: mesh_lib.LogicalRules, *args):
  """Runs `init_fn(*args)` (returning a boxed state) sharded on `mesh`.

  Returns:
    (state with plain arrays, its shardings, its abstract shapes with
    shardings: the restore target for checkpoints).
  """
  abstract = jax.eval_shape(init_fn, *args)
  shardings = state_shardings(abstract, mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    state = jax.jit(lambda *a: nn.unbox(init_fn(*a)),
                    out_shardings=shardings)(*args)
  target = abstract_target(abstract, shardings)
  return state, shardings, target


def strip_boxes(tree):
  """Removes Linen partitioning boxes without adding sharding constraints."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree.map(lambda x: x.unbox(apply_constraint=False)
                      if is_box(x) else x, tree, is_leaf=is_box)


def abstract_target(abstract_boxed_state, shardings):
  """`jax.ShapeDtypeStruct`s with shardings: what a restore fills in."""
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      strip_boxes(abstract_boxed_state), shardings)
