"""Gradient accumulation: one optimizer step over `k` microbatches.

`gradients(fn, batch, k)` runs `fn` on k equal slices of the batch in a
`lax.scan` (activations of batch/k examples live at a time) and returns the
mean of their gradients and metrics: for losses that are means over
examples, the gradient of the whole batch. Slice i holds rows i, i + k,
i + 2k, ... so that each device's contiguous block of a batch-sharded array
holds an equal part of every slice (no data moves between devices).

Randomness that must not depend on k is drawn per example from its row in
the whole batch (`example_ids`, e.g. `diffusion_loss`'s noise and t), so a
step with k microbatches equals the step with one batch.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

# fn(microbatch, example_ids [b/k]) -> (grads, metrics, outputs): grads and
# metrics are averaged over slices, outputs (leading axis b/k) are put back
# in batch order.
GradFn = Callable[[dict, jax.Array], tuple[Any, dict, Any]]


def gradients(fn: GradFn, batch: dict, microbatches: int = 1
              ) -> tuple[Any, dict, Any]:
  """(mean grads, mean metrics, outputs `[b, ...]`) of `fn` over the batch
  (a dict of `[b, ...]` arrays) in `microbatches` slices."""
  b = _batch_size(batch)
  k = microbatches
  if k == 1:
    return fn(batch, jnp.arange(b, dtype=jnp.int32))
  if b % k:
    raise ValueError(f'batch of {b} does not split into {k} microbatches')

  def split(x):  # [b, ...] -> [k, b/k, ...], slice i = rows i::k
    return jnp.swapaxes(x.reshape(b // k, k, *x.shape[1:]), 0, 1)

  def merge(x):  # inverse of split
    return jnp.swapaxes(x, 0, 1).reshape(b, *x.shape[2:])

  xs = (jax.tree.map(split, batch), split(jnp.arange(b, dtype=jnp.int32)))

  def body(sums, x):
    mb, mb_ids = x
    grads, metrics, outputs = fn(jax.tree.map(_batch_constraint, mb), mb_ids)
    return jax.tree.map(jnp.add, sums, (grads, metrics)), outputs

  grads, metrics, _ = jax.eval_shape(fn, *jax.tree.map(lambda x: x[0], xs))
  zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), (grads, metrics))
  sums, outputs = jax.lax.scan(body, zeros, xs)
  grads, metrics = jax.tree.map(lambda s: s / k, sums)
  return grads, metrics, jax.tree.map(merge, outputs)


def _batch_size(batch: dict) -> int:
  sizes = {x.shape[0] for x in jax.tree.leaves(batch)}
  if len(sizes) != 1:
    raise ValueError(f'batch arrays disagree on the batch size: {sizes}')
  return sizes.pop()


def _batch_constraint(x):
  """Keeps a microbatch sharded over the batch axes (no-op without rules)."""
  return nn.with_logical_constraint(
      x, ('act_batch',) + (None,) * (x.ndim - 1))
