"""The noise schedule and the v / eps / x0 parametrisations.

W.A.L.T uses 1000 discrete steps with a linear beta schedule (1e-4 -> 0.02)
rescaled to zero terminal SNR (Lin et al. 2023): sqrt(alpha_bar) is shifted so
its last value is exactly 0 and scaled so its first value is unchanged. At the
last step the noisy latent is pure noise, which is what sampling starts from.

Notation per step t: alpha_t = sqrt(alpha_bar_t), sigma_t = sqrt(1 -
alpha_bar_t), z_t = alpha_t x0 + sigma_t eps, and the model predicts
v = alpha_t eps - sigma_t x0 (v-prediction; well defined at alpha_t = 0).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


def linear_betas(num_steps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02) -> np.ndarray:
  """The DDPM linear schedule, scaled to `num_steps` like DDPM's 1000."""
  return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)


def rescale_zero_terminal_snr(alpha_bar: np.ndarray) -> np.ndarray:
  """Shift and scale sqrt(alpha_bar) so the last value is 0 and the first is
  kept (Lin et al. 2023, Algorithm 1); returns the new alpha_bar."""
  s = np.sqrt(alpha_bar)
  first, last = s[0], s[-1]
  s = (s - last) * first / (first - last)
  return s ** 2


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Per-step alpha_bar (float64 on the host; `alpha`/`sigma` cast to f32)."""
  alpha_bar: np.ndarray  # [num_steps], decreasing, last = 0 with zero SNR

  @classmethod
  def create(cls, num_steps: int = 1000, beta_start: float = 1e-4,
             beta_end: float = 0.02, zero_terminal_snr: bool = True
             ) -> 'Schedule':
    alpha_bar = np.cumprod(1.0 - linear_betas(num_steps, beta_start, beta_end))
    if zero_terminal_snr:
      alpha_bar = rescale_zero_terminal_snr(alpha_bar)
    return cls(alpha_bar)

  @classmethod
  def from_config(cls, c) -> 'Schedule':
    return cls.create(c.num_steps, c.beta_start, c.beta_end,
                      c.zero_terminal_snr)

  @property
  def num_steps(self) -> int:
    return len(self.alpha_bar)

  def snr(self) -> np.ndarray:
    with np.errstate(divide='ignore'):
      return self.alpha_bar / (1.0 - self.alpha_bar)

  def alpha_sigma(self, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(alpha_t, sigma_t) for integer steps `t` (any shape); t = -1 is the
    clean end point (alpha 1, sigma 0)."""
    table = jnp.asarray(np.concatenate([self.alpha_bar, [1.0]]), jnp.float32)
    ab = table[jnp.where(t < 0, self.num_steps, t)]
    return jnp.sqrt(ab), jnp.sqrt(jnp.maximum(1.0 - ab, 0.0))

  def time_input(self, t: jax.Array) -> jax.Array:
    """What the network sees of step t: t / num_steps in [0, 1)."""
    return t.astype(jnp.float32) / self.num_steps


def _bcast(a: jax.Array, like: jax.Array) -> jax.Array:
  return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))


def add_noise(x0, eps, alpha, sigma):
  """z_t = alpha x0 + sigma eps; alpha/sigma `[b]` broadcast over the rest."""
  return _bcast(alpha, x0) * x0 + _bcast(sigma, x0) * eps


def v_target(x0, eps, alpha, sigma):
  return _bcast(alpha, x0) * eps - _bcast(sigma, x0) * x0


def x0_from_v(z, v, alpha, sigma):
  return _bcast(alpha, z) * z - _bcast(sigma, z) * v


def eps_from_v(z, v, alpha, sigma):
  return _bcast(sigma, z) * z + _bcast(alpha, z) * v


def v_from_eps(z, eps, alpha, sigma):
  """Needs sigma > 0 (x0 = (z - sigma eps) / alpha is undefined otherwise)."""
  x0 = (z - _bcast(sigma, z) * eps) / _bcast(alpha, z)
  return v_target(x0, eps, alpha, sigma)


def v_from_x0(z, x0, alpha, sigma):
  """Needs sigma > 0 (eps = (z - alpha x0) / sigma)."""
  eps = (z - _bcast(alpha, z) * x0) / _bcast(sigma, z)
  return v_target(x0, eps, alpha, sigma)
