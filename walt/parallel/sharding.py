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

import math
from typing import Any, Callable

from absl import logging
import flax.linen as nn
import jax
from jax.sharding import NamedSharding, PartitionSpec
import numpy as np

from walt.parallel import mesh as mesh_lib

# A parameter with at least this many elements must not end up replicated
# on a mesh that shards parameters (fsdp or tensor > 1): see
# `check_param_sharding`.
REPLICATED_PARAM_LIMIT = 1 << 20


def tree_shardings(abstract_boxed_tree, mesh: jax.sharding.Mesh,
                    rules: mesh_lib.LogicalRules):
  """Mesh shardings for every leaf of a (boxed) tree's unboxed form.

  A dimension that its mesh axes do not divide (e.g. a conv kernel's 3 RGB
  input channels over fsdp 8) stays whole on that dimension: jit cannot
  shard it unevenly, and such tensors are small (`check_param_sharding`
  catches the ones that are not).
  """
  specs = nn.get_partition_spec(abstract_boxed_tree)
  shardings = nn.logical_to_mesh_sharding(specs, mesh, rules)
  shapes = strip_boxes(abstract_boxed_tree)
  return jax.tree.map(lambda a, s: _divisible(a.shape, s), shapes, shardings)


def _axes(entry) -> tuple[str, ...]:
  if entry is None:
    return ()
  return (entry,) if isinstance(entry, str) else tuple(entry)


def _divisible(shape, sharding):
  if not isinstance(sharding, NamedSharding):
    return sharding
  sizes = dict(sharding.mesh.shape)
  spec, changed = [], False
  for dim, entry in zip(shape, tuple(sharding.spec) + (None,) * len(shape)):
    if dim % math.prod(sizes[a] for a in _axes(entry)):
      logging.info('dimension %d of a %s array is not divisible by mesh '
                   'axes %s: kept whole', dim, shape, entry)
      entry, changed = None, True
    spec.append(entry)
  if not changed:
    return sharding
  return NamedSharding(sharding.mesh, PartitionSpec(*spec))


def shard_bytes(abstract_tree, shardings=None) -> int:
  """Bytes one device holds of a tree with these shardings (None: the whole
  tree); no devices needed (works on an `AbstractMesh`)."""
  leaves = jax.tree.leaves(abstract_tree)
  specs = [None] * len(leaves) if shardings is None else jax.tree.leaves(
      shardings)
  total = 0
  for a, s in zip(leaves, specs, strict=True):
    shape = a.shape if s is None else s.shard_shape(a.shape)
    total += math.prod(shape) * np.dtype(a.dtype).itemsize
  return int(total)


def check_param_sharding(abstract_params, shardings, mesh,
                         limit: int = REPLICATED_PARAM_LIMIT) -> None:
  """Raises if a parameter of >= `limit` elements is replicated on every
  device although the mesh shards parameters (fsdp or tensor > 1): such a
  tensor costs its full size on each device, which is what fsdp is there to
  avoid. The fix is a logical axis rule (`config.logical_rules`)."""
  if limit <= 0 or mesh.shape.get('fsdp', 1) * mesh.shape.get(
      'tensor', 1) == 1:
    return
  flat = jax.tree_util.tree_leaves_with_path(abstract_params)
  found = []
  for (path, a), s in zip(flat, jax.tree.leaves(shardings)):
    if math.prod(a.shape) >= limit and s.is_fully_replicated:
      found.append(f'{jax.tree_util.keystr(path)} {tuple(a.shape)}')
  if found:
    raise ValueError(
        f'{len(found)} parameter(s) of >= {limit:,} elements would be '
        f'replicated on every device of mesh {dict(mesh.shape)}: '
        + '; '.join(found) + '. Map one of their logical axes to fsdp or '
        'tensor (config.logical_rules), or raise '
        'config.replicated_param_limit (0 turns the check off).')


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
