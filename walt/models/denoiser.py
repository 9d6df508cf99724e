"""The W.A.L.T denoiser: a window-attention transformer on latent videos.

    tokens = patchify(concat[z_t, x0_self_cond, cond_latent * mask, mask])
           + spatial position + temporal position (images: temporal index 0)
    repeat num_layers / 2 times (one `nn.scan` step per pair):
      spatial-window layer        (window 1 x h x w: one latent frame)
      spatiotemporal-window layer (window (1+t) x 8 x 8)
    v = linear(modulated LayerNorm(tokens)) -> unpatchify

Each layer: LayerNorm -> modulate -> window attention -> gated residual ->
LayerNorm -> modulate -> MLP (ratio 4, GELU) -> gated residual. The 6
modulation vectors come from the condition (timestep + class, per frame, so
packed images each carry their own class) via AdaLN-LoRA (one shared
projection plus a rank-r update per layer) or a separate AdaLN per layer. All
modulation outputs start at zero, so every layer starts as the identity and
the model's first output is 0.

Cascade stages add inputs (DESIGN.md section 5): a super-resolution stage
(`low_res_channels`) takes the low-resolution stage's latent, upsampled by a
learned conv + depth-to-space (`sr_factor`) and concatenated on channels,
and its noise-augmentation level `t_sr`, embedded like `t` and added to the
condition; a text model (`text_dim`) projects text token embeddings to the
width, and each layer gains a cross-attention branch (its own q, k, v, o;
keys and values = the window's tokens followed by the text tokens; output
projection zero-initialised), in every layer (`text_layers='all'`, which
matches the paper's parameter counts: 4 d^2 per layer) or in the spatial
layers only (`'spatial'`: for joint training with image stacks whose
frames carry different captions).

Sizes (layers, width, heads; parameter counts of the paper): see `SIZES`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from walt.models import layers as layers_lib
from walt.models.attention import partitioned
from walt.models.attention import resolve_window
from walt.models import attention as attention_lib
from walt.models.attention import WindowAttention

# name -> (layers, width, heads). Paper: L 313M, XL 460M (AdaLN-LoRA r=2),
# ImageNet L 460M (L with separate AdaLN per layer).
SIZES = {
    'S': (12, 384, 6),
    'B': (12, 768, 12),
    'L': (24, 1024, 16),
    'XL': (28, 1152, 16),
}

REMAT_POLICIES = {
    'none': None,
    'full': jax.checkpoint_policies.nothing_saveable,
    'dots': jax.checkpoint_policies.checkpoint_dots,
    'dots_no_batch': jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}

ACT = ('act_batch', 'act_time', 'act_height', 'act_width', 'act_embed')


@dataclasses.dataclass(frozen=True)
class DenoiserConfig:
  """Architecture. `latent_shape` = the largest latent `(t, h, w, c)`."""
  latent_shape: tuple[int, int, int, int]
  num_layers: int = 24
  width: int = 1024
  num_heads: int = 16
  patch_size: int = 1
  mlp_ratio: int = 4
  spatial_window: tuple[int, int] = (0, 0)  # 0: the whole latent frame
  spatiotemporal_window: tuple[int, int, int] = (0, 8, 8)  # 0: whole axis
  adaln: str = 'lora'  # 'lora' (AdaLN-LoRA) or 'separate' (per layer)
  lora_rank: int = 2
  num_classes: int = 0  # 0: no class input; class `num_classes` = null
  self_conditioning: bool = True
  frame_conditioning: bool = True  # masked latent + mask input channels
  time_embed_dim: int = 256
  # Learned position tables start as sin-cos features ('sincos') or as
  # N(0, 0.02) ('normal', what earlier checkpoints used).
  position_init: str = 'sincos'
  scan: bool = True
  # Layer pairs per scan iteration: params stay stacked (same checkpoints)
  # while XLA sees straight-line code; 0 = all of them.
  scan_unroll: int = 1
  remat: str = 'none'
  dtype: str = 'float32'
  attention: str = 'xla'  # attention.ATTENTION_KERNELS
  # Super-resolution stage: channels of the low-resolution latent (0: not an
  # SR stage) and its spatial upsampling factor to this latent grid.
  low_res_channels: int = 0
  sr_factor: int = 2
  # Text model: width of the text token embeddings (0: no text) and the
  # layers with a cross-attention branch ('all' or 'spatial').
  text_dim: int = 0
  text_layers: str = 'all'
  # A 3x3 convolution over each output latent frame, added to the
  # unpatchified prediction (zero-initialised: the model starts as without
  # it). U-ViT's fix for patch-boundary artefacts: the final linear layer
  # predicts each token's p x p latent positions alone, and neighbouring
  # tokens' edges need not agree.
  output_conv: bool = False

  @classmethod
  def from_config(cls, model, latent_shape: Sequence[int]) -> 'DenoiserConfig':
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in model.to_dict().items() if k in fields}
    size = model.get('size')
    if size:
      if size not in SIZES:
        raise ValueError(f'model.size={size!r}: one of {sorted(SIZES)}')
      # The size fills what is left at 0; explicit values win.
      for key, value in zip(('num_layers', 'width', 'num_heads'),
                            SIZES[size]):
        if not values.get(key):
          values[key] = value
    for key in ('num_layers', 'width', 'num_heads'):
      if values.get(key, 1) <= 0:
        raise ValueError(f'model.{key}={values[key]}: set it or model.size')
    for key in ('spatial_window', 'spatiotemporal_window'):
      values[key] = tuple(values[key])
    return cls(latent_shape=tuple(latent_shape), **values)

  @property
  def token_grid(self) -> tuple[int, int, int]:
    t, h, w, _ = self.latent_shape
    return t, h // self.patch_size, w // self.patch_size

  @property
  def input_channels(self) -> int:
    c = self.latent_shape[-1]
    return (c + c * self.self_conditioning
            + (c + 1) * self.frame_conditioning + self.low_res_channels)

  def windows(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(spatial, spatiotemporal) windows resolved on the token grid."""
    grid = self.token_grid
    return (resolve_window((1, *self.spatial_window), grid),
            resolve_window(self.spatiotemporal_window, grid))

  def validate(self) -> None:
    t, h, w, _ = self.latent_shape
    p = self.patch_size
    if h % p or w % p:
      raise ValueError(f'patch size {p} does not divide the latent grid '
                       f'{h}x{w}')
    if self.num_layers % 2:
      raise ValueError(f'num_layers={self.num_layers}: layers come in '
                       'spatial/spatiotemporal pairs, use an even number')
    if self.width % self.num_heads:
      raise ValueError(f'width {self.width} is not divisible by '
                       f'{self.num_heads} heads')
    if self.position_init not in ('sincos', 'normal'):
      raise ValueError(f'position_init={self.position_init!r}: sincos or '
                       'normal')
    if self.adaln not in ('lora', 'separate'):
      raise ValueError(f'adaln={self.adaln!r}: lora or separate')
    if self.remat not in REMAT_POLICIES:
      raise ValueError(f'remat={self.remat!r}: one of {sorted(REMAT_POLICIES)}')
    if self.remat != 'none' and self.scan and self.scan_unroll != 1:
      # Measured (walt.benchmark --suite=remat): unrolled, XLA keeps every
      # activation anyway (peak at 2x depth 1.95x with remat=full, against
      # 1.04x with a rolled scan).
      raise ValueError(f'remat={self.remat!r} needs model.scan_unroll=1 '
                       f'(got {self.scan_unroll}): an unrolled scan lets XLA '
                       'keep the activations remat would recompute')
    if self.scan_unroll < 0:
      raise ValueError(f'scan_unroll={self.scan_unroll}: >= 0 (0 = all)')
    if self.low_res_channels and (h % self.sr_factor or w % self.sr_factor):
      raise ValueError(f'sr_factor={self.sr_factor} does not divide the '
                       f'latent grid {h}x{w}')
    if self.text_layers not in ('all', 'spatial'):
      raise ValueError(f'text_layers={self.text_layers!r}: all or spatial')
    if self.attention not in attention_lib.ATTENTION_KERNELS:
      raise ValueError(f'attention={self.attention!r}: one of '
                       f'{attention_lib.ATTENTION_KERNELS}')
    self.windows()  # raises if a window does not divide the grid


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0
                       ) -> jax.Array:
  """Sinusoidal features of `t` in [0, 1] (scaled to [0, 1000]) -> `[b, dim]`."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / half)
  args = (t.astype(jnp.float32) * 1000.0)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def sincos_1d(positions: int, dim: int, max_period: float = 10_000.0
              ) -> jax.Array:
  """Sinusoidal features `[positions, dim]` (half cos, half sin)."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half) / half)
  args = jnp.arange(positions, dtype=jnp.float32)[:, None] * freqs[None]
  out = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  return jnp.pad(out, ((0, 0), (0, dim - 2 * half)))


