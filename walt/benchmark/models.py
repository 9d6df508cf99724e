"""What the benchmark suites time: denoiser and DiT train steps at one
shape, with their analytic FLOPs.

The architecture comparisons (`peer`, `window_scaling`, `remat`) run one
step of the same objective for both models (MSE on v, Adam), so only the
network differs; `train_step` times the real jobs' steps instead.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from walt.benchmark import dit as dit_lib
from walt.models import denoiser as denoiser_lib


def denoiser_config(latent: tuple[int, int, int, int], width: int,
                    depth: int, heads: int, window: str = 'window',
                    **overrides) -> denoiser_lib.DenoiserConfig:
  """An architecture-only denoiser (no class, self- or frame-conditioning
  inputs, like the DiT): spatial windows `(1, 16, 16)` and spatiotemporal
  windows `(t, 8, 8)` (clipped to the grid), or full attention in every layer
  (`window='full'`). Layers unrolled (`scan_unroll=0`, the CPU setting)."""
  values = dict(latent_shape=tuple(latent), num_layers=depth, width=width,
                num_heads=heads, spatial_window=(16, 16),
                spatiotemporal_window=(0, 8, 8), num_classes=0,
                self_conditioning=False, frame_conditioning=False,
                scan_unroll=0)
  values.update(overrides)
  kind = FullAttentionConfig if window == 'full' else (
      denoiser_lib.DenoiserConfig)
  cfg = kind(**values)
  cfg.validate()
  return cfg


@dataclasses.dataclass(frozen=True)
class FullAttentionConfig(denoiser_lib.DenoiserConfig):
  """The denoiser with both layers of a pair attending over the whole token
  grid (the spatial layer too, across frames): the quadratic reference."""

  def windows(self):
    grid = self.token_grid
    return grid, grid


def layer_flops(cfg: denoiser_lib.DenoiserConfig) -> float:
  """Forward FLOPs per token of all transformer layers: the projections
  (q, k, v, out: 4 d^2), the MLP (2 r d^2), each multiply-add 2 FLOPs, and
  attention (q k^T and weights v: 4 L d for windows of L tokens)."""
  d, r = cfg.width, cfg.mlp_ratio
  matmul = 2 * (4 + 2 * r) * d * d
  lengths = [int(np.prod(w)) for w in cfg.windows()]
  per_pair = sum(matmul + 4 * length * d for length in lengths)
  return per_pair * cfg.num_layers / 2


def train_flops(cfg: denoiser_lib.DenoiserConfig, batch: int,
                forwards: int = 1) -> float:
  """Analytic model FLOPs of one train step: 3x the forward (forward +
  backward) per token, plus `forwards - 1` extra forwards (e.g. the
  self-conditioning pass), plus patch embedding and the final linear."""
  tokens = batch * int(np.prod(cfg.token_grid))
  p, c = cfg.patch_size, cfg.latent_shape[-1]
  io = 2 * cfg.width * (cfg.input_channels * p * p + c * p * p)
  return tokens * (layer_flops(cfg) + io) * (3 + forwards - 1)


def dit_train_flops(width: int, depth: int, tokens: int, batch: int,
                    channels: int) -> float:
  matmul = 2 * 12 * width * width + 4 * tokens * width
  return batch * tokens * (matmul * depth + 4 * width * channels) * 3


def mse_step(apply, tx):
  """A jitted `(params, opt_state, z, t) -> (params, opt_state, loss)`:
  predict v for z and take one Adam step on the MSE to z (only the
  network's cost matters)."""
  def step(params, opt_state, z, t):
    loss, grads = jax.value_and_grad(
        lambda p: jnp.mean(jnp.square(apply(p, z, t) - z)))(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss
  return jax.jit(step, donate_argnums=(0, 1))


class StepRunner:
  """A model's compiled MSE train step on a fixed random batch; calling it
  runs one step (state carried between calls)."""

  def __init__(self, model, latent: tuple[int, ...], batch: int):
    self.z = jax.random.normal(jax.random.key(0), (batch, *latent))
    self.t = jnp.linspace(0.05, 0.95, batch)
    params = model.init(jax.random.key(1), self.z, self.t)['params']
    tx = optax.adam(1e-4)
    self.state = (params, tx.init(params))
    self.step = mse_step(lambda p, z, t: model.apply({'params': p}, z, t),
                         tx)
    self.compiled = self.step.lower(*self.state, self.z, self.t).compile()

  def __call__(self):
    params, opt_state, loss = self.compiled(*self.state, self.z, self.t)
    self.state = (params, opt_state)
    return loss


def denoiser_runner(cfg, batch: int) -> StepRunner:
  return StepRunner(denoiser_lib.Denoiser(cfg), cfg.latent_shape, batch)


def dit_runner(latent, width: int, depth: int, heads: int, batch: int
               ) -> StepRunner:
  return StepRunner(dit_lib.DiT(width, depth, heads), latent, batch)
