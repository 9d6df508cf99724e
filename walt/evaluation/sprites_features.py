r"""A small video network trained on moving_sprites, for `fvd_sprites`.

`fvd_sprites` is a Frechet distance on this network's 128-d features. It is a
synthetic-data sanity metric, NOT FVD (no I3D, no Kinetics): use it to compare
models on moving_sprites, never next to published FVD numbers.

Train it once (a few CPU minutes), then point the sprites eval at it:

    python -m walt.evaluation.sprites_features --data_dir=DATA \
        --dataset=moving_sprites/17x64x64 --out=~/walt_weights/sprites_features.npz
    python -m walt.main --config=configs/eval/sprites.py ... \
        --config.features.weights=~/walt_weights/sprites_features.npz

Network: clips `[b, t, h, w, 3]` in [-1, 1] resized to 32x32 (half-pixel
bilinear), three strided 3x3x3 convs (16, 32, 64 channels) with ReLU, global
average pool, a 128-d ReLU layer (the features), 12-way class logits.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from walt.data import build  # noqa: F401  (defines --dataset, --data_dir)
from walt.data import pipeline
from walt.evaluation import resize, weights

NETWORK_ID = 'walt sprites_features v1 (3D CNN trained on moving_sprites)'
RESOLUTION = 32
FEATURE_DIM = 128
NUM_CLASSES = 12


class SpritesNet(nn.Module):
  """`[b, t, h, w, 3]` -> (features `[b, 128]`, logits `[b, 12]`)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    x = resize.resize_frames(x, (RESOLUTION, RESOLUTION), 'half_pixel')
    if x.shape[1] < 5:
      raise ValueError(f'sprites_features takes >= 5 frames, got {x.shape}')
    for width, stride in ((16, (1, 2, 2)), (32, (2, 2, 2)), (64, (2, 2, 2))):
      x = nn.relu(nn.Conv(width, (3, 3, 3), stride, padding='SAME')(x))
    features = nn.relu(nn.Dense(FEATURE_DIM)(x.mean(axis=(1, 2, 3))))
    return features, nn.Dense(NUM_CLASSES)(features)


def param_shapes():
  x = jax.ShapeDtypeStruct((1, 9, RESOLUTION, RESOLUTION, 3), jnp.float32)
  return jax.eval_shape(SpritesNet().init, jax.random.key(0), x)['params']


def random_params(seed: int = 0):
  return weights.random_like(param_shapes(), seed)


def features(params, videos: jax.Array) -> tuple[jax.Array, jax.Array]:
  return SpritesNet().apply({'params': params}, videos)


def train(data_dir: str, dataset: str, frames: int = 9, steps: int = 300,
          batch_size: int = 32, lr: float = 3e-3, seed: int = 0,
          log_every: int = 50) -> tuple[dict, list[float]]:
  """Trains on the train split; returns (params, per-step accuracies)."""
  res = int(dataset.split('x')[-1]) if 'x' in dataset else 64
  spec = pipeline.DataSpec(name=dataset, data_dir=data_dir, split='train',
                           frames=frames, resolution=(res, res),
                           random_crop=False, build=True)
  ds = iter(pipeline.make_dataset(spec, global_batch_size=batch_size,
                                  seed=seed))
  model = SpritesNet()
  params = jax.jit(model.init)(
      jax.random.key(seed), jnp.zeros((1, frames, res, res, 3)))['params']
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, video, label):
    def loss_fn(p):
      logits = model.apply({'params': p}, video)[1]
      return optax.softmax_cross_entropy_with_integer_labels(
          logits, label).mean(), logits
    (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    acc = jnp.mean(jnp.argmax(logits, -1) == label)
    return optax.apply_updates(params, updates), opt, loss, acc

  accs, started = [], time.time()
  for i in range(steps):
    batch = next(ds)
    params, opt, loss, acc = step(params, opt, jnp.asarray(batch['video']),
                                  jnp.asarray(batch['label'][:, 0]))
    accs.append(float(acc))
    if log_every and (i % log_every == 0 or i == steps - 1):
      print(f'step {i}: loss {float(loss):.3f} accuracy '
            f'{np.mean(accs[-log_every:]):.2f} ({time.time() - started:.0f} s)',
            flush=True)
  return jax.device_get(params), accs


def main(argv):
  del argv
  f = flags.FLAGS
  params, accs = train(f.data_dir, f.dataset, f.frames,
                       f.steps)
  weights.save(f.out, params)
  print(f'wrote {f.out}; final training accuracy {np.mean(accs[-50:]):.3f}')


if __name__ == '__main__':
  flags.DEFINE_integer('frames', 9, 'Clip length.')
  flags.DEFINE_integer('steps', 300, 'Training steps.')
  flags.DEFINE_string('out', None, 'Where to write the weights (.npz).')
  flags.mark_flags_as_required(['data_dir', 'out'])  # --data_dir: build's
  app.run(main)
