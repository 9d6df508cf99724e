"""The W.A.L.T training objective: v-prediction, unweighted MSE, t uniform,
self-conditioning, condition dropout (for classifier-free guidance) and
frame conditioning through the masked-latent channels.

Two options for short (CPU) budgets, off in the paper configs:
`t_sampling='logit_normal'` draws t/T from a logit-normal (mean, std) instead
of uniformly (Esser et al. 2024), and `loss_weighting='min_snr'` weights each
example by min(SNR, gamma) / (SNR + 1), the Min-SNR-gamma weight for
v-prediction (Hang et al. 2023).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from walt.diffusion import schedule as sched_lib

# apply(params, z, t_input, labels, self_cond, cond_latent, cond_mask,
#       is_image) -> v
Apply = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  self_cond_prob: float = 0.9
  class_dropout: float = 0.1  # labels -> null class (guidance)
  frame_cond_prob: float = 0.0  # give the first latent frames clean
  frame_cond_frames: int = 2  # 2 latent frames = 5 pixel frames
  null_class: int = 0  # = num_classes of the model
  t_sampling: str = 'uniform'  # or 'logit_normal'
  t_logit_mean: float = 0.0
  t_logit_std: float = 1.0
  loss_weighting: str = 'none'  # or 'min_snr'
  min_snr_gamma: float = 5.0

  @classmethod
  def from_config(cls, diffusion, null_class: int) -> 'ObjectiveConfig':
    c = cls(diffusion.self_cond_prob, diffusion.class_dropout,
            diffusion.frame_cond_prob, diffusion.frame_cond_frames,
            null_class, diffusion.get('t_sampling', 'uniform'),
            diffusion.get('t_logit_mean', 0.0),
            diffusion.get('t_logit_std', 1.0),
            diffusion.get('loss_weighting', 'none'),
            diffusion.get('min_snr_gamma', 5.0))
    c.validate()
    return c

  def validate(self) -> None:
    if self.t_sampling not in T_SAMPLINGS:
      raise ValueError(f'diffusion.t_sampling={self.t_sampling!r}: one of '
                       f'{T_SAMPLINGS}')
    if self.loss_weighting not in LOSS_WEIGHTINGS:
      raise ValueError(f'diffusion.loss_weighting={self.loss_weighting!r}: '
                       f'one of {LOSS_WEIGHTINGS}')
    if self.t_logit_std <= 0 or self.min_snr_gamma <= 0:
      raise ValueError('diffusion.t_logit_std and min_snr_gamma must be > 0')


T_SAMPLINGS = ('uniform', 'logit_normal')
LOSS_WEIGHTINGS = ('none', 'min_snr')


def sample_steps(rng: jax.Array, batch: int, num_steps: int,
                 c: ObjectiveConfig) -> jax.Array:
  """Training steps t `[batch]` in [0, num_steps)."""
  if c.t_sampling == 'uniform':
    return jax.random.randint(rng, (batch,), 0, num_steps)
  u = jax.nn.sigmoid(c.t_logit_mean
                     + c.t_logit_std * jax.random.normal(rng, (batch,)))
  return jnp.clip(jnp.floor(u * num_steps).astype(jnp.int32), 0,
                  num_steps - 1)


def loss_weight(alpha: jax.Array, sigma: jax.Array, c: ObjectiveConfig
                ) -> jax.Array:
  """Per-example weight `[b]` of the v-MSE (1 for the paper's loss)."""
  if c.loss_weighting == 'none':
    return jnp.ones_like(alpha)
  snr = jnp.square(alpha) / jnp.maximum(jnp.square(sigma), 1e-12)
  return jnp.minimum(snr, c.min_snr_gamma) / (snr + 1.0)


def frame_condition(x0: jax.Array, given: jax.Array, num_frames: int
                    ) -> tuple[jax.Array, jax.Array]:
  """(cond_latent, cond_mask `[b, t]`): the first `num_frames` latent frames
  of samples where `given` `[b]` is true."""
  t = x0.shape[1]
  first = jnp.arange(t)[None] < num_frames
  mask = jnp.logical_and(first, given[:, None]).astype(x0.dtype)
  return x0 * mask[:, :, None, None, None], mask


def diffusion_loss(apply: Apply, params, rng: jax.Array,
                   schedule: sched_lib.Schedule, c: ObjectiveConfig,
                   x0: jax.Array, labels: jax.Array | None,
                   is_image: jax.Array) -> tuple[jax.Array, dict]:
  """MSE between predicted and true v.

  x0: clean normalised latents `[b, t, h, w, c]`; labels int `[b, t]` (per
  frame) or None; is_image bool `[b]`.
  """
  b = x0.shape[0]
  k_t, k_eps, k_sc, k_drop, k_fc = jax.random.split(rng, 5)
  t = sample_steps(k_t, b, schedule.num_steps, c)
  eps = jax.random.normal(k_eps, x0.shape, x0.dtype)
  alpha, sigma = schedule.alpha_sigma(t)
  z = sched_lib.add_noise(x0, eps, alpha, sigma)
  if labels is not None and c.class_dropout > 0:
    drop = jax.random.uniform(k_drop, (b,)) < c.class_dropout
    labels = jnp.where(drop[:, None], c.null_class, labels)
  cond_latent = cond_mask = None
  if c.frame_cond_prob > 0:
    given = jnp.logical_and(
        jax.random.uniform(k_fc, (b,)) < c.frame_cond_prob, ~is_image)
    cond_latent, cond_mask = frame_condition(x0, given, c.frame_cond_frames)
  t_in = schedule.time_input(t)

  def predict(self_cond):
    return apply(params, z, t_in, labels, self_cond, cond_latent, cond_mask,
                 is_image)

  metrics = {}
  self_cond = None
  if c.self_cond_prob > 0:
    # The model's own x0 estimate (no gradient), given with probability p.
    v0 = jax.lax.stop_gradient(predict(jnp.zeros_like(x0)))
    use = jax.random.uniform(k_sc, (b,)) < c.self_cond_prob
    est = sched_lib.x0_from_v(z, v0, alpha, sigma)
    self_cond = jnp.where(use[:, None, None, None, None], est, 0.0)
    metrics['self_cond_fraction'] = jnp.mean(use.astype(jnp.float32))
  v = predict(self_cond if self_cond is not None else jnp.zeros_like(x0))
  target = sched_lib.v_target(x0, eps, alpha, sigma)
  per_example = jnp.mean(jnp.square(v - target), axis=tuple(range(1, v.ndim)))
  loss = jnp.mean(loss_weight(alpha, sigma, c) * per_example)
  metrics['loss'] = loss
  metrics['v_mse'] = jnp.mean(per_example)
  x0_hat = sched_lib.x0_from_v(z, v, alpha, sigma)
  metrics['x0_mse'] = jnp.mean(jnp.square(x0_hat - x0))
  return loss, metrics
