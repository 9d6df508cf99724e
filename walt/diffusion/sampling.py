"""Samplers: DDIM (trailing spacing, eta) and DPM-Solver++(2M), with
self-conditioning and classifier-free guidance per condition, each one
jitted loop (`lax.fori_loop`).

`denoise(z, t, x0_self_cond, variants) -> v [k, b, ...]` is the model: `z`
the noisy latent `[b, ...]`, `t` int32 steps `[b]`, `x0_self_cond` the
previous step's x0 estimate (zeros at the first step), `variants` a tuple of
k (class given, frames given) pairs: the model runs once on k x b samples
and returns one v per variant (guidance needs the conditional and the
unconditional passes; see `Guidance`). Guided v = v_u + w (v_c - v_u): w = 1
is the plain conditional model, w = 0 the unconditional one.

`Reconstruction` conditions on known latent frames without the model's
frame channels (reconstruction guidance, Ho et al. 2022, "Video Diffusion
Models", eq. 7): the x0 estimate is corrected by
-(w_r alpha_t / 2) grad_z ||x_known - x0_known(z)||^2 and the known frames
of x0 are replaced by the given ones.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from walt.diffusion import schedule as sched_lib

Denoise = Callable[[jax.Array, jax.Array, jax.Array, tuple], jax.Array]
SAMPLERS = ('ddim', 'dpmpp')


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


Variant = tuple[bool, bool]  # (class given, frames given)
ALL, FRAMES_ONLY, NONE_GIVEN = (True, True), (False, True), (False, False)
CLASS_ONLY = (True, False)


@dataclasses.dataclass(frozen=True)
class Guidance:
  """Classifier-free guidance scales per condition (1 = no guidance).

  With frame conditioning and two different scales the guided v is
  v(-, -) + w_frames (v(-, f) - v(-, -)) + w_class (v(c, f) - v(-, f))
  (c: class given, f: frames given); with equal scales it reduces to
  v(-, -) + w (v(c, f) - v(-, -)), so one scale keeps the two-pass form.
  """
  class_scale: float = 1.0
  frames_scale: float = 1.0

  @classmethod
  def of(cls, guidance: 'float | Guidance') -> 'Guidance':
    if isinstance(guidance, Guidance):
      return guidance
    return cls(float(guidance), float(guidance))

  def variants(self, frames: bool) -> tuple[Variant, ...]:
    """The model passes needed, the fully conditional one first."""
    wc, wf = self.class_scale, self.frames_scale
    if not frames or wf == 1.0 and wc == 1.0:
      return (ALL,) if wc == 1.0 else (ALL, NONE_GIVEN)
    if wf == 1.0:
      return (ALL, FRAMES_ONLY)
    if wc == 1.0:
      return (ALL, CLASS_ONLY)
    if wc == wf:
      return (ALL, NONE_GIVEN)
    return (ALL, FRAMES_ONLY, NONE_GIVEN)

  def combine(self, vs: Sequence[jax.Array], frames: bool) -> jax.Array:
    """Guided v from the passes of `variants(frames)`, in that order."""
    variants = self.variants(frames)
    if len(variants) == 1:
      return vs[0]
    if len(variants) == 2:
      w = self.frames_scale if variants[1] == CLASS_ONLY else (
          self.class_scale)
      return vs[1] + w * (vs[0] - vs[1])
    v_all, v_frames, v_none = vs
    return (v_none + self.frames_scale * (v_frames - v_none)
            + self.class_scale * (v_all - v_frames))


def guided_v(denoise: Denoise, z, t, x0_sc, guidance: 'float | Guidance',
             frames: bool = False) -> jax.Array:
  """The guided v: all passes `guidance` needs in one call of `denoise`
  (one forward of k x b samples)."""
  g = Guidance.of(guidance)
  return g.combine(denoise(z, t, x0_sc, g.variants(frames)), frames)


class Reconstruction(NamedTuple):
  """Reconstruction guidance: `weight` w_r, known normalised `latent`
  `[b, t, h, w, c]` where `mask` `[b, t]` is 1."""
  weight: float
  latent: jax.Array
  mask: jax.Array


def reconstruction_guided_v(v_fn: Callable[[jax.Array], jax.Array],
                            z: jax.Array, alpha: jax.Array, sigma: jax.Array,
                            rec: Reconstruction) -> jax.Array:
  """v of the corrected x0 estimate (see the module doc); `v_fn(z) -> v` is
  the (guided) model at this step, differentiated once through z."""
  b = lambda a: sched_lib._bcast(a, z)  # pylint: disable=protected-access
  x0_of = lambda z: sched_lib.x0_from_v(z, v_fn(z), alpha, sigma)
  x0, vjp = jax.vjp(x0_of, z)
  m = rec.mask.astype(z.dtype)[:, :, None, None, None]
  (grad,) = vjp(2.0 * m * (x0 - rec.latent))
  x0 = x0 - rec.weight * b(alpha) / 2.0 * grad
  x0 = m * rec.latent + (1.0 - m) * x0
  return sched_lib.v_from_x0(z, x0, alpha, sigma)


def _model_v(denoise, schedule, guidance, frames, rec):
  """`v(z, t, x0_sc)`: guided, and reconstruction-guided when `rec`."""
  def v(z, t, x0_sc):
    fn = lambda z: guided_v(denoise, z, t, x0_sc, guidance, frames)
    if rec is None:
      return fn(z)
    alpha, sigma = schedule.alpha_sigma(t)
    return reconstruction_guided_v(fn, z, alpha, sigma, rec)
  return v


def _steps(schedule: sched_lib.Schedule, num_steps: int, batch: int):
  """`at(i) -> (t, alpha, sigma, alpha_next, sigma_next)` for loop index
  i: the step visited (int32 `[batch]`) and the schedule there and at the
  next visited step (t = -1, the clean end point, after the last)."""
  ts = jnp.asarray(trailing_timesteps(schedule.num_steps, num_steps))
  nexts = jnp.concatenate([ts[1:], jnp.asarray([-1], jnp.int32)])

  def at(i):
    t = jnp.full((batch,), ts[i], jnp.int32)
    alpha, sigma = schedule.alpha_sigma(t)
    alpha_n, sigma_n = schedule.alpha_sigma(
        jnp.full((batch,), nexts[i], jnp.int32))
    return t, alpha, sigma, alpha_n, sigma_n
  return at


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
                eta: float = 0.0, guidance: 'float | Guidance' = 1.0,
                self_condition: bool = True, frames: bool = False,
                reconstruction: Reconstruction | None = None) -> jax.Array:
  """Runs DDIM from `noise` `[b, ...]` (the latent at the last step); returns
  the final x0 `[b, ...]`. Call under `jax.jit`: the loop is a fori_loop.
  """
  at = _steps(schedule, num_steps, noise.shape[0])
  model_v = _model_v(denoise, schedule, guidance, frames, reconstruction)

  def body(i, carry):
    z, x0_sc = carry
    t, alpha, sigma, alpha_prev, sigma_prev = at(i)
    v = model_v(z, t, x0_sc if self_condition else jnp.zeros_like(z))
    step_noise = jax.random.normal(jax.random.fold_in(rng, i), z.shape,
                                   z.dtype)
    z, x0 = ddim_step(z, v, alpha, sigma, alpha_prev, sigma_prev, eta,
                      step_noise)
    return z, x0

  z, _ = jax.lax.fori_loop(0, num_steps, body, (noise, jnp.zeros_like(noise)))
  return z


def dpmpp_2m_sample(denoise: Denoise, noise: jax.Array,
                    schedule: sched_lib.Schedule, num_steps: int = 15,
                    guidance: 'float | Guidance' = 1.0,
                    self_condition: bool = True, frames: bool = False,
                    reconstruction: Reconstruction | None = None
                    ) -> jax.Array:
  """DPM-Solver++(2M) (Lu et al. 2022), deterministic, on the trailing
  steps; returns the final x0 `[b, ...]`. Call under `jax.jit`.

  In data prediction form with lambda = log(alpha / sigma) and
  h = lambda_i - lambda_{i-1}, a first-order step is
  z_i = (sigma_i / sigma_{i-1}) z_{i-1} + (alpha_i - alpha_{i-1} sigma_i /
  sigma_{i-1}) D (DDIM), which stays finite at the first step where alpha =
  0 (lambda = -inf); the second-order step replaces D by
  D + (D - D_prev) h / (2 h_prev). The first step (no previous estimate,
  h_prev infinite) and the last one (to sigma = 0, h infinite) are first
  order.
  """
  batch = noise.shape[0]
  at = _steps(schedule, num_steps, batch)
  b = lambda a: sched_lib._bcast(a, noise)  # pylint: disable=protected-access
  model_v = _model_v(denoise, schedule, guidance, frames, reconstruction)

  def lam(alpha, sigma):
    # -inf at alpha = 0, +inf at sigma = 0.
    return jnp.log(alpha) - jnp.log(sigma)

  def body(i, carry):
    z, x0_prev, h_prev = carry
    t, alpha, sigma, alpha_n, sigma_n = at(i)
    v = model_v(z, t, x0_prev if self_condition else jnp.zeros_like(z))
    x0 = sched_lib.x0_from_v(z, v, alpha, sigma)
    h = lam(alpha_n, sigma_n) - lam(alpha, sigma)
    second = jnp.logical_and(jnp.isfinite(h_prev), jnp.isfinite(h))
    ratio = jnp.where(second, h / jnp.where(second, 2.0 * h_prev, 1.0), 0.0)
    d = x0 + b(ratio) * (x0 - x0_prev)
    z = (b(sigma_n / sigma) * z
         + b(alpha_n - alpha * sigma_n / sigma) * d)
    return z, x0, h

  init = (noise, jnp.zeros_like(noise),
          jnp.full((batch,), jnp.inf, jnp.float32))
  z, _, _ = jax.lax.fori_loop(0, num_steps, body, init)
  return z


def sample(sampler: str, denoise: Denoise, noise: jax.Array, rng: jax.Array,
           schedule: sched_lib.Schedule, num_steps: int, eta: float = 0.0,
           guidance: 'float | Guidance' = 1.0, self_condition: bool = True,
           frames: bool = False, reconstruction: Reconstruction | None = None
           ) -> jax.Array:
  """`sampler` in `SAMPLERS`; DPM-Solver++ is deterministic (eta unused)."""
  if sampler == 'ddim':
    return ddim_sample(denoise, noise, rng, schedule, num_steps, eta,
                       guidance, self_condition, frames, reconstruction)
  if sampler == 'dpmpp':
    return dpmpp_2m_sample(denoise, noise, schedule, num_steps, guidance,
                           self_condition, frames, reconstruction)
  raise ValueError(f'sampler={sampler!r}: one of {SAMPLERS}')
