"""The textbook DiT block stack, the benchmark's peer (Peebles & Xie 2023).

Full attention over all tokens, one fused QKV projection, adaLN-Zero from a
per-sample condition (timestep embedding), MLP ratio 4 with GELU: the design
`per_token_vs_dit` measures the W.A.L.T denoiser against, at equal width,
depth and token count. It takes the same `[b, t, h, w, c]` latent as the
denoiser (patch size 1) and returns v of the same shape.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from walt.models.denoiser import timestep_embedding


class DiTBlock(nn.Module):
  width: int
  num_heads: int
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, cond: jax.Array) -> jax.Array:
    """x `[b, n, d]`, cond `[b, d]` (after SiLU) -> `[b, n, d]`."""
    d, heads = self.width, self.num_heads
    mod = nn.Dense(6 * d, kernel_init=nn.initializers.zeros,
                   name='adaln')(cond)[:, None]
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, -1)
    norm = lambda: nn.LayerNorm(use_scale=False, use_bias=False)
    h = norm()(x) * (1 + scale1) + shift1
    b, n, _ = h.shape
    qkv = nn.Dense(3 * d, name='qkv')(h).reshape(b, n, 3, heads, d // heads)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    h = jax.nn.dot_product_attention(q, k, v).reshape(b, n, d)
    x = x + gate1 * nn.Dense(d, name='proj')(h)
    h = norm()(x) * (1 + scale2) + shift2
    h = nn.Dense(d, name='mlp_out')(
        nn.gelu(nn.Dense(self.mlp_ratio * d, name='mlp_in')(h)))
    return x + gate2 * h


class DiT(nn.Module):
  width: int
  depth: int
  num_heads: int
  time_embed_dim: int = 256

  @nn.compact
  def __call__(self, z: jax.Array, t: jax.Array) -> jax.Array:
    """z `[b, t, h, w, c]`, t `[b]` in [0, 1) -> v `[b, t, h, w, c]`."""
    b, *grid, c = z.shape
    x = nn.Dense(self.width, name='patch_embed')(z.reshape(b, -1, c))
    x = x + self.param('position', nn.initializers.normal(0.02),
                       (x.shape[1], self.width))[None]
    cond = nn.Dense(self.width)(timestep_embedding(t, self.time_embed_dim))
    cond = nn.silu(nn.Dense(self.width)(nn.silu(cond)))
    for i in range(self.depth):
      x = DiTBlock(self.width, self.num_heads, name=f'block_{i}')(x, cond)
    shift, scale = jnp.split(nn.Dense(2 * self.width,
                                      kernel_init=nn.initializers.zeros)(
                                          cond)[:, None], 2, -1)
    x = nn.LayerNorm(use_scale=False, use_bias=False)(x) * (1 + scale) + shift
    x = nn.Dense(c, kernel_init=nn.initializers.zeros, name='final')(x)
    return x.reshape(b, *grid, c)
