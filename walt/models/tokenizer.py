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

from walt.models.layers import (CONV_IMPLS, NORMS, AdaptiveGroupNorm,
                                CausalConv3D, GroupNorm, ResBlock, Upsample,
                                depth_to_space, space_to_depth)


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
  # Normalisation statistics (layers.NORMS): 'group', per-frame GroupNorm
  # (MAGVIT-v2) plus the decoder's adaptive GroupNorm; 'rms', per-position
  # RMSNorm over channels and no adaptive norm, so nothing depends on the
  # frame size and training on crops transfers to whole frames.
  norm: str = 'group'
  # Patchify stem, `(t, h, w)`: the encoder first folds each causal group
  # of t frames (the first frame alone, zero-padded in front) and each h x w
  # tile onto channels, and the decoder unfolds its output the same way, so
  # no convolution runs at full resolution or frame rate (as in LTX-Video's
  # and Cosmos' tokenizers). `stem='haar'` applies an orthonormal Haar
  # transform over each folded patch (Cosmos' wavelet stem); it needs powers
  # of 2.
  patch_size: Sequence[int] = (1, 1, 1)
  stem: str = 'space_to_depth'
  # Per level transition: whether it halves space (empty: all do). A level
  # that downsamples neither space nor time has no downsampling conv.
  spatial_downsample: Sequence[bool] = ()
  conv_impl: str = 'xla'  # layers.CONV_IMPLS
  dtype: Any = jnp.float32

  @classmethod
  def from_config(cls, model) -> 'TokenizerConfig':
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in model.to_dict().items() if k in fields}
    for k in ('channel_multipliers', 'temporal_downsample', 'patch_size',
              'spatial_downsample'):
      if k in values:
        values[k] = tuple(values[k])
    return cls(**values)

  @property
  def spatial_factor(self) -> int:
    levels = len(self.channel_multipliers) - 1
    return self.patch_size[1] * 2 ** sum(
        self._spatial(i) for i in range(levels))

  @property
  def temporal_factor(self) -> int:
    if self.temporal_kernel == 1:
      return 1
    # Only levels that are followed by a downsampling use their entry.
    levels = len(self.channel_multipliers) - 1
    return self.patch_size[0] * 2 ** sum(
        bool(t) for t in self.temporal_downsample[:levels])

  def __post_init__(self):
    self.validate()

  def validate(self) -> None:
    """Raises on inconsistent architecture fields."""
    pt, ph, pw = self.patch_size
    if ph != pw:
      raise ValueError(f'patch_size {self.patch_size}: square tiles only')
    if self.temporal_kernel == 1 and pt != 1:
      raise ValueError('an image tokenizer (temporal_kernel=1) needs '
                       'patch_size[0] == 1')
    if self.stem not in STEMS:
      raise ValueError(f'unknown stem {self.stem!r}: {STEMS}')
    if self.stem == 'haar' and any(p & (p - 1) for p in self.patch_size):
      raise ValueError(f'the Haar stem needs powers of 2, not '
                       f'{self.patch_size}')
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f'unknown conv_impl {self.conv_impl!r}: {CONV_IMPLS}')
    if self.norm not in NORMS:
      raise ValueError(f'unknown norm {self.norm!r}: {NORMS}')
    levels = len(self.channel_multipliers) - 1
    if self.spatial_downsample and len(self.spatial_downsample) < levels:
      raise ValueError(f'spatial_downsample needs {levels} entries')
    if self.temporal_kernel > 1 and len(self.temporal_downsample) < levels:
      raise ValueError(f'temporal_downsample needs {levels} entries')

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

  def _spatial(self, level: int) -> bool:
    return (not self.spatial_downsample or
            bool(self.spatial_downsample[level]))


STEMS = ('space_to_depth', 'haar')


def haar_matrix(n: int) -> np.ndarray:
  """Orthonormal `[n, n]` Haar transform (n a power of 2): row 0 the
  average, then differences from coarse to fine."""
  h = np.ones((1, 1))
  while h.shape[0] < n:
    m = h.shape[0]
    h = np.concatenate([np.kron(h, [1.0, 1.0]),
                        np.kron(np.eye(m), [1.0, -1.0])]) / np.sqrt(2.0)
  return h.astype(np.float32)


def _haar(x: jax.Array, patch: Sequence[int], inverse: bool) -> jax.Array:
  """Haar transform over the folded patch axes of `[..., pt*ph*pw*c]`."""
  pt, ph, pw = patch
  c = x.shape[-1] // (pt * ph * pw)
  y = x.reshape(x.shape[:-1] + (pt, ph, pw, c))
  mats = [jnp.asarray(haar_matrix(p)) for p in patch]
  # Orthonormal, so the inverse contracts with the transposes.
  y = jnp.einsum('ia,jb,kd,...ijkc->...abdc' if inverse else
                 'ai,bj,dk,...ijkc->...abdc', *mats, y)
  return y.reshape(x.shape)


