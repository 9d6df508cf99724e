"""MAGVIT-v2-style causal 3D CNN autoencoder with continuous latents.

`[b, 1+T, H, W, 3]` in [-1, 1] -> latent `[b, 1+T/4, H/8, W/8, c]` -> video.
The first frame is encoded on its own (causal convs), so an image is a 1-frame
video and shares the latent space. Encoder levels downsample space (all but the
last level) and time (`temporal_downsample`, late levels); the decoder mirrors
it with depth-to-space upsampling and adaptive GroupNorm conditioned on the
latent.

Sizes live in `TokenizerConfig`; `configs/tokenizer/*.py` set them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt.models.layers import (AdaptiveGroupNorm, CausalConv3D, GroupNorm,
                                ResBlock, Upsample)


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
  """Architecture. `temporal_downsample[i]`: level i halves time too."""
  base_channels: int = 128
  channel_multipliers: Sequence[int] = (1, 2, 2, 4)
  num_res_blocks: int = 4
  num_mid_blocks: int = 4
  temporal_downsample: Sequence[bool] = (False, True, True)
  latent_channels: int = 8
  kl: bool = False  # encoder outputs mean and log-variance
  temporal_kernel: int = 3  # 1: an image tokenizer (2D kernels)
  num_groups: int = 32
  # False: GroupNorms keep only their affine part and the decoder has no
  # adaptive GroupNorm (faster early learning at CPU sizes; see sprites.py).
  normalize: bool = True
  dtype: Any = jnp.float32

  @classmethod
  def from_config(cls, model) -> 'TokenizerConfig':
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in model.to_dict().items() if k in fields}
    for k in ('channel_multipliers', 'temporal_downsample'):
      if k in values:
        values[k] = tuple(values[k])
    return cls(**values)

  @property
  def spatial_factor(self) -> int:
    return 2 ** (len(self.channel_multipliers) - 1)

  @property
  def temporal_factor(self) -> int:
    if self.temporal_kernel == 1:
      return 1
    # Only levels that are followed by a downsampling use their entry.
    levels = len(self.channel_multipliers) - 1
    return 2 ** sum(bool(t) for t in self.temporal_downsample[:levels])

  def latent_shape(self, frames: int, height: int, width: int
                   ) -> tuple[int, int, int, int]:
    """`[t, h, w, c]` of the latent of a `frames x height x width` video."""
    self.check_input(frames, height, width)
    return (1 + (frames - 1) // self.temporal_factor,
            height // self.spatial_factor, width // self.spatial_factor,
            self.latent_channels)

  def check_input(self, frames: int, height: int, width: int) -> None:
    if (frames - 1) % self.temporal_factor:
      raise ValueError(f'{frames} frames: need 1 + {self.temporal_factor}k')
    if height % self.spatial_factor or width % self.spatial_factor:
      raise ValueError(f'{height}x{width} is not divisible by '
                       f'{self.spatial_factor}')

  def _temporal(self, level: int) -> bool:
    return self.temporal_kernel > 1 and bool(self.temporal_downsample[level])


class Encoder(nn.Module):
  config: TokenizerConfig

  @nn.compact
  def __call__(self, x: jax.Array, first_chunk: bool = True) -> jax.Array:
    """x: `[b, t, h, w, 3]` -> `[b, t', h', w', c or 2c]`."""
    c = self.config
    kt = c.temporal_kernel
    conv = lambda f, k, s=(1, 1, 1), name=None: CausalConv3D(
        f, k, s, dtype=c.dtype, name=name)
    h = conv(c.base_channels, (kt, 3, 3), name='conv_in')(x, first_chunk)
    levels = len(c.channel_multipliers)
    for level, mult in enumerate(c.channel_multipliers):
      for i in range(c.num_res_blocks):
        h = ResBlock(c.base_channels * mult, c.num_groups, kt, c.dtype,
                     c.normalize, name=f'level{level}_block{i}')(
                         h, first_chunk)
      if level < levels - 1:
        st = 2 if c._temporal(level) else 1
        h = conv(h.shape[-1], (kt, 3, 3), (st, 2, 2),
                 name=f'level{level}_down')(h, first_chunk)
    for i in range(c.num_mid_blocks):
      h = ResBlock(h.shape[-1], c.num_groups, kt, c.dtype, c.normalize,
                   name=f'mid_block{i}')(h, first_chunk)
    h = nn.swish(GroupNorm(c.num_groups, c.normalize, name='norm_out')(h))
    out = c.latent_channels * (2 if c.kl else 1)
    return conv(out, (1, 1, 1), name='conv_out')(h, first_chunk)


class Decoder(nn.Module):
  config: TokenizerConfig

  @nn.compact
  def __call__(self, z: jax.Array, first_chunk: bool = True) -> jax.Array:
    """z: `[b, t', h', w', c]` -> `[b, t, h, w, 3]`."""
    c = self.config
    kt = c.temporal_kernel
    levels = len(c.channel_multipliers)
    top = c.base_channels * c.channel_multipliers[-1]
    h = CausalConv3D(top, (kt, 3, 3), dtype=c.dtype, name='conv_in')(
        z, first_chunk)
    for i in range(c.num_mid_blocks):
      h = ResBlock(top, c.num_groups, kt, c.dtype, c.normalize,
                   name=f'mid_block{i}')(h, first_chunk)
    time_factor = 1  # frames of h per latent frame
    for level in reversed(range(levels)):
      features = c.base_channels * c.channel_multipliers[level]
      if c.normalize:
        h = AdaptiveGroupNorm(c.num_groups, time_factor,
                              name=f'level{level}_adanorm')(h, z, first_chunk)
      for i in range(c.num_res_blocks):
        h = ResBlock(features, c.num_groups, kt, c.dtype, c.normalize,
                     name=f'level{level}_block{i}')(h, first_chunk)
      if level > 0:
        temporal = c._temporal(level - 1)
        h = Upsample(c.base_channels * c.channel_multipliers[level - 1],
                     temporal, kt, c.dtype, name=f'level{level}_up')(
                         h, first_chunk)
        time_factor *= 2 if temporal else 1
    h = nn.swish(GroupNorm(c.num_groups, c.normalize, name='norm_out')(h))
    return CausalConv3D(3, (kt, 3, 3), dtype=c.dtype, name='conv_out')(
        h, first_chunk)


class Tokenizer(nn.Module):
  """Encoder + decoder. `__call__` reconstructs (training); `encode`/`decode`
  are the public API (methods of `apply`)."""
  config: TokenizerConfig

  def setup(self):
    self.encoder = Encoder(self.config)
    self.decoder = Decoder(self.config)

  def encode_moments(self, video: jax.Array, first_chunk: bool = True
                     ) -> tuple[jax.Array, jax.Array]:
    """Posterior mean and log-variance (zeros without KL), `[b, t', h', w', c]`."""
    h = self.encoder(video, first_chunk)
    if self.config.kl:
      mean, logvar = jnp.split(h, 2, axis=-1)
      return mean, jnp.clip(logvar, -30.0, 20.0)
    return h, jnp.zeros_like(h)

  def encode(self, video: jax.Array, first_chunk: bool = True) -> jax.Array:
    """`[b, 1+T, H, W, 3]` in [-1, 1] -> latent (posterior mean)."""
    return self.encode_moments(video, first_chunk)[0]

  def decode(self, latent: jax.Array, first_chunk: bool = True) -> jax.Array:
    return self.decoder(latent, first_chunk)

  def __call__(self, video: jax.Array, sample: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Reconstruction and `{'mean', 'logvar'}`; samples the posterior (KL
    models, rng 'sample') when `sample`."""
    mean, logvar = self.encode_moments(video)
    z = mean
    if self.config.kl and sample:
      eps = jax.random.normal(self.make_rng('sample'), mean.shape, mean.dtype)
      z = mean + jnp.exp(0.5 * logvar) * eps
    return self.decode(z), {'mean': mean, 'logvar': logvar}


