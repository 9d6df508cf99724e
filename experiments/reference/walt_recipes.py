r"""walt's own denoiser, objective and sampler on single sprites frames, in
pixels or in a tokenizer's latents: the other half of issue 29's swap table.

`pixel_recipes.py` puts a trusted U-Net (diffusers) beside W.A.L.T's recipe;
this harness keeps the recipe fixed and swaps what walt adds: the window
transformer (`walt.models.denoiser`), `walt.diffusion.objectives` and
`walt.diffusion.sampling`, trained on

  * `--space=pixels`: the same 32x32 frames as `pixel_recipes.py`
    (`images()`), as 1-frame "latents" `[1, 32, 32, 3]`;
  * `--space=latents --cache=C`: the independent images of a walt latent
    cache (`--mode=cache_latents`) `[1, h, w, c]`, decoded by the cache's
    tokenizer for scoring.

    python experiments/reference/walt_recipes.py --out=/tmp/walt/pix_eps \
        --space=pixels --patch_size=4 --loss_weighting=eps
    python experiments/reference/walt_recipes.py --out=/tmp/walt/lat_eps \
        --space=latents --cache=Q/latents --patch_size=1 --loss_weighting=eps

Writes `OUT/results.json` and `OUT/grid.png` like `pixel_recipes.py`.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.reference import pixel_recipes
from walt.data import sprites
from walt.diffusion import objectives
from walt.diffusion import sampling
from walt.diffusion import schedule as sched_lib
from walt.models import denoiser as denoiser_lib


def _args():
  p = argparse.ArgumentParser()
  p.add_argument('--out', required=True)
  p.add_argument('--space', default='pixels', choices=['pixels', 'latents'])
  p.add_argument('--cache', default='', help='walt latent cache (latents)')
  p.add_argument('--loss_weighting', default='none',
                 choices=list(objectives.LOSS_WEIGHTINGS))
  p.add_argument('--beta_end', type=float, default=0.02)
  p.add_argument('--zero_snr', default='true')
  p.add_argument('--patch_size', type=int, default=4)
  p.add_argument('--layers', type=int, default=6)
  p.add_argument('--width', type=int, default=192)
  p.add_argument('--heads', type=int, default=3)
  p.add_argument('--train_images', type=int, default=40_000)
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--lr', type=float, default=1e-3)
  p.add_argument('--samples_per_class', type=int, default=4)
  p.add_argument('--sampler', default='ddim', choices=list(sampling.SAMPLERS))
  p.add_argument('--steps', type=int, default=50)
  p.add_argument('--guidance', type=float, default=3.0)
  p.add_argument('--num_images', type=int, default=20_000)
  p.add_argument('--seed', type=int, default=0)
  return p.parse_args()


def training_set(args):
  """(x `[n, 1, h, w, c]` float32, labels `[n]`, decode) for the space."""
  if args.space == 'pixels':
    x, y = pixel_recipes.images(args.num_images)
    return x.transpose(0, 2, 3, 1)[:, None], y, lambda z: z
  x, y, decode = pixel_recipes.latent_images(args.cache)
  return x[:, None], y, lambda z: decode(z[:, 0])[:, None]

def main():
  args = _args()
  os.makedirs(args.out, exist_ok=True)
  x_all, y_all, decode = training_set(args)
  shape = x_all.shape[1:]
  null = sprites.NUM_CLASSES
  cfg = denoiser_lib.DenoiserConfig(
      latent_shape=shape, num_layers=args.layers, width=args.width,
      num_heads=args.heads, patch_size=args.patch_size,
      spatial_window=(0, 0), spatiotemporal_window=(0, 0, 0),
      num_classes=null, self_conditioning=False, frame_conditioning=False,
      scan_unroll=0)
  model = denoiser_lib.Denoiser(cfg)
  schedule = sched_lib.Schedule.create(
      beta_end=args.beta_end, zero_terminal_snr=args.zero_snr == 'true')
  objective = objectives.ObjectiveConfig(
      self_cond_prob=0.0, class_dropout=0.1, null_class=null,
      loss_weighting=args.loss_weighting)
  rng = jax.random.PRNGKey(args.seed)
  params = model.init(rng, jnp.zeros((1, *shape)), jnp.zeros((1,)),
                      labels=jnp.zeros((1,), jnp.int32),
                      is_image=jnp.ones((1,), bool))['params']
  tx = optax.adamw(optax.join_schedules(
      [optax.linear_schedule(0.0, args.lr, 200), optax.constant_schedule(
          args.lr)], [200]), weight_decay=0.0)
  opt = tx.init(params)
  ema = params

  def apply(p, z, t, labels, self_cond, cond_latent, cond_mask, is_image):
    del cond_latent, cond_mask
    return model.apply({'params': p}, z, t, labels=labels,
                       self_cond=self_cond, is_image=is_image)

  @jax.jit
  def step(params, opt, ema, i, x0, y):
    def loss_fn(p):
      return objectives.diffusion_loss(
          apply, p, jax.random.fold_in(rng, i), schedule, objective, x0,
          y[:, None], jnp.ones((x0.shape[0],), bool))
    (loss, _), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(g, opt, params)
    params = optax.apply_updates(params, updates)
    # EMA 0.999 with the same warm-up as diffusers' EMAModel (power 2/3).
    d = jnp.minimum(0.999, 1 - (1 + i) ** (-2 / 3))
    ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, ema, params)
    return params, opt, ema, loss

  np_rng = np.random.default_rng(args.seed)
  state = [params, opt, ema]

  def train_step(i):
    idx = np_rng.integers(0, len(x_all), args.batch)
    *new_state, loss = step(*state, i, x_all[idx], y_all[idx])
    state[:] = new_state
    return loss

  i, seen, train_seconds = pixel_recipes.train_for_images(args, train_step)
  ema = state[2]
  x = sample(args, model, ema, schedule, shape, null)
  x = np.clip(decode(x)[:, 0], -1, 1)
  results = dict(vars(args), steps_trained=i, images_seen=seen,
                 train_seconds=train_seconds, **pixel_recipes.score_and_grid(
                     args.out, x, np.repeat(np.arange(null),
                                            args.samples_per_class),
                     args.samples_per_class))
  with open(os.path.join(args.out, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  print(json.dumps({k: results[k] for k in (
      'class_accuracy', 'color_accuracy', 'shape_accuracy', 'images_seen')}))


def sample(args, model, params, schedule, shape, null) -> np.ndarray:
  """Class-major samples `[12 n, *shape]` with guidance (walt's sampler)."""
  labels = jnp.repeat(jnp.arange(null), args.samples_per_class)[:, None]

  def denoise(z, t, x0_sc, variants):
    del x0_sc
    lab = jnp.concatenate([labels if v[0] else jnp.full_like(labels, null)
                           for v in variants])
    k = len(variants)
    v = model.apply({'params': params}, jnp.concatenate([z] * k),
                    schedule.time_input(jnp.concatenate([t] * k)),
                    labels=lab, is_image=jnp.ones((k * z.shape[0],), bool))
    return v.reshape(k, *z.shape)

  noise = jax.random.normal(jax.random.PRNGKey(1234),
                            (labels.shape[0], *shape))
  run = jax.jit(lambda n: sampling.sample(
      args.sampler, denoise, n, jax.random.PRNGKey(1), schedule, args.steps,
      guidance=args.guidance, self_condition=False))
  return np.asarray(run(noise))


if __name__ == '__main__':
  main()
