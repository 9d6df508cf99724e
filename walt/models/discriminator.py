"""StyleGAN-style 3D residual discriminator with blur pooling (MAGVIT-v2).

Input `[b, t, h, w, 3]` in [-1, 1] -> one logit per clip `[b]`. Each block:
conv3x3x3 -> LeakyReLU(0.2) -> conv3x3x3 -> LeakyReLU -> 3D blur-pool /2, plus
a blur-pooled 1x1x1 shortcut, summed and scaled by 1/sqrt(2). Time is pooled
only while more than one frame is left.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt.models.layers import CausalConv3D


def blur_pool(x: jax.Array, pool_time: bool) -> jax.Array:
  """Anti-aliased /2 downsampling: separable [1, 3, 3, 1] filter, stride 2.

  x: `[b, t, h, w, c]` -> `[b, t', h/2, w/2, c]` (t' = ceil(t/2) if
  `pool_time`, else t).
  """
  taps = np.array([1.0, 3.0, 3.0, 1.0], np.float32)
  taps = jnp.asarray(taps / taps.sum())

  def pool(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 2)  # zero padding: n -> ceil(n / 2) outputs
    xp = jnp.pad(x, pad)
    out_len = (x.shape[axis] + 1) // 2
    acc = 0.0
    for k in range(4):
      idx = [slice(None)] * x.ndim
      idx[axis] = slice(k, k + 2 * (out_len - 1) + 1, 2)
      acc = acc + taps[k] * xp[tuple(idx)]
    return acc

  x = pool(pool(x, 2), 3)
  return pool(x, 1) if pool_time and x.shape[1] > 1 else x


class DiscriminatorBlock(nn.Module):
  features_in: int
  features_out: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    pool_time = x.shape[1] > 1
    h = nn.leaky_relu(CausalConv3D(self.features_in, causal=False,
                                   name='conv1')(x), 0.2)
    h = nn.leaky_relu(CausalConv3D(self.features_out, causal=False,
                                   name='conv2')(h), 0.2)
    h = blur_pool(h, pool_time)
    skip = CausalConv3D(self.features_out, (1, 1, 1), causal=False,
                        use_bias=False, name='shortcut')(
                            blur_pool(x, pool_time))
    return (h + skip) / np.sqrt(2.0)


class Discriminator(nn.Module):
  base_channels: int = 64
  channel_multipliers: Sequence[int] = (2, 4, 4, 4, 4)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = nn.leaky_relu(CausalConv3D(self.base_channels, causal=False,
                                   name='conv_in')(x), 0.2)
    features = self.base_channels
    for i, mult in enumerate(self.channel_multipliers):
      h = DiscriminatorBlock(features, self.base_channels * mult,
                             name=f'block{i}')(h)
      features = self.base_channels * mult
    h = nn.leaky_relu(CausalConv3D(features, causal=False,
                                   name='conv_out')(h), 0.2)
    h = h.reshape(h.shape[0], -1)
    # The flattened features make this the largest kernel: split like the
    # denoiser's dense layers (fsdp on the input, tensor on the output).
    dense = lambda f, axes, name: nn.Dense(
        f, name=name,
        kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), axes),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros,
                                               axes[1:]))
    h = nn.leaky_relu(dense(features, ('embed', 'mlp'), 'dense')(h), 0.2)
    return dense(1, ('mlp', None), 'logit')(h)[:, 0]