def patchify(x: jax.Array, config: 'TokenizerConfig', first_chunk: bool
             ) -> jax.Array:
  """The encoder's stem: `[b, t, H, W, c]` -> `[b, t', H/ph, W/pw,
  pt*ph*pw*c]`, t' = 1 + (t-1)/pt for a first chunk, t/pt after it."""
  pt, ph, pw = config.patch_size
  if first_chunk and pt > 1:
    x = jnp.pad(x, ((0, 0), (pt - 1, 0), (0, 0), (0, 0), (0, 0)))
  if x.shape[1] % pt:
    raise ValueError(f'{x.shape[1]} frames do not fold into groups of {pt}')
  y = space_to_depth(x, pt, ph, pw)
  return _haar(y, config.patch_size, False) if config.stem == 'haar' else y


def unpatchify(y: jax.Array, config: 'TokenizerConfig', first_chunk: bool
               ) -> jax.Array:
  """Inverse of `patchify` (drops the first chunk's padding frames)."""
  pt, ph, pw = config.patch_size
  if config.stem == 'haar':
    y = _haar(y, config.patch_size, True)
  x = depth_to_space(y, pt, ph, pw)
  return x[:, pt - 1:] if first_chunk else x


class Encoder(nn.Module):
  config: TokenizerConfig

  @nn.compact
  def __call__(self, x: jax.Array, first_chunk: bool = True) -> jax.Array:
    """x: `[b, t, h, w, 3]` -> `[b, t', h', w', c or 2c]`."""
    c = self.config
    kt = c.temporal_kernel
    conv = lambda f, k, s=(1, 1, 1), name=None: CausalConv3D(
        f, k, s, dtype=c.dtype, impl=c.conv_impl, name=name)
    block = lambda f, name: ResBlock(f, c.num_groups, kt, c.dtype,
                                     c.normalize, c.conv_impl, c.norm,
                                     name=name)
    if tuple(c.patch_size) != (1, 1, 1):
      x = patchify(x, c, first_chunk)
    h = conv(c.base_channels, (kt, 3, 3), name='conv_in')(x, first_chunk)
    levels = len(c.channel_multipliers)
    for level, mult in enumerate(c.channel_multipliers):
      for i in range(c.num_res_blocks):
        h = block(c.base_channels * mult, f'level{level}_block{i}')(
            h, first_chunk)
      if level < levels - 1:
        st = 2 if c._temporal(level) else 1
        ss = 2 if c._spatial(level) else 1
        if st > 1 or ss > 1:
          h = conv(h.shape[-1], (kt, 3, 3), (st, ss, ss),
                   name=f'level{level}_down')(h, first_chunk)
    for i in range(c.num_mid_blocks):
      h = block(h.shape[-1], f'mid_block{i}')(h, first_chunk)
    h = nn.swish(GroupNorm(c.num_groups, c.normalize, c.norm,
                             name='norm_out')(h))
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
    block = lambda f, name: ResBlock(f, c.num_groups, kt, c.dtype,
                                     c.normalize, c.conv_impl, c.norm,
                                     name=name)
    h = CausalConv3D(top, (kt, 3, 3), dtype=c.dtype, impl=c.conv_impl,
                     name='conv_in')(z, first_chunk)
    for i in range(c.num_mid_blocks):
      h = block(top, f'mid_block{i}')(h, first_chunk)
    time_factor = 1  # frames of h per latent frame
    for level in reversed(range(levels)):
      features = c.base_channels * c.channel_multipliers[level]
      if c.normalize and c.norm == 'group':
        h = AdaptiveGroupNorm(c.num_groups, time_factor,
                              name=f'level{level}_adanorm')(h, z, first_chunk)
      for i in range(c.num_res_blocks):
        h = block(features, f'level{level}_block{i}')(h, first_chunk)
      if level > 0:
        temporal = c._temporal(level - 1)
        spatial = c._spatial(level - 1)
        if temporal or spatial:
          h = Upsample(c.base_channels * c.channel_multipliers[level - 1],
                       temporal, kt, c.dtype, spatial, c.conv_impl,
                       name=f'level{level}_up')(h, first_chunk)
        time_factor *= 2 if temporal else 1
    h = nn.swish(GroupNorm(c.num_groups, c.normalize, c.norm,
                             name='norm_out')(h))
    pt, ph, pw = c.patch_size
    h = CausalConv3D(3 * pt * ph * pw, (kt, 3, 3), dtype=c.dtype,
                     impl=c.conv_impl, name='conv_out')(h, first_chunk)
    if (pt, ph, pw) != (1, 1, 1):
      h = unpatchify(h, c, first_chunk)
    return h


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
