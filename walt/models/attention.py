"""Non-overlapping window self-attention over latent video tokens.

Tokens `[b, t, h, w, d]` are cut into windows of `(wt, wh, ww)` tokens with
reshapes and transposes only (no gathers), attended within each window, and
put back. A spatial window is `(1, wh, ww)`; a spatiotemporal one `(wt, wh,
ww)`. When the window covers the whole grid the layer is plain full attention.

Image samples (a stack of independent images shaped like a video, `is_image`)
get an identity mask across frames, so different images never exchange
information in spatiotemporal windows.

`model.attention` picks the kernel (`ATTENTION_KERNELS`): XLA's matmuls and
softmax, cuDNN flash attention, or the Pallas TPU flash-attention kernel.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np

Window = tuple[int, int, int]


def partitioned(init, axes: Sequence[str | None]):
  return nn.with_logical_partitioning(init, tuple(axes))


def resolve_window(window: Sequence[int], grid: Sequence[int]) -> Window:
  """A configured window (0 = the whole axis) clipped to the token grid
  `(t, h, w)`; the result must divide the grid."""
  out = tuple(g if w in (0, None) else min(w, g) for w, g in zip(window, grid))
  for w, g, name in zip(out, grid, 'thw'):
    if g % w:
      raise ValueError(f'window {tuple(window)} does not divide the token grid '
                       f'{tuple(grid)} along {name}')
  return out  # type: ignore[return-value]


def to_windows(x: jax.Array, window: Window) -> jax.Array:
  """`[b, t, h, w, d]` -> `[b, nt, nh, nw, wt*wh*ww, d]`."""
  b, t, h, w, d = x.shape
  wt, wh, ww = window
  x = x.reshape(b, t // wt, wt, h // wh, wh, w // ww, ww, d)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, t // wt, h // wh, w // ww, wt * wh * ww, d)


def from_windows(x: jax.Array, window: Window,
                 grid: Sequence[int]) -> jax.Array:
  """Inverse of `to_windows`: `[b, nt, nh, nw, L, d]` -> `[b, t, h, w, d]`."""
  b, nt, nh, nw, _, d = x.shape
  wt, wh, ww = window
  x = x.reshape(b, nt, nh, nw, wt, wh, ww, d)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, *grid, d)


def relative_position_index(window: Window, table_window: Window
                            ) -> np.ndarray:
  """`[L, L]` index into a bias table of `prod(2 * table_window - 1)` entries
  for the token pairs of a (possibly smaller) `window`."""
  coords = np.stack(np.meshgrid(*[np.arange(n) for n in window],
                                indexing='ij'), -1).reshape(-1, 3)
  rel = coords[:, None, :] - coords[None, :, :] + (np.asarray(table_window)
                                                   - 1)
  sizes = 2 * np.asarray(table_window) - 1
  return (rel[..., 0] * sizes[1] + rel[..., 1]) * sizes[2] + rel[..., 2]


# `model.attention`: how attention within a window is computed. 'xla': two
# batched matmuls and a softmax that XLA fuses (any backend); 'cudnn':
# cuDNN's fused flash attention (NVIDIA GPUs, bf16/fp16); 'pallas': the
# Pallas flash-attention kernel for TPUs (bias and masks go in as its `ab`
# input). All three compute the same function.
ATTENTION_KERNELS = ('xla', 'cudnn', 'pallas')


def attend(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array,
           mask: jax.Array | None, kernel: str = 'xla') -> jax.Array:
  """Softmax attention within windows.

  q `[b, n, Lq, heads, d]`, k, v `[b, n, Lk, heads, d]` (n windows; keys
  may add context tokens to a window's own); bias `[heads, Lq, Lk]`, added
  to the logits; mask bool `[b|1, Lq, Lk]` (True = may attend; the same in
  every window and head) or None -> `[b, n, Lq, heads, d]`.
  """
  if kernel == 'xla':
    return _attend_xla(q, k, v, bias, mask)
  if kernel == 'cudnn':
    return dot_product_attention(q, k, v, bias, mask, 'cudnn')
  if kernel == 'pallas':
    return _per_shard(_attend_pallas_tpu, q, k, v, bias, mask)
  raise ValueError(f'model.attention={kernel!r}: one of {ATTENTION_KERNELS}')


def _attend_xla(q, k, v, bias, mask):
  """Heads go next to the batch axes before the two matmuls so that each is
  one batched GEMM on contiguous `[L, d]` blocks; XLA's CPU path for
  `jax.nn.dot_product_attention` transposes inside the dot instead and
  measured slower on the train step (walt.benchmark --suite=peer)."""
  scale = q.shape[-1] ** -0.5
  heads_first = lambda a: jnp.swapaxes(a, 2, 3)  # [b, n, heads, L, d]
  q, k, v = heads_first(q * scale), heads_first(k), heads_first(v)
  logits = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) + bias
  if mask is not None:
    # [b, 1, 1, Lq, Lk]: broadcast over windows and heads inside the
    # softmax fusion, never materialised per window.
    logits = jnp.where(mask[:, None, None], logits,
                       jnp.finfo(logits.dtype).min)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return heads_first(jnp.matmul(weights.astype(v.dtype), v))


def dot_product_attention(q, k, v, bias, mask, implementation):
  """`attend` through `jax.nn.dot_product_attention` (`implementation`:
  'cudnn', or None for its XLA reference, which the tests compare)."""
  b, n, lq, heads, d = q.shape
  lk = k.shape[2]
  flat = lambda a: a.reshape(b * n, a.shape[2], heads, d)
  if mask is not None:
    mask = jnp.broadcast_to(mask[:, None, None], (b, n, 1, lq, lk))
    mask = mask.reshape(b * n, 1, lq, lk)
  out = jax.nn.dot_product_attention(
      flat(q), flat(k), flat(v), bias=bias[None].astype(q.dtype), mask=mask,
      scale=d ** -0.5, implementation=implementation)
  return out.reshape(b, n, lq, heads, d)


def _mesh_axes(logical: str, size: int, mesh) -> str | tuple[str, ...] | None:
  """The mesh axes the logical rules map `logical` to, if they divide
  `size` (else None: that dimension stays whole on each device)."""
  axes = nn.logical_to_mesh_axes((logical,))[0]
  if axes is None:
    return None
  names = (axes,) if isinstance(axes, str) else tuple(axes)
  names = tuple(a for a in names if a in mesh.shape)
  ways = int(np.prod([mesh.shape[a] for a in names])) if names else 1
  return names if names and size % ways == 0 else None


def _per_shard(fn, q, k, v, bias, mask):
  """`fn` on each device's block (batch over the batch axes, heads over
  `tensor`), through shard_map: XLA cannot partition a Mosaic kernel, and
  attention never mixes batch elements or heads."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return fn(q, k, v, bias, mask)
  batch = _mesh_axes('act_batch', q.shape[0], mesh)
  heads = _mesh_axes('act_heads', q.shape[3], mesh)
  spec = P(batch, None, None, heads, None)
  args, specs = [q, k, v, bias], [spec, spec, spec, P(heads, None, None)]
  if mask is not None:
    args.append(mask)
    specs.append(P(batch if mask.shape[0] == q.shape[0] else None, None,
                   None))
  local = lambda *a: fn(*a, *([None] * (5 - len(a))))
  # check_vma=False: pallas_call outputs carry no varying-axes type.
  return jax.shard_map(local, in_specs=tuple(specs), out_specs=spec,
                       check_vma=False)(*args)


