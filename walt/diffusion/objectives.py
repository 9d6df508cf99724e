"""The W.A.L.T training objective: v-prediction, unweighted MSE, t uniform,
self-conditioning, condition dropout (for classifier-free guidance) and
frame conditioning through the masked-latent channels.
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

  @classmethod
  def from_config(cls, diffusion, null_class: int) -> 'ObjectiveConfig':
    return cls(diffusion.self_cond_prob, diffusion.class_dropout,
               diffusion.frame_cond_prob, diffusion.frame_cond_frames,
               null_class)


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
  t = jax.random.randint(k_t, (b,), 0, schedule.num_steps)
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
  loss = jnp.mean(jnp.square(v - target))
  metrics['loss'] = loss
  x0_hat = sched_lib.x0_from_v(z, v, alpha, sigma)
  metrics['x0_mse'] = jnp.mean(jnp.square(x0_hat - x0))
  return loss, metrics
