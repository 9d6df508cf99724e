"""DDIM sampling (trailing spacing, eta) with self-conditioning and
classifier-free guidance, as one jitted loop (`lax.fori_loop`).

`denoise(z, t, x0_self_cond, conditional) -> v` is the model: `z` the noisy
latent `[b, ...]`, `t` int32 steps `[b]`, `x0_self_cond` the previous step's
x0 estimate (zeros at the first step), `conditional` a Python bool (False:
the null condition, for guidance). Guided v = v_u + w (v_c - v_u): w = 1 is
the plain conditional model, w = 0 the unconditional one.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from walt.diffusion import schedule as sched_lib

Denoise = Callable[[jax.Array, jax.Array, jax.Array, bool], jax.Array]


def trailing_timesteps(num_train_steps: int, num_sample_steps: int
                       ) -> np.ndarray:
  """Steps visited, from the noisiest: trailing spacing starts at the last
  training step (pure noise with zero terminal SNR), e.g. 999, 979, ..., 19.
  """
  if not 1 <= num_sample_steps <= num_train_steps:
    raise ValueError(f'sampling steps {num_sample_steps} not in '
                     f'[1, {num_train_steps}]')
  ratio = num_train_steps / num_sample_steps
  return (np.round(np.arange(num_train_steps, 0, -ratio)).astype(np.int32)
          - 1)


def guided_v(denoise: Denoise, z, t, x0_sc, guidance: float):
  v_c = denoise(z, t, x0_sc, True)
  if guidance == 1.0:
    return v_c
  v_u = denoise(z, t, x0_sc, False)
  return v_u + guidance * (v_c - v_u)


def ddim_step(z, v, alpha, sigma, alpha_prev, sigma_prev, eta, noise):
  """One DDIM update z_t -> z_prev from the model's v; returns (z_prev, x0)."""
  x0 = sched_lib.x0_from_v(z, v, alpha, sigma)
  eps = sched_lib.eps_from_v(z, v, alpha, sigma)
  # Stochastic part (eta = 1: DDPM posterior variance; eta = 0: deterministic).
  ab, ab_prev = alpha ** 2, alpha_prev ** 2
  var = (sigma_prev ** 2 / jnp.maximum(sigma ** 2, 1e-12)) * (
      1.0 - ab / jnp.maximum(ab_prev, 1e-12))
  std = eta * jnp.sqrt(jnp.clip(var, 0.0, None))
  dir_coef = jnp.sqrt(jnp.clip(sigma_prev ** 2 - std ** 2, 0.0, None))
  b = lambda a: sched_lib._bcast(a, z)  # pylint: disable=protected-access
  return b(alpha_prev) * x0 + b(dir_coef) * eps + b(std) * noise, x0


def ddim_sample(denoise: Denoise, noise: jax.Array, rng: jax.Array,
                schedule: sched_lib.Schedule, num_steps: int = 50,
                eta: float = 0.0, guidance: float = 1.0,
                self_condition: bool = True) -> jax.Array:
  """Runs DDIM from `noise` `[b, ...]` (the latent at the last step); returns
  the final x0 `[b, ...]`. Call under `jax.jit`: the loop is a fori_loop.
  """
  ts = jnp.asarray(trailing_timesteps(schedule.num_steps, num_steps))
  prevs = jnp.concatenate([ts[1:], jnp.asarray([-1], jnp.int32)])
  batch = noise.shape[0]

  def body(i, carry):
    z, x0_sc = carry
    t = jnp.full((batch,), ts[i], jnp.int32)
    t_prev = jnp.full((batch,), prevs[i], jnp.int32)
    alpha, sigma = schedule.alpha_sigma(t)
    alpha_prev, sigma_prev = schedule.alpha_sigma(t_prev)
    v = guided_v(denoise, z, t, x0_sc if self_condition else
                 jnp.zeros_like(z), guidance)
    step_noise = jax.random.normal(jax.random.fold_in(rng, i), z.shape,
                                   z.dtype)
    z, x0 = ddim_step(z, v, alpha, sigma, alpha_prev, sigma_prev, eta,
                      step_noise)
    return z, x0

  z, _ = jax.lax.fori_loop(0, num_steps, body, (noise, jnp.zeros_like(noise)))
  return z
