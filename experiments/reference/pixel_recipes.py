r"""A trusted pixel-space reference beside W.A.L.T's diffusion recipe.

Trains diffusers' `UNet2DModel` (widths 32/64/64, attention at 8x8) class-
conditionally on single 32x32 frames of moving_sprites for a budget of images
seen (`--train_images`), then samples every class with diffusers'
`DDIMScheduler` + classifier-free guidance and scores the samples with the moving_sprites oracle. One recipe piece at a
time is switched by flags, so the swap table of issue 29 is one command per row:

    python experiments/reference/pixel_recipes.py --out=/tmp/ref/A \
        --prediction=epsilon --betas=cosine --zero_snr=false --spacing=leading
    python experiments/reference/pixel_recipes.py --out=/tmp/ref/B \
        --prediction=v_prediction --betas=linear --zero_snr=true \
        --spacing=trailing        # W.A.L.T's recipe

Writes `OUT/results.json` (class / colour / shape accuracy, per-class and the
recipe) and `OUT/grid.png` (rows = classes). Needs `pip install diffusers`
(an experiment dependency only; never imported by `walt`).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from walt.data import sprites
from walt.data import moving_sprites

import diffusers  # noqa: E402  (experiment-only dependency)


def _args():
  p = argparse.ArgumentParser()
  p.add_argument('--out', required=True)
  p.add_argument('--prediction', default='epsilon',
                 choices=['epsilon', 'v_prediction', 'sample'])
  p.add_argument('--betas', default='cosine', choices=['cosine', 'linear'])
  p.add_argument('--zero_snr', default='false')
  p.add_argument('--shift', type=float, default=1.0,
                 help='log-SNR shift: SNR multiplied by shift**2 (>1: less '
                 'noise at every t).')
  p.add_argument('--spacing', default='leading',
                 choices=['leading', 'trailing', 'linspace'])
  p.add_argument('--loss_weight', default='none',
                 choices=['none', 'eps', 'min_snr5'],
                 help='x0-space weight of the loss relative to the plain '
                 'target MSE: eps = the eps-MSE weighting expressed for any '
                 'target; min_snr5 = Hang et al. 2023 with gamma 5.')
  p.add_argument('--train_images', type=int, default=40_000,
                 help='The budget, in images seen (not minutes: runs beside '
                 'other jobs stay comparable).')
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--lr', type=float, default=1e-3)
  p.add_argument('--samples_per_class', type=int, default=4)
  p.add_argument('--steps', type=int, default=50)
  p.add_argument('--guidance', type=float, default=3.0)
  p.add_argument('--num_images', type=int, default=20_000)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--latents', default='',
                 help='a walt latent cache: train on its latent images '
                 'instead of pixels (samples decoded by its tokenizer)')
  return p.parse_args()


def images(n: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
  """n training frames `[n, 3, size, size]` in [-1, 1] and labels `[n]`: the
  independent image stream of the train split at random motion phases."""
  seed = moving_sprites.SPLIT_SEEDS['train']
  xs, ys = [], []
  for i in range(n):
    p = sprites.sample_params(seed, i, stream=1, max_start_frame=16)
    xs.append(sprites.render(p, 1, size, size)[0])
    ys.append(p.label)
  x = np.stack(xs).astype(np.float32) / 127.5 - 1.0
  return x.transpose(0, 3, 1, 2), np.asarray(ys, np.int64)


def latent_images(cache: str):
  """The independent images and the videos' first frames of a walt latent
  cache (`--mode=cache_latents`): (latents `[n, h, w, c]` float32, labels
  `[n]`, decode: latents `[m, h, w, c]` -> frames `[m, H, W, 3]` in [-1, 1]
  by the cache's tokenizer)."""
  from walt.data import latent_cache  # pylint: disable=g-import-not-at-top
  from walt.inference import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  source = latent_cache.LatentCacheSource(cache)
  xs, ys = [], []
  for i in range(len(source)):
    e = source[i]
    # The causal tokenizer encodes a clip's first frame alone: an image.
    xs += [e['image'], e['video'][0]]
    ys += [int(e['image_label']), int(e['label'])]
  tok = tokenizer_lib.load_tokenizer(source.metadata['tokenizer'])
  decode = lambda z: np.asarray(tok.decode(np.asarray(z)[:, None]))[:, 0]
  return np.stack(xs).astype(np.float32), np.asarray(ys), decode


def train_for_images(args, train_step) -> tuple[int, int, float]:
  """Calls `train_step(i)` (-> the step's loss) until `args.train_images`
  images of `args.batch` are seen; prints progress every 200 steps.
  Returns (steps, images seen, seconds)."""
  start, step, seen = time.time(), 0, 0
  while seen < args.train_images:
    loss = train_step(step)
    step += 1
    seen += args.batch
    if step % 200 == 0:
      print(f'step {step} images {seen} loss {float(loss):.4f} '
            f'{time.time() - start:.0f}s', flush=True)
  return step, seen, time.time() - start


def betas(args) -> np.ndarray:
  """The training betas: base schedule, optional log-SNR shift, optional
  zero-terminal-SNR rescaling (Lin et al. 2023, Algorithm 1)."""
  n = 1000
  if args.betas == 'linear':
    b = np.linspace(1e-4, 0.02, n, dtype=np.float64)
    ab = np.cumprod(1 - b)
  else:  # Nichol & Dhariwal's cosine, betas capped at 0.999 (diffusers')
    f = lambda t: np.cos((t / n + 0.008) / 1.008 * np.pi / 2) ** 2
    b = np.minimum(1 - f(np.arange(1, n + 1)) / f(np.arange(n)), 0.999)
    ab = np.cumprod(1 - b)
  if args.shift != 1.0:
    logsnr = np.log(ab / (1 - ab)) + 2 * np.log(args.shift)
    ab = 1 / (1 + np.exp(-logsnr))
  if args.zero_snr.lower() == 'true':
    s = np.sqrt(ab)
    s = (s - s[-1]) * s[0] / (s[0] - s[-1])
    ab = s ** 2
  prev = np.concatenate([[1.0], ab[:-1]])
  return np.clip(1 - ab / prev, 0, 1)


def loss_weight(args, alpha_bar: torch.Tensor) -> torch.Tensor:
  """Per-example weight on the plain MSE of the chosen target."""
  snr = alpha_bar / (1 - alpha_bar).clamp(min=1e-8)
  if args.loss_weight == 'none':
    return torch.ones_like(snr)
  # The x0-space weight of each target's plain MSE: eps -> snr, v -> snr + 1,
  # x0 -> 1. 'eps' rescales any target to eps-MSE's weight; 'min_snr5' to
  # min(snr, 5) (Hang et al. 2023).
  own = {'epsilon': snr, 'v_prediction': snr + 1,
         'sample': torch.ones_like(snr)}[args.prediction]
  want = snr if args.loss_weight == 'eps' else snr.clamp(max=5.0)
  return want / own.clamp(min=1e-8)


def main():
  args = _args()
  os.makedirs(args.out, exist_ok=True)
  torch.manual_seed(args.seed)
  torch.set_num_threads(2)
  decode = None
  if args.latents:
    x_all, y_all, decode = latent_images(args.latents)
    x_all = x_all.transpose(0, 3, 1, 2)
  else:
    x_all, y_all = images(args.num_images)
  x_all, y_all = torch.from_numpy(x_all), torch.from_numpy(y_all)
  channels, size = x_all.shape[1], x_all.shape[2]
  null = sprites.NUM_CLASSES
  model = diffusers.UNet2DModel(
      sample_size=size, in_channels=channels, out_channels=channels,
      layers_per_block=1,
      block_out_channels=(32, 64, 64),
      down_block_types=('DownBlock2D', 'DownBlock2D', 'AttnDownBlock2D'),
      up_block_types=('AttnUpBlock2D', 'UpBlock2D', 'UpBlock2D'),
      num_class_embeds=null + 1, norm_num_groups=8)
  ema = diffusers.training_utils.EMAModel(
      model.parameters(), decay=0.999, use_ema_warmup=True, inv_gamma=1.0,
      power=2 / 3)
  b = betas(args)
  sched_kw = dict(num_train_timesteps=1000, trained_betas=b.tolist(),
                  prediction_type=args.prediction, clip_sample=False)
  train_sched = diffusers.DDPMScheduler(**sched_kw)
  opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
  alpha_bar = torch.as_tensor(np.cumprod(1 - b), dtype=torch.float32)

  def train_step(_):
    idx = torch.randint(0, len(x_all), (args.batch,))
    x0, y = x_all[idx], y_all[idx].clone()
    y[torch.rand(args.batch) < 0.1] = null
    t = torch.randint(0, 1000, (args.batch,))
    eps = torch.randn_like(x0)
    zt = train_sched.add_noise(x0, eps, t)
    target = {'epsilon': eps, 'v_prediction':
              train_sched.get_velocity(x0, eps, t), 'sample': x0}[
                  args.prediction]
    out = model(zt, t, class_labels=y).sample
    w = loss_weight(args, alpha_bar[t])
    loss = (w * ((out - target) ** 2).mean(dim=(1, 2, 3))).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    ema.step(model.parameters())
    return loss.item()

  step, seen, train_seconds = train_for_images(args, train_step)
  ema.copy_to(model.parameters())
  model.eval()
  results = dict(vars(args), steps_trained=step, images_seen=seen,
                 train_seconds=train_seconds,
                 **sample_and_score(args, model, sched_kw, null,
                                   x_all.shape[1:], decode))
  with open(os.path.join(args.out, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  print(json.dumps({k: results[k] for k in (
      'class_accuracy', 'color_accuracy', 'shape_accuracy', 'images_seen')}))


@torch.no_grad()
def sample_and_score(args, model, sched_kw, null, shape, decode) -> dict:
  sched = diffusers.DDIMScheduler(timestep_spacing=args.spacing,
                                  set_alpha_to_one=True, **sched_kw)
  sched.set_timesteps(args.steps)
  n = args.samples_per_class
  labels = torch.arange(sprites.NUM_CLASSES).repeat_interleave(n)
  g = torch.Generator().manual_seed(1234)
  z = torch.randn((len(labels), *shape), generator=g)
  for t in sched.timesteps:
    both = torch.cat([z, z])
    cls = torch.cat([labels, torch.full_like(labels, null)])
    out = model(both, t, class_labels=cls).sample
    cond, uncond = out.chunk(2)
    z = sched.step(uncond + args.guidance * (cond - uncond), t, z).prev_sample
  x = z.permute(0, 2, 3, 1).numpy()
  x = np.clip(decode(x) if decode else x, -1, 1)
  return score_and_grid(args.out, x, labels.numpy(), n)


def score_and_grid(out: str, x: np.ndarray, labels: np.ndarray, n: int
                   ) -> dict:
  """Oracle scores of samples `x` `[12 n, 32, 32, 3]` in [-1, 1] (class-major,
  n per class) and `OUT/grid.png` (rows = classes, x3 to look at)."""
  from walt.evaluation import oracle  # pylint: disable=g-import-not-at-top
  scores = oracle.score_samples('moving_sprites', x[:, None], labels)
  size = x.shape[1]
  grid = ((x + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
  grid = grid.reshape(sprites.NUM_CLASSES, n, size, size, 3)
  grid = np.pad(grid, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)),
                constant_values=255)
  grid = grid.transpose(0, 2, 1, 3, 4).reshape(
      sprites.NUM_CLASSES * (size + 2), n * (size + 2), 3)
  grid = np.kron(grid, np.ones((3, 3, 1), np.uint8))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(grid).save(os.path.join(out, 'grid.png'))
  return scores


if __name__ == '__main__':
  main()
