"""The W.A.L.T training objective: v-prediction, unweighted MSE, t uniform,
self-conditioning, condition dropout (for classifier-free guidance) and
frame conditioning through the masked-latent channels.

Frame conditioning: a video example is given clean latent frames with
probability `frame_cond_prob` (the rest train the frames-dropped model that
guidance needs), in one of three modes drawn with the relative weights
`frame_cond_modes`: 'predict' gives the first `frame_cond_frames` latent
frames (2 = 5 pixel frames: frame prediction), 'image' the first latent
frame (image-to-video), 'interpolate' the first and the last (keyframes).
The loss covers the frames that are not given.

Cascade stages add `conditioning` inputs (DESIGN.md section 5): an SR
stage's low-resolution latent, noised per example to its own level t_sr ~
U(0, `sr_noise_max`) (noise-conditioning augmentation; t_sr goes to the model
beside t), and a text model's token embeddings, all masked per example with
probability `text_dropout` (classifier-free guidance on text).

Two options for short (CPU) budgets, off in the paper configs:
`t_sampling='logit_normal'` draws t/T from a logit-normal (mean, std) instead
of uniformly (Esser et al. 2024), and `loss_weighting='min_snr'` weights each
example by min(SNR, gamma) / (SNR + 1), the Min-SNR-gamma weight for
v-prediction (Hang et al. 2023). `loss_weighting='eps'` weights the v-MSE by
SNR / (SNR + 1) = alpha_t^2, which is the eps-MSE of the same prediction:
v-prediction's plain MSE weights the x0 error by SNR + 1 and so spends most of
its gradient at low SNR, where a small image's outline is gone. In a pixel
U-Net on 32x32 sprites this weight, not the schedule or the spacing, turned
blobs into outlines; in walt's quick latent model it has not yet (WORKSPACE,
"Why the sprites models draw blobs"). The model still outputs v, so sampling
from pure noise at zero terminal SNR stays well defined.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from walt.diffusion import schedule as sched_lib

# apply(params, z, t_input, labels, self_cond, cond_latent, cond_mask,
#       is_image, **conditioning) -> v
Apply = Callable[..., jax.Array]


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
  self_cond_prob: float = 0.9
  class_dropout: float = 0.1  # labels -> null class (guidance)
  frame_cond_prob: float = 0.0  # give the first latent frames clean
  frame_cond_frames: int = 2  # 2 latent frames = 5 pixel frames
  # Relative weights of the modes in `FRAME_COND_MODES` (given examples).
  frame_cond_modes: tuple[float, float, float] = (1.0, 0.0, 0.0)
  null_class: int = 0  # = num_classes of the model
  t_sampling: str = 'uniform'  # or 'logit_normal'
  t_logit_mean: float = 0.0
  t_logit_std: float = 1.0
  loss_weighting: str = 'none'  # or 'min_snr', 'eps'
  min_snr_gamma: float = 5.0
  text_dropout: float = 0.1  # text tokens all masked (guidance)
  sr_noise_max: float = 0.3  # t_sr ~ U(0, sr_noise_max) (SR stages)

  @classmethod
  def from_config(cls, diffusion, null_class: int) -> 'ObjectiveConfig':
    modes = diffusion.get('frame_cond_modes') or {'predict': 1.0}
    unknown = set(modes) - set(FRAME_COND_MODES)
    if unknown:
      raise ValueError(f'diffusion.frame_cond_modes: unknown {sorted(unknown)}'
                       f', modes are {FRAME_COND_MODES}')
    c = cls(diffusion.self_cond_prob, diffusion.class_dropout,
            diffusion.frame_cond_prob, diffusion.frame_cond_frames,
            tuple(float(modes.get(m, 0.0)) for m in FRAME_COND_MODES),
            null_class, diffusion.get('t_sampling', 'uniform'),
            diffusion.get('t_logit_mean', 0.0),
            diffusion.get('t_logit_std', 1.0),
            diffusion.get('loss_weighting', 'none'),
            diffusion.get('min_snr_gamma', 5.0),
            text_dropout=diffusion.get('text_dropout', 0.1),
            sr_noise_max=diffusion.get('sr_noise_max', 0.3))
    c.validate()
    return c

  def validate(self) -> None:
    if self.t_sampling not in T_SAMPLINGS:
      raise ValueError(f'diffusion.t_sampling={self.t_sampling!r}: one of '
                       f'{T_SAMPLINGS}')
    if self.loss_weighting not in LOSS_WEIGHTINGS:
      raise ValueError(f'diffusion.loss_weighting={self.loss_weighting!r}: '
                       f'one of {LOSS_WEIGHTINGS}')
    if (min(self.frame_cond_modes) < 0 or self.frame_cond_prob > 0
        and sum(self.frame_cond_modes) <= 0):
      raise ValueError(f'diffusion.frame_cond_modes weights '
                       f'{self.frame_cond_modes}: >= 0, not all 0')
    if not (0 <= self.text_dropout <= 1 and 0 <= self.sr_noise_max <= 1):
      raise ValueError('diffusion.text_dropout and sr_noise_max must be in '
                       '[0, 1]')
    if self.t_logit_std <= 0 or self.min_snr_gamma <= 0:
      raise ValueError('diffusion.t_logit_std and min_snr_gamma must be > 0')


T_SAMPLINGS = ('uniform', 'logit_normal')
FRAME_COND_MODES = ('predict', 'image', 'interpolate')
LOSS_WEIGHTINGS = ('none', 'min_snr', 'eps')


def sample_steps(rng: jax.Array, batch: int | tuple, num_steps: int,
                 c: ObjectiveConfig) -> jax.Array:
  """Training steps t `[batch]` in [0, num_steps) (`batch=()`: one)."""
  shape = (batch,) if isinstance(batch, int) else batch
  if c.t_sampling == 'uniform':
    return jax.random.randint(rng, shape, 0, num_steps)
  u = jax.nn.sigmoid(c.t_logit_mean
                     + c.t_logit_std * jax.random.normal(rng, shape))
  return jnp.clip(jnp.floor(u * num_steps).astype(jnp.int32), 0,
                  num_steps - 1)


def loss_weight(alpha: jax.Array, sigma: jax.Array, c: ObjectiveConfig
                ) -> jax.Array:
  """Per-example weight `[b]` of the v-MSE (1 for the paper's loss)."""
  if c.loss_weighting == 'none':
    return jnp.ones_like(alpha)
  if c.loss_weighting == 'eps':  # SNR / (SNR + 1), exact at sigma = 0 too
    return jnp.square(alpha) / (jnp.square(alpha) + jnp.square(sigma))
  snr = jnp.square(alpha) / jnp.maximum(jnp.square(sigma), 1e-12)
  return jnp.minimum(snr, c.min_snr_gamma) / (snr + 1.0)


def frame_mask(num_frames: int, mode: jax.Array, given_frames: int
               ) -> jax.Array:
  """Given latent frames `[b, num_frames]` (float 0/1) for modes `[b]`
  (indices into `FRAME_COND_MODES`; -1: nothing given)."""
  i = jnp.arange(num_frames)[None]
  mode = mode[:, None]
  given = jnp.where(mode == 0, i < given_frames,
                    jnp.where(mode == 1, i < 1,
                              (i == 0) | (i == num_frames - 1)))
  return jnp.logical_and(given, mode >= 0).astype(jnp.float32)


def frame_condition(x0: jax.Array, mask: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """(cond_latent, cond_mask `[b, t]`): the frames of `x0` where `mask`."""
  mask = mask.astype(x0.dtype)
  return x0 * mask[:, :, None, None, None], mask


def sample_frame_modes(rng: jax.Array, c: ObjectiveConfig,
                       is_image: jax.Array) -> jax.Array:
  """Per example, the frame conditioning mode `[b]` (-1: none): videos are
  given frames with `frame_cond_prob`, the mode drawn by its weight."""
  k_given, k_mode = jax.random.split(rng)
  b = is_image.shape[0]
  given = jnp.logical_and(
      jax.random.uniform(k_given, (b,)) < c.frame_cond_prob, ~is_image)
  logits = jnp.log(jnp.maximum(jnp.asarray(c.frame_cond_modes), 1e-30))
  mode = jax.random.categorical(k_mode, logits, shape=(b,))
  return jnp.where(given, mode, -1)


def augment_low_res(rng: jax.Array, low_res: jax.Array,
                    schedule: sched_lib.Schedule, t_max: float
                    ) -> tuple[jax.Array, jax.Array]:
  """Noise-conditioning augmentation of an SR stage's low-resolution latent
  `[b, ...]`: each example noised to its own step t_sr ~ U{0, ...,
  t_max * num_steps} with the diffusion's own schedule. Returns (noised
  latent, t_sr as the network sees it `[b]`, in [0, 1))."""
  b = low_res.shape[0]
  k_t, k_eps = jax.random.split(rng)
  top = int(round(t_max * schedule.num_steps))
  t = jax.random.randint(k_t, (b,), 0, top + 1)
  alpha, sigma = schedule.alpha_sigma(t)
  eps = jax.random.normal(k_eps, low_res.shape, low_res.dtype)
  return sched_lib.add_noise(low_res, eps, alpha, sigma), \
      schedule.time_input(t)


def drop_text(rng: jax.Array, text_mask: jax.Array, p: float) -> jax.Array:
  """Text dropout for classifier-free guidance: with probability p per
  example every text token is masked (the model then sees no text)."""
  keep = jax.random.uniform(rng, text_mask.shape[:1]) >= p
  return jnp.logical_and(text_mask, keep[:, None])


def cascade_conditioning(keys: jax.Array, schedule: sched_lib.Schedule,
                         c: ObjectiveConfig, conditioning: dict | None
                         ) -> dict:
  """The model's cascade inputs for one training step: `conditioning` holds
  `low_res` `[b, ...]` (clean) and/or `text` `[b, n, d]` + `text_mask`
  `[b, n]`; returns them with the low-res latent noise-augmented (plus its
  `t_sr` `[b]`) and the text dropped, each example with its own key `[b]`.
  """
  out = dict(conditioning or {})
  if 'low_res' in out:
    k_sr = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    noised, t_sr = jax.vmap(
        lambda k, x: augment_low_res(k, x[None], schedule, c.sr_noise_max))(
            k_sr, out['low_res'])
    out['low_res'], out['t_sr'] = noised[:, 0], t_sr[:, 0]
  if 'text' in out:
    mask = out.get('text_mask')
    if mask is None:
      mask = jnp.ones(out['text'].shape[:2], bool)
    k_text = jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys)
    out['text_mask'] = jax.vmap(
        lambda k, m: drop_text(k, m[None], c.text_dropout)[0])(k_text, mask)
  return out


def diffusion_loss(apply: Apply, params, rng: jax.Array,
                   schedule: sched_lib.Schedule, c: ObjectiveConfig,
                   x0: jax.Array, labels: jax.Array | None,
                   is_image: jax.Array, example_ids: jax.Array | None = None,
                   conditioning: dict | None = None
                   ) -> tuple[jax.Array, dict]:
  """MSE between predicted and true v.

  x0: clean normalised latents `[b, t, h, w, c]`; labels int `[b, t]` (per
  frame) or None; is_image bool `[b]`; example_ids int `[b]`: each example's
  row in the step's whole batch (default: 0..b-1). Every random draw of an
  example (t, noise, dropouts) comes from `fold_in(rng, its id)`, so a batch
  split into microbatches (`walt.train.accumulate`) draws what the whole
  batch would. conditioning: cascade inputs (`cascade_conditioning`),
  passed to `apply` as keyword arguments.
  """
  b = x0.shape[0]
  if example_ids is None:
    example_ids = jnp.arange(b, dtype=jnp.int32)
  keys = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(rng, i), 5)
                  )(example_ids)
  k_t, k_eps, k_sc, k_drop, k_fc = (keys[:, i] for i in range(5))
  extra = cascade_conditioning(k_drop, schedule, c, conditioning)
  t = jax.vmap(lambda k: sample_steps(k, (), schedule.num_steps, c))(k_t)
  eps = jax.vmap(lambda k: jax.random.normal(k, x0.shape[1:], x0.dtype))(
      k_eps)
  uniform = jax.vmap(jax.random.uniform)
  alpha, sigma = schedule.alpha_sigma(t)
  z = sched_lib.add_noise(x0, eps, alpha, sigma)
  if labels is not None and c.class_dropout > 0:
    drop = uniform(k_drop) < c.class_dropout
    labels = jnp.where(drop[:, None], c.null_class, labels)
  cond_latent = cond_mask = None
  predicted = jnp.ones(x0.shape[:2], x0.dtype)  # frames the loss covers
  if c.frame_cond_prob > 0:
    mode = jax.vmap(lambda k, im: sample_frame_modes(k, c, im[None])[0])(
        k_fc, is_image)
    cond_latent, cond_mask = frame_condition(
        x0, frame_mask(x0.shape[1], mode, c.frame_cond_frames))
    predicted = 1.0 - cond_mask
  t_in = schedule.time_input(t)

  def predict(self_cond):
    return apply(params, z, t_in, labels, self_cond, cond_latent, cond_mask,
                 is_image, **extra)

  metrics = {}
  self_cond = None
  if c.self_cond_prob > 0:
    # The model's own x0 estimate (no gradient), given with probability p.
    v0 = jax.lax.stop_gradient(predict(jnp.zeros_like(x0)))
    use = uniform(k_sc) < c.self_cond_prob
    est = sched_lib.x0_from_v(z, v0, alpha, sigma)
    self_cond = jnp.where(use[:, None, None, None, None], est, 0.0)
    metrics['self_cond_fraction'] = jnp.mean(use.astype(jnp.float32))
  v = predict(self_cond if self_cond is not None else jnp.zeros_like(x0))
  target = sched_lib.v_target(x0, eps, alpha, sigma)
  # Mean over the predicted frames (given ones are replaced at sampling).
  per_frame = jnp.mean(jnp.square(v - target), axis=tuple(range(2, v.ndim)))
  per_example = (jnp.sum(per_frame * predicted, axis=1)
                 / jnp.maximum(jnp.sum(predicted, axis=1), 1.0))
  loss = jnp.mean(loss_weight(alpha, sigma, c) * per_example)
  metrics['loss'] = loss
  metrics['v_mse'] = jnp.mean(per_example)
  x0_hat = sched_lib.x0_from_v(z, v, alpha, sigma)
  metrics['x0_mse'] = jnp.mean(jnp.square(x0_hat - x0))
  return loss, metrics