def _attend_pallas_tpu(q, k, v, bias, mask):
  """Queries and keys are padded to multiples of the kernel's 128-token
  tiles (padded keys masked out, padded queries dropped); a padded window
  is one block (a few hundred tokens, far below VMEM limits). The mask
  joins the bias: the kernel takes both as its `ab` input."""
  from jax.experimental.pallas.ops.tpu import flash_attention as fa  # pylint: disable=g-import-not-at-top
  b, n, lq, heads, d = q.shape
  lk = k.shape[2]
  tile = fa.MIN_BLOCK_SIZE
  pq, pk = -(-lq // tile) * tile, -(-lk // tile) * tile

  def flat(a, padded):  # [b * n, heads, padded, d]
    length = a.shape[2]
    a = jnp.swapaxes(a.reshape(b * n, length, heads, d), 1, 2)
    return jnp.pad(a, ((0, 0), (0, 0), (0, padded - length), (0, 0)))

  allowed = jnp.ones((1, lq, lk), bool) if mask is None else mask
  allowed = jnp.pad(allowed, ((0, 0), (0, pq - lq), (0, pk - lk)))
  masked = jnp.where(allowed, 0.0, -1e9)[:, None, None]  # [b|1, 1, 1, Pq, Pk]
  ab = jnp.pad(bias.astype(jnp.float32), ((0, 0), (0, pq - lq), (0, pk - lk)))
  ab = jnp.broadcast_to(ab + masked, (b, n, heads, pq, pk))
  blocks = fa.BlockSizes(
      block_q=pq, block_k_major=pk, block_k=pk, block_b=1,
      block_q_major_dkv=pq, block_k_major_dkv=pk, block_k_dkv=pk,
      block_q_dkv=pq, block_k_major_dq=pk, block_k_dq=pk, block_q_dq=pq)
  # The kernel scales the biased logits, (qk + ab) * sm_scale: scale q.
  out = fa.flash_attention(flat(q * d ** -0.5, pq), flat(k, pk), flat(v, pk),
                           ab=ab.reshape(b * n, heads, pq, pk),
                           block_sizes=blocks)
  out = jnp.swapaxes(out[:, :, :lq], 1, 2)
  return out.reshape(b, n, lq, heads, d)


class WindowAttention(nn.Module):
  """Multi-head self-attention within windows, qk-LayerNorm per head, learned
  relative position bias per window (Swin style); optionally cross-attention
  to context tokens (text) through the same heads: each window's keys and
  values are its own tokens followed by the context's.

  Attributes:
    window: configured window `(wt, wh, ww)` in tokens (0 = whole axis); it
      sizes the bias table, and is clipped to smaller inputs.
    max_grid: the largest token grid `(t, h, w)` the model sees.
  """
  num_heads: int
  window: Window
  max_grid: Window
  dtype: jnp.dtype = jnp.float32
  kernel: str = 'xla'  # one of ATTENTION_KERNELS
  zero_out: bool = False  # output projection starts at 0 (an added branch)

  @nn.compact
  def __call__(self, x: jax.Array, is_image: jax.Array | None,
               context: jax.Array | None = None,
               context_mask: jax.Array | None = None) -> jax.Array:
    """x `[b, t, h, w, d]`, is_image bool `[b]`, context `[b, n, d]` with
    context_mask bool `[b, n]` (False = padding, never attended) ->
    `[b, t, h, w, d]`."""
    b, t, h, w, d = x.shape
    heads = self.num_heads
    head_dim = d // heads
    table_window = resolve_window(self.window, self.max_grid)
    window = resolve_window(table_window, (t, h, w))
    dense = lambda name, axes: nn.Dense(
        d, dtype=self.dtype, name=name,
        kernel_init=partitioned(nn.initializers.xavier_uniform(), axes),
        bias_init=partitioned(nn.initializers.zeros, axes[1:]))
    query, key, value = (dense(n, ('embed', 'heads'))
                         for n in ('query', 'key', 'value'))
    q, k, v = (to_windows(proj(x), window) for proj in (query, key, value))
    lead = q.shape[:-2]  # (b, nt, nh, nw)
    length = q.shape[-2]
    split = lambda a: a.reshape(b, -1, length, heads, head_dim)
    q, k, v = split(q), split(k), split(v)
    # qk-LayerNorm per head keeps attention logits bounded at large widths.
    q = nn.LayerNorm(dtype=self.dtype, name='query_norm')(q)
    key_norm = nn.LayerNorm(dtype=self.dtype, name='key_norm')
    k = key_norm(k)

    table = self.param(
        'relative_bias', partitioned(nn.initializers.truncated_normal(0.02),
                                     (None, 'heads')),
        (int(np.prod(2 * np.asarray(table_window) - 1)), heads))
    index = relative_position_index(window, table_window)
    bias = jnp.take(table, jnp.asarray(index.reshape(-1)), axis=0)
    bias = bias.reshape(length, length, heads).transpose(2, 0, 1)

    mask = None
    if is_image is not None and window[0] > 1:
      # The frames of an image stack are independent images: a token sees
      # only its own frame; a video's tokens see the whole window.
      frame = np.arange(length) // (window[1] * window[2])
      same = jnp.asarray(frame[:, None] == frame[None, :])
      mask = jnp.logical_or(same[None], ~is_image[:, None, None])
    if context is not None:
      n = context.shape[1]
      windows = k.shape[1]
      as_heads = lambda a: a.reshape(b, 1, n, heads, head_dim)
      kc = key_norm(as_heads(key(context.astype(self.dtype))))
      vc = as_heads(value(context.astype(self.dtype)))
      k = jnp.concatenate(
          [k, jnp.broadcast_to(kc, (b, windows, n, heads, head_dim))], 2)
      v = jnp.concatenate(
          [v, jnp.broadcast_to(vc, (b, windows, n, heads, head_dim))], 2)
      bias = jnp.pad(bias, ((0, 0), (0, 0), (0, n)))  # no position for text
      own = jnp.ones((1, length, length), bool) if mask is None else mask
      mask = jnp.concatenate(
          [jnp.broadcast_to(own, (b, length, length)),
           jnp.broadcast_to(context_mask[:, None, :], (b, length, n))], -1)
    out = attend(q, k, v, bias.astype(q.dtype), mask, self.kernel)
    out = out.reshape(*lead, length, d)
    out = from_windows(out, window, (t, h, w))
    out_init = (nn.initializers.zeros if self.zero_out
                else nn.initializers.xavier_uniform())
    return nn.Dense(d, dtype=self.dtype, name='out',
                    kernel_init=partitioned(out_init, ('heads', 'embed')),
                    bias_init=partitioned(nn.initializers.zeros,
                                          ('embed',)))(out)
