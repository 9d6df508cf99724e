"""Logical partitioning -> mesh shardings, and sharded initialisation.

`init_sharded` is the one way every model gets its state (or params) onto
the mesh: `jax.eval_shape(init)` -> logical partition specs (from the
`nn.with_logical_partitioning` metadata of the model's params, which optax
states inherit) -> mesh shardings through the config's logical rules ->
`jax.jit(init, out_shardings=...)`, so no full copy ever exists on one
device. `abstract_target` gives the same layout without computing anything
(what a checkpoint restore fills in).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax

from walt.parallel import mesh as mesh_lib


def tree_shardings(abstract_boxed_tree, mesh: jax.sharding.Mesh,
                    rules: mesh_lib.LogicalRules):
  """Mesh shardings for every leaf of a (boxed) tree's unboxed form."""
  specs = nn.get_partition_spec(abstract_boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def init_sharded(init_fn: Callable[..., Any], mesh: jax.sharding.Mesh,
                 rules: mesh_lib.LogicalRules, *args):
  """Runs `init_fn(*args)` (returning a boxed state) sharded on `mesh`.

  Returns:
    (state with plain arrays, its shardings, its abstract shapes with
    shardings: the restore target for checkpoints).
  """
  abstract = jax.eval_shape(init_fn, *args)
  shardings = tree_shardings(abstract, mesh, rules)
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


def abstract_target(abstract_boxed_tree, shardings=None, mesh=None,
                    rules: mesh_lib.LogicalRules = mesh_lib.DEFAULT_RULES):
  """`jax.ShapeDtypeStruct`s with shardings (given, or from `mesh` and
  `rules`): what a restore fills in."""
  if shardings is None:
    shardings = tree_shardings(abstract_boxed_tree, mesh, rules)
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      strip_boxes(abstract_boxed_tree), shardings)