def sincos_init(kind: str):
  """Initialiser of the learned position tables: fixed 2D (rows in half the
  channels, columns in the other half) or 1D sin-cos features, so tokens
  know where they are from the first step (a table drawn at std 0.02 is
  ~50x smaller than the token features and takes thousands of steps to
  carry positions)."""
  def init(key, shape, dtype=jnp.float32):
    del key
    if kind == 'time':
      return sincos_1d(shape[0], shape[1]).astype(dtype)
    h, w, d = shape
    rows = sincos_1d(h, d // 2)[:, None].repeat(w, axis=1)
    cols = sincos_1d(w, d - d // 2)[None].repeat(h, axis=0)
    return jnp.concatenate([rows, cols], axis=-1).astype(dtype)
  return init


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
  """x `[b, t, h, w, d]`, shift/scale per frame `[b, t, d]`."""
  return x * (1.0 + scale[:, :, None, None]) + shift[:, :, None, None]


def _dense(features: int, axes, name: str, dtype, zero: bool = False):
  init = nn.initializers.zeros if zero else nn.initializers.xavier_uniform()
  return nn.Dense(features, dtype=dtype, name=name,
                  kernel_init=partitioned(init, axes),
                  bias_init=partitioned(nn.initializers.zeros, axes[1:]))


class TransformerLayer(nn.Module):
  """One window-attention layer with its modulation (see module doc)."""
  config: DenoiserConfig
  window: tuple[int, int, int]

  @nn.compact
  def __call__(self, x, cond, shared_mod, is_image, context=None,
               context_mask=None):
    """x `[b, t, h, w, d]`; cond `[b, t, d]` (after SiLU); shared_mod
    `[b, t, 6d]` (AdaLN-LoRA's shared part, zeros for separate AdaLN);
    is_image bool `[b]`; context `[b, n, d]` (text tokens) and context_mask
    bool `[b, n]`, or None."""
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    d = cfg.width
    if cfg.adaln == 'lora':
      down = _dense(cfg.lora_rank, ('embed', None), 'lora_down', dtype)(cond)
      mod = shared_mod + _dense(6 * d, (None, 'embed'), 'lora_up', dtype,
                                zero=True)(down)
    else:
      mod = _dense(6 * d, ('embed', 'mlp'), 'adaln', dtype, zero=True)(cond)
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
    norm = lambda name: nn.LayerNorm(use_scale=False, use_bias=False,
                                     dtype=dtype, name=name)
    h = modulate(norm('attn_norm')(x), shift1, scale1)
    h = WindowAttention(cfg.num_heads, self.window, cfg.token_grid, dtype,
                        cfg.attention, name='attention')(h, is_image)
    x = x + gate1[:, :, None, None] * h
    if context is not None:
      h = nn.LayerNorm(dtype=dtype, name='cross_norm')(x)
      x = x + WindowAttention(cfg.num_heads, self.window, cfg.token_grid,
                              dtype, cfg.attention, zero_out=True,
                              name='cross_attention')(
                                  h, is_image, context, context_mask)
    x = nn.with_logical_constraint(x, ACT)
    h = modulate(norm('mlp_norm')(x), shift2, scale2)
    h = _dense(cfg.mlp_ratio * d, ('embed', 'mlp'), 'mlp_in', dtype)(h)
    h = nn.with_logical_constraint(
        nn.gelu(h), ('act_batch', 'act_time', 'act_height', 'act_width',
                     'act_mlp'))
    h = _dense(d, ('mlp', 'embed'), 'mlp_out', dtype)(h)
    x = x + gate2[:, :, None, None] * h
    return nn.with_logical_constraint(x, ACT)


class LayerPair(nn.Module):
  """A spatial-window layer then a spatiotemporal-window layer (the scanned
  unit, so depth does not multiply compile time). Text context goes to
  both, or to the spatial layer only (`text_layers='spatial'`)."""
  config: DenoiserConfig

  @nn.compact
  def __call__(self, x, cond, shared_mod, is_image, context, context_mask):
    spatial, spatiotemporal = self.config.windows()
    x = TransformerLayer(self.config, spatial, name='spatial')(
        x, cond, shared_mod, is_image, context, context_mask)
    if self.config.text_layers == 'spatial':
      context = context_mask = None
    x = TransformerLayer(self.config, spatiotemporal, name='spatiotemporal')(
        x, cond, shared_mod, is_image, context, context_mask)
    return x, None


class Denoiser(nn.Module):
  """v-prediction network. See the module docstring."""
  config: DenoiserConfig

  @nn.compact
  def __call__(self, z: jax.Array, t: jax.Array, *,
               labels: jax.Array | None = None,
               self_cond: jax.Array | None = None,
               cond_latent: jax.Array | None = None,
               cond_mask: jax.Array | None = None,
               is_image: jax.Array | None = None,
               low_res: jax.Array | None = None,
               t_sr: jax.Array | None = None,
               text: jax.Array | None = None,
               text_mask: jax.Array | None = None) -> jax.Array:
    """Predicts v.

    Args:
      z: noisy latent `[b, t, h, w, c]` (t <= the configured latent frames).
      t: diffusion time in [0, 1) `[b]` (step / num_steps).
      labels: int `[b]` or per frame `[b, t]`; `num_classes` = null class.
      self_cond: previous x0 estimate `[b, t, h, w, c]` (None: zeros).
      cond_latent: clean conditioning latents `[b, t, h, w, c]` (None: zeros);
        only positions where `cond_mask` is 1 are seen.
      cond_mask: `[b, t]` or `[b, t, h, w, 1]`, 1 = given (None: zeros).
      is_image: bool `[b]`: the sample is a stack of independent images.
      low_res: SR stages: the low-resolution latent `[b, t, h / f, w / f,
        low_res_channels]` (None: zeros).
      t_sr: SR stages: its noise-augmentation level in [0, 1) `[b]` (None: 0).
      text: text models: token embeddings `[b, n, text_dim]` with text_mask
        bool `[b, n]` (False = padding; None or all False: no text).

    Returns:
      v `[b, t, h, w, c]`.
    """
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    b, frames, height, width, c = z.shape
    p, d = cfg.patch_size, cfg.width
    if frames > cfg.latent_shape[0] or (height, width, c) != tuple(
        cfg.latent_shape[1:]):
      raise ValueError(f'latent {z.shape[1:]} does not fit the configured '
                       f'{cfg.latent_shape}')
    if is_image is None:
      is_image = jnp.zeros((b,), bool)
    parts = [z]
    if cfg.self_conditioning:
      parts.append(jnp.zeros_like(z) if self_cond is None else self_cond)
    if cfg.frame_conditioning:
      mask = (jnp.zeros((b, frames), z.dtype) if cond_mask is None
              else cond_mask.astype(z.dtype))
      if mask.ndim == 2:
        mask = jnp.broadcast_to(mask[:, :, None, None, None],
                                (b, frames, height, width, 1))
      given = jnp.zeros_like(z) if cond_latent is None else cond_latent
      parts += [given * mask, mask]
    if cfg.low_res_channels:
      f = cfg.sr_factor
      if low_res is None:
        low_res = jnp.zeros((b, frames, height // f, width // f,
                             cfg.low_res_channels), z.dtype)
      up = nn.Conv(cfg.low_res_channels * f * f, (1, 3, 3), dtype=dtype,
                   name='low_res_upsample')(low_res.astype(dtype))
      parts.append(layers_lib.depth_to_space(up, 1, f, f).astype(z.dtype))
    x = jnp.concatenate(parts, axis=-1).astype(dtype)

    # Patchify per frame, project, add positions.
    hp, wp = height // p, width // p
    x = x.reshape(b, frames, hp, p, wp, p, -1).transpose(0, 1, 2, 4, 3, 5, 6)
    x = x.reshape(b, frames, hp, wp, p * p * x.shape[-1])
    x = _dense(d, ('channels', 'embed'), 'patch_embed', dtype)(x)
    init = nn.initializers.normal(0.02)
    if cfg.position_init == 'sincos':
      spatial_init, temporal_init = sincos_init('space'), sincos_init('time')
    else:
      spatial_init = temporal_init = init
    spatial_pos = self.param('spatial_position',
                             partitioned(spatial_init, (None, None, 'embed')),
                             (hp, wp, d))
    temporal_pos = self.param('temporal_position',
                              partitioned(temporal_init, (None, 'embed')),
                              (cfg.latent_shape[0], d))
    time_index = jnp.where(is_image[:, None], 0, jnp.arange(frames)[None])
    x = (x + spatial_pos[None, None].astype(dtype)
         + temporal_pos[time_index][:, :, None, None].astype(dtype))
    x = nn.with_logical_constraint(x, ACT)

    # Condition per frame: timestep (+ class).
    temb = timestep_embedding(t, cfg.time_embed_dim)
    temb = _dense(d, (None, 'embed'), 'time_mlp_1', dtype)(temb)
    temb = _dense(d, ('mlp', 'embed'), 'time_mlp_2', dtype)(nn.silu(temb))
    if cfg.low_res_channels:
      semb = timestep_embedding(jnp.zeros((b,)) if t_sr is None else t_sr,
                                cfg.time_embed_dim)
      semb = _dense(d, (None, 'embed'), 'sr_time_mlp_1', dtype)(semb)
      temb = temb + _dense(d, ('mlp', 'embed'), 'sr_time_mlp_2', dtype)(
          nn.silu(semb))
    cond = jnp.broadcast_to(temb[:, None], (b, frames, d))
    if cfg.num_classes:
      if labels is None:
        labels = jnp.full((b,), cfg.num_classes, jnp.int32)
      if labels.ndim == 1:
        labels = jnp.broadcast_to(labels[:, None], (b, frames))
      cond = cond + nn.Embed(
          cfg.num_classes + 1, d, name='class_embed',
          embedding_init=partitioned(init, ('classes', 'embed')))(labels)
    cond = nn.silu(cond)
    if cfg.adaln == 'lora':
      shared_mod = _dense(6 * d, ('embed', 'mlp'), 'adaln_shared', dtype,
                          zero=True)(cond)
    else:
      shared_mod = jnp.zeros((b, frames, 6 * d), dtype)

    context = context_mask = None
    if cfg.text_dim:
      if text is None:
        text = jnp.zeros((b, 1, cfg.text_dim), dtype)
        text_mask = jnp.zeros((b, 1), bool)
      context = _dense(d, ('channels', 'embed'), 'text_proj', dtype)(
          text.astype(dtype))
      context = nn.LayerNorm(dtype=dtype, name='text_norm')(context)
      context_mask = (jnp.ones(text.shape[:2], bool) if text_mask is None
                      else text_mask.astype(bool))

    pair = LayerPair
    if cfg.remat != 'none':
      pair = nn.remat(pair, policy=REMAT_POLICIES[cfg.remat],
                      prevent_cse=not cfg.scan)
    if cfg.scan:
      scanned = nn.scan(
          pair, variable_axes={'params': 0}, split_rngs={'params': True},
          in_axes=(nn.broadcast,) * 5,
          length=cfg.num_layers // 2,
          unroll=cfg.scan_unroll or cfg.num_layers // 2,
          metadata_params={nn.PARTITION_NAME: 'layers'})
      x, _ = scanned(cfg, name='layers')(x, cond, shared_mod, is_image,
                                         context, context_mask)
    else:
      for i in range(cfg.num_layers // 2):
        x, _ = pair(cfg, name=f'layers_{i}')(x, cond, shared_mod, is_image,
                                             context, context_mask)

    final = _dense(2 * d, ('embed', 'mlp'), 'final_adaln', dtype,
                   zero=True)(cond)
    shift, scale = jnp.split(final, 2, axis=-1)
    x = modulate(nn.LayerNorm(use_scale=False, use_bias=False, dtype=dtype,
                              name='final_norm')(x), shift, scale)
    x = _dense(p * p * c, ('embed', 'channels'), 'final_linear', dtype,
               zero=True)(x)
    x = x.reshape(b, frames, hp, wp, p, p, c).transpose(0, 1, 2, 4, 3, 5, 6)
    x = x.reshape(b, frames, height, width, c)
    if cfg.output_conv:
      x = x + nn.Conv(c, (1, 3, 3), dtype=dtype, name='output_conv',
                      kernel_init=nn.initializers.zeros)(x)
    return x.astype(jnp.float32)


def count_params(params: Any) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))
