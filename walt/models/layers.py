"""Shared convolutional layers: causal 3D conv, per-frame norms, residual blocks.

Videos are `[b, t, h, w, c]`. Every layer here is causal in time: output frame
i depends on input frames <= i only. Normalisation statistics are taken per
frame (over h, w and the channels of a group), never across time, which keeps
the network causal and lets a video be processed chunk by chunk.

Streaming: a `CausalConv3D` called with `first_chunk=False` prepends the frames
it kept in the `cache` collection from the previous call instead of zeros, and
stores the frames the next call needs (make `cache` mutable). Running a video
chunk by chunk then gives the same result as running it at once.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def _conv_init(logical_out: str = 'conv_out'):
  return nn.with_logical_partitioning(
      nn.initializers.lecun_normal(),
      (None, None, None, 'conv_in', logical_out))


class CausalConv3D(nn.Module):
  """3D convolution padded with `k_t - 1` frames before and none after.

  'Same' spatial padding; a temporal stride 2 with kernel 3 maps 1+2t frames
  to 1+t. With `causal=False` time is padded symmetrically instead (the
  discriminator), and there is no streaming cache.
  """
  features: int
  kernel: Sequence[int] = (3, 3, 3)
  strides: Sequence[int] = (1, 1, 1)
  dtype: Dtype = jnp.float32
  causal: bool = True
  use_bias: bool = True
  # 'xla': one 2D convolution over the stacked temporal taps. 'im2col': the
  # 3x3 spatial taps are stacked too and the whole conv is one matmul, whose
  # backward pass is matmuls as well. Same outputs and gradients; on this
  # CPU not faster than 'xla' (WORKSPACE.md, tokenizer study).
  impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, first_chunk: bool = True) -> jax.Array:
    kt, kh, kw = self.kernel
    st = self.strides[0]
    if not self.causal:
      x = jnp.pad(x, ((0, 0), ((kt - 1) // 2, kt // 2), (0, 0), (0, 0),
                      (0, 0)))
    elif kt > 1:
      if first_chunk or not self.has_variable('cache', 'frames'):
        context = jnp.zeros(x.shape[:1] + (kt - 1,) + x.shape[2:], x.dtype)
      else:
        context = self.get_variable('cache', 'frames')
      x = jnp.concatenate([context, x], axis=1)
      if self.is_mutable_collection('cache'):
        # Frames the next chunk's first window starts from.
        consumed = ((x.shape[1] - kt) // st + 1) * st
        self.put_variable('cache', 'frames', x[:, consumed:])
    # Spatial 'same' padding; for stride 2 the extra row/col goes after, as in
    # TF 'SAME', so an image and a video frame are padded identically.
    pads = []
    for k, s, n in ((kh, self.strides[1], x.shape[2]),
                    (kw, self.strides[2], x.shape[3])):
      total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
      pads.append((total // 2, total - total // 2))
    features_in = x.shape[-1]
    kernel = self.param('kernel', _conv_init(),
                        (kt, kh, kw, features_in, self.features))
    bias = self.param('bias', nn.with_logical_partitioning(
        nn.initializers.zeros, ('conv_out',)), (self.features,)
                      ) if self.use_bias else None
    # The temporal taps are stacked on channels and run as one 2D conv over
    # all output frames: XLA's CPU 3D convolution is 4-6x slower than its 2D
    # one at these widths, and on accelerators this is the same contraction.
    b, t, h, w, c = x.shape
    n_out = (t - kt) // st + 1
    taps = [x[:, k:k + (n_out - 1) * st + 1:st] for k in range(kt)]
    stacked = jnp.concatenate(taps, axis=-1) if kt > 1 else taps[0]
    stacked = stacked.reshape(b * n_out, h, w, kt * c).astype(self.dtype)
    kernel2d = kernel.transpose(1, 2, 0, 3, 4).reshape(
        kh, kw, kt * c, self.features).astype(self.dtype)
    y = conv2d(stacked, kernel2d, tuple(self.strides[1:]), pads, self.impl)
    if bias is not None:
      y = y + bias.astype(self.dtype)
    return y.reshape((b, n_out) + y.shape[1:])


CONV_IMPLS = ('xla', 'im2col')


def conv2d(x: jax.Array, kernel: jax.Array, strides: Sequence[int],
           pads: Sequence[tuple[int, int]], impl: str = 'xla') -> jax.Array:
  """2D convolution `[n, h, w, c] * [kh, kw, c, f] -> [n, h', w', f]`.

  `impl='im2col'` gathers the `kh * kw` shifted (strided) views of the padded
  input on channels and contracts them with the kernel in one dot.
  """
  if impl == 'xla':
    return jax.lax.conv_general_dilated(
        x, kernel, tuple(strides), list(pads),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  if impl != 'im2col':
    raise ValueError(f'unknown conv impl {impl!r}: {CONV_IMPLS}')
  kh, kw, c, f = kernel.shape
  sh, sw = strides
  if kh == kw == 1 and sh == sw == 1:
    return x @ kernel.reshape(c, f)
  x = jnp.pad(x, ((0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)))
  ho = (x.shape[1] - kh) // sh + 1
  wo = (x.shape[2] - kw) // sw + 1
  cols = [x[:, dy:dy + (ho - 1) * sh + 1:sh, dx:dx + (wo - 1) * sw + 1:sw]
          for dy in range(kh) for dx in range(kw)]
  return jnp.concatenate(cols, axis=-1) @ kernel.reshape(kh * kw * c, f)


def frame_group_norm(x: jax.Array, num_groups: int, eps: float = 1e-6
                     ) -> jax.Array:
  """GroupNorm without affine parameters, statistics per frame.

  x: `[b, t, h, w, c]`; groups of `c // num_groups` channels.
  """
  b, t, h, w, c = x.shape
  g = min(num_groups, c)
  if c % g:
    raise ValueError(f'{c} channels are not divisible into {g} groups')
  y = x.reshape(b, t, h, w, g, c // g).astype(jnp.float32)
  mean = y.mean(axis=(2, 3, 5), keepdims=True)
  var = jnp.square(y - mean).mean(axis=(2, 3, 5), keepdims=True)
  y = (y - mean) * jax.lax.rsqrt(var + eps)
  return y.reshape(b, t, h, w, c).astype(x.dtype)


def position_rms_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
  """RMSNorm over the channels of each position, no affine parameters.

  x: `[..., c]`. Unlike `frame_group_norm` its statistics do not depend on
  the frame size, so a network trained on crops runs unchanged on whole
  frames (DC-AE's autoencoders normalise this way).
  """
  y = x.astype(jnp.float32)
  y = y * jax.lax.rsqrt(jnp.square(y).mean(axis=-1, keepdims=True) + eps)
  return y.astype(x.dtype)


NORMS = ('group', 'rms')


class GroupNorm(nn.Module):
  """Per-frame GroupNorm with a learned per-channel scale and shift.

  `normalize=False` keeps only the affine part (no statistics; measured on
  the sprites quick tokenizer: 18.4 vs 16.7 dB held-out PSNR at 120 steps).
  `kind='rms'` replaces the per-frame group statistics by `position_rms_norm`.
  """
  num_groups: int = 32
  normalize: bool = True
  kind: str = 'group'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    scale = self.param('scale', nn.with_logical_partitioning(
        nn.initializers.ones, ('norm',)), (c,))
    bias = self.param('bias', nn.with_logical_partitioning(
        nn.initializers.zeros, ('norm',)), (c,))
    if not self.normalize:
      return x * scale + bias
    if self.kind == 'rms':
      return position_rms_norm(x) * scale + bias
    if self.kind != 'group':
      raise ValueError(f'unknown norm {self.kind!r}: {NORMS}')
    return frame_group_norm(x, self.num_groups) * scale + bias


class ResBlock(nn.Module):
  """GroupNorm -> swish -> conv, twice, plus a (1x1x1 if needed) shortcut."""
  features: int
  num_groups: int = 32
  temporal_kernel: int = 3
  dtype: Dtype = jnp.float32
  normalize: bool = True
  impl: str = 'xla'
  norm: str = 'group'

  @nn.compact
  def __call__(self, x: jax.Array, first_chunk: bool = True) -> jax.Array:
    k = (self.temporal_kernel, 3, 3)
    norm = lambda name: GroupNorm(self.num_groups, self.normalize, self.norm,
                                  name=name)
    h = nn.swish(norm('norm1')(x))
    h = CausalConv3D(self.features, k, dtype=self.dtype, impl=self.impl,
                     name='conv1')(h, first_chunk)
    h = nn.swish(norm('norm2')(h))
    h = CausalConv3D(self.features, k, dtype=self.dtype, impl=self.impl,
                     name='conv2')(h, first_chunk)
    if x.shape[-1] != self.features:
      x = CausalConv3D(self.features, (1, 1, 1), dtype=self.dtype,
                       impl=self.impl, name='shortcut')(x, first_chunk)
    return x + h


def expand_time(cond: jax.Array, factor: int, first_chunk: bool = True
                ) -> jax.Array:
  """Per-latent-frame values -> per-frame values after `factor`x causal
  temporal upsampling: frame 0 <- latent 0, frames 1..f <- latent 1, ...

  cond: `[b, t_lat, ...]`; returns `[b, 1 + (t_lat - 1) * factor, ...]` for the
  first chunk, `[b, t_lat * factor, ...]` for later chunks.
  """
  if factor == 1:
    return cond
  if first_chunk:
    return jnp.concatenate(
        [cond[:, :1], jnp.repeat(cond[:, 1:], factor, axis=1)], axis=1)
  return jnp.repeat(cond, factor, axis=1)


class AdaptiveGroupNorm(nn.Module):
  """GroupNorm whose scale and shift are linear maps of the latent's
  per-channel spatial mean and std in the matching latent frame.

  x: `[b, t, h, w, c]`; latent: `[b, t_lat, h', w', c_lat]`, with
  `t = 1 + (t_lat - 1) * time_factor` (or `t_lat * time_factor` for chunks
  after the first).
  """
  num_groups: int = 32
  time_factor: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, latent: jax.Array,
               first_chunk: bool = True) -> jax.Array:
    c = x.shape[-1]
    stats = jnp.concatenate([latent.mean(axis=(2, 3)),
                             latent.std(axis=(2, 3))], axis=-1)
    stats = expand_time(stats, self.time_factor, first_chunk)
    dense = lambda name, init: nn.Dense(
        c, kernel_init=nn.with_logical_partitioning(
            nn.initializers.zeros, (None, 'conv_out')),
        bias_init=nn.with_logical_partitioning(init, ('conv_out',)), name=name)
    scale = dense('scale', nn.initializers.ones)(stats)
    shift = dense('shift', nn.initializers.zeros)(stats)
    y = frame_group_norm(x, self.num_groups)
    return y * scale[:, :, None, None, :] + shift[:, :, None, None, :]


def depth_to_space(x: jax.Array, st: int, sh: int, sw: int) -> jax.Array:
  """`[b, t, h, w, c * st * sh * sw]` -> `[b, t * st, h * sh, w * sw, c]`."""
  b, t, h, w, cc = x.shape
  c = cc // (st * sh * sw)
  x = x.reshape(b, t, h, w, st, sh, sw, c)
  x = x.transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return x.reshape(b, t * st, h * sh, w * sw, c)


def space_to_depth(x: jax.Array, st: int, sh: int, sw: int) -> jax.Array:
  """`[b, t * st, h * sh, w * sw, c]` -> `[b, t, h, w, st * sh * sw * c]`
  (inverse of `depth_to_space`)."""
  b, tt, hh, ww, c = x.shape
  x = x.reshape(b, tt // st, st, hh // sh, sh, ww // sw, sw, c)
  x = x.transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, tt // st, hh // sh, ww // sw, st * sh * sw * c)


class Upsample(nn.Module):
  """Conv to `features * st * s * s` channels (s = 2 if `spatial`), then
  depth-to-space; after a temporal x`st` the first `st - 1` frames are
  dropped (1+t -> 1+st*t)."""
  features: int
  temporal: bool
  temporal_kernel: int = 3
  dtype: Dtype = jnp.float32
  spatial: bool = True
  impl: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, first_chunk: bool = True) -> jax.Array:
    st = 2 if self.temporal else 1
    s = 2 if self.spatial else 1
    h = CausalConv3D(self.features * st * s * s, (self.temporal_kernel, 3, 3),
                     dtype=self.dtype, impl=self.impl, name='conv')(
                         x, first_chunk)
    h = depth_to_space(h, st, s, s)
    return h[:, st - 1:] if first_chunk else h
