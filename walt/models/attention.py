"""Non-overlapping window self-attention over latent video tokens.

Tokens `[b, t, h, w, d]` are cut into windows of `(wt, wh, ww)` tokens with
reshapes and transposes only (no gathers), attended within each window, and
put back. A spatial window is `(1, wh, ww)`; a spatiotemporal one `(wt, wh,
ww)`. When the window covers the whole grid the layer is plain full attention.

Image samples (a stack of independent images shaped like a video, `is_image`)
get an identity mask across frames, so different images never exchange
information in spatiotemporal windows.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
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


def attend(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array,
           mask: jax.Array | None) -> jax.Array:
  """Softmax attention within windows.

  q, k, v `[b, n, L, heads, d]` (n windows of L tokens); bias `[heads, L,
  L]`; mask bool, broadcastable to `[b, n, heads, L, L]` (True = attend) ->
  `[b, n, L, heads, d]`.

  Heads go next to the batch axes before the two matmuls so that each is
  one batched GEMM on contiguous `[L, d]` blocks; XLA's CPU path for
  `jax.nn.dot_product_attention` transposes inside the dot instead and
  measured slower on the train step (walt.benchmark --suite=peer).
  """
  scale = q.shape[-1] ** -0.5
  heads_first = lambda a: jnp.swapaxes(a, 2, 3)  # [b, n, heads, L, d]
  q, k, v = heads_first(q * scale), heads_first(k), heads_first(v)
  logits = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) + bias
  if mask is not None:
    logits = jnp.where(mask, logits, jnp.finfo(logits.dtype).min)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  return heads_first(jnp.matmul(weights.astype(v.dtype), v))


class WindowAttention(nn.Module):
  """Multi-head self-attention within windows, qk-LayerNorm per head, learned
  relative position bias per window (Swin style).

  Attributes:
    window: configured window `(wt, wh, ww)` in tokens (0 = whole axis); it
      sizes the bias table, and is clipped to smaller inputs.
    max_grid: the largest token grid `(t, h, w)` the model sees.
  """
  num_heads: int
  window: Window
  max_grid: Window
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, is_image: jax.Array | None) -> jax.Array:
    """x `[b, t, h, w, d]`, is_image bool `[b]` -> `[b, t, h, w, d]`."""
    b, t, h, w, d = x.shape
    heads = self.num_heads
    head_dim = d // heads
    table_window = resolve_window(self.window, self.max_grid)
    window = resolve_window(table_window, (t, h, w))
    dense = lambda name, axes: nn.Dense(
        d, dtype=self.dtype, name=name,
        kernel_init=partitioned(nn.initializers.xavier_uniform(), axes),
        bias_init=partitioned(nn.initializers.zeros, axes[1:]))
    q, k, v = (to_windows(dense(n, ('embed', 'heads'))(x), window)
               for n in ('query', 'key', 'value'))
    lead = q.shape[:-2]  # (b, nt, nh, nw)
    length = q.shape[-2]
    split = lambda a: a.reshape(b, -1, length, heads, head_dim)
    q, k, v = split(q), split(k), split(v)
    # qk-LayerNorm per head keeps attention logits bounded at large widths.
    q = nn.LayerNorm(dtype=self.dtype, name='query_norm')(q)
    k = nn.LayerNorm(dtype=self.dtype, name='key_norm')(k)

    table = self.param(
        'relative_bias', partitioned(nn.initializers.truncated_normal(0.02),
                                     (None, 'heads')),
        (int(np.prod(2 * np.asarray(table_window) - 1)), heads))
    index = relative_position_index(window, table_window)
    bias = jnp.take(table, jnp.asarray(index.reshape(-1)), axis=0)
    bias = bias.reshape(length, length, heads).transpose(2, 0, 1)

    mask = None
    if is_image is not None and window[0] > 1:
      # [b, 1, 1, L, L]: broadcast over windows and heads inside the softmax
      # fusion, never materialised per window.
      frame = np.arange(length) // (window[1] * window[2])
      same = jnp.asarray(frame[:, None] == frame[None, :])
      mask = jnp.logical_or(same, ~is_image[:, None, None])[:, None, None]
    out = attend(q, k, v, bias.astype(q.dtype), mask)
    out = out.reshape(*lead, length, d)
    out = from_windows(out, window, (t, h, w))
    return nn.Dense(d, dtype=self.dtype, name='out',
                    kernel_init=partitioned(nn.initializers.xavier_uniform(),
                                            ('heads', 'embed')),
                    bias_init=partitioned(nn.initializers.zeros,
                                          ('embed',)))(out)