def normalize(latent: jax.Array, mean, std) -> jax.Array:
  """Raw latent -> per-channel zero-mean, unit-std latent (what the denoiser
  sees); `mean`, `std`: `[c]` from the tokenizer's `latent_stats.json`."""
  return (latent - jnp.asarray(mean)) / jnp.asarray(std)


def denormalize(latent: jax.Array, mean, std) -> jax.Array:
  """Inverse of `normalize`."""
  return latent * jnp.asarray(std) + jnp.asarray(mean)


def kl_divergence(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, exp(logvar)) || N(0, 1)), averaged over elements."""
  return 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)


# ---------------------------------------------------------------- chunking


def _chunks(length: int, first: int, size: int) -> list[tuple[int, int]]:
  bounds, start = [(0, min(first, length))], min(first, length)
  while start < length:
    bounds.append((start, min(start + size, length)))
    start += size
  return bounds


def encode_chunked(model: Tokenizer, params, video: jax.Array,
                   chunk_latent_frames: int = 1) -> jax.Array:
  """Encodes `[b, 1+T, H, W, 3]` chunk by chunk (frame 0, then
  `4 * chunk_latent_frames` frames at a time), carrying the causal context, so
  memory is bounded by a chunk. Equals `encode` on the whole video."""
  factor = model.config.temporal_factor
  cache, outs = {}, []
  for i, (a, b) in enumerate(_chunks(video.shape[1], 1,
                                     factor * chunk_latent_frames)):
    z, state = _encode_step(model, params, cache, video[:, a:b], i == 0)
    cache, outs = state['cache'], outs + [z]
  return jnp.concatenate(outs, axis=1)


def decode_chunked(model: Tokenizer, params, latent: jax.Array,
                   chunk_latent_frames: int = 1) -> jax.Array:
  """Decodes a latent chunk by chunk; equals `decode` on the whole latent."""
  cache, outs = {}, []
  for i, (a, b) in enumerate(_chunks(latent.shape[1], 1, chunk_latent_frames)):
    x, state = _decode_step(model, params, cache, latent[:, a:b], i == 0)
    cache, outs = state['cache'], outs + [x]
  return jnp.concatenate(outs, axis=1)


def _encode_step(model, params, cache, x, first):
  return _jit_step(model.config, 'encode', first)(params, cache, x)


def _decode_step(model, params, cache, z, first):
  return _jit_step(model.config, 'decode', first)(params, cache, z)


@functools.lru_cache(maxsize=32)
def _jit_step(config: TokenizerConfig, method: str, first: bool):
  """One compiled chunk step per (architecture, method, first chunk)."""
  model = Tokenizer(config)

  def step(params, cache, x):
    variables = {'params': params, **({'cache': cache} if cache else {})}
    return model.apply(variables, x, first, method=method, mutable=['cache'])
  return jax.jit(step)


# ---------------------------------------------------------------- inflation


def inflate_image_params(image_params, video_shapes) -> dict:
  """Initialises a causal video tokenizer from a 2D image tokenizer.

  Each 2D kernel `[1, kh, kw, i, o]` goes into the last temporal slice of the
  causal 3D kernel (the current frame), zeros elsewhere, so on a 1-frame input
  the video tokenizer computes exactly what the image tokenizer did. Temporal
  upsampling convs (x2 output channels, one block per sub-frame) repeat the
  image kernel and bias for both sub-frames.

  Args:
    image_params: (unboxed) params of a `Tokenizer` with `temporal_kernel=1`.
    video_shapes: the video tokenizer's params or their shapes (same widths
      and depths, `temporal_kernel=3`).
  """
  flat_img = _flatten(image_params)

  def inflate(path, target):
    src = np.asarray(flat_img[path])
    shape = tuple(target.shape)
    if src.shape == shape:
      return jnp.asarray(src)
    reps = shape[-1] // src.shape[-1]
    if src.ndim == 1 and reps * src.shape[0] == shape[0]:
      return jnp.asarray(np.tile(src, reps))
    if (src.ndim != 5 or src.shape[0] != 1 or src.shape[1:4] != shape[1:4]
        or reps * src.shape[-1] != shape[-1]):
      raise ValueError(f'cannot inflate {"/".join(path)}: {src.shape} -> '
                       f'{shape}')
    kernel = np.zeros(shape, src.dtype)
    kernel[-1] = np.tile(src[0], (1, 1, 1, reps))
    return jnp.asarray(kernel)

  out: dict = {}
  for path, target in _flatten(video_shapes).items():
    node = out
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = inflate(path, target)
  return out


def _flatten(tree, prefix=()) -> dict:
  if hasattr(tree, 'items'):
    out = {}
    for k, v in tree.items():
      out.update(_flatten(v, prefix + (k,)))
    return out
  return {prefix: tree}
