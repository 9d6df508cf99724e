r"""Probes what a trained sprites denoiser has learned from its labels.

    python -m walt.tools.denoiser_probe --workdir=DENOISER_DIR [--num_examples=192]
        [--steps=100,300,500] [--json]

For held-out clips of the denoiser's data set: encode, noise the latent to
step t, predict x0 once (class label given, no self-conditioning), decode,
and score the result with the moving_sprites oracle. Then the same with the
label's shape swapped (same colour, the next shape: `swap_shape`), scored
against the swapped label: if the prediction follows the label's shape,
`follows_swapped_shape` is high; if it copies the shape visible in the
noisy clip, it sits near 1 - `shape_accuracy`. A model that has learned
shape from the label follows it at mid noise (t ~ 300-500 here), where
sampling decides the shape. WORKSPACE.md ("Denoiser study") has the table
this tool printed.
"""

from __future__ import annotations

import json
from typing import Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from walt.data import pipeline
from walt.data import sprites
from walt.diffusion import schedule as sched_lib
from walt.evaluation import oracle
from walt.evaluation import tasks
from walt.inference import generator as generator_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'Denoiser workdir.')
_NUM = flags.DEFINE_integer('num_examples', 192, 'Held-out clips.')
_STEPS = flags.DEFINE_list('steps', ['100', '300', '500'],
                           'Diffusion steps t to probe.')
_BATCH = flags.DEFINE_integer('batch_size', 16, 'Clips per call.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['workdir'])


def swap_shape(labels: np.ndarray) -> np.ndarray:
  """The same colour with the next shape (labels are shape * colours +
  colour)."""
  colours = len(sprites.COLORS)
  return (labels + colours) % (colours * len(sprites.SHAPES))


def probe(gen: generator_lib.Generator, steps: Sequence[int],
          num_examples: int, batch_size: int = 16, seed: int = 0) -> dict:
  """`{t: {class_accuracy, color_accuracy, shape_accuracy,
  follows_swapped_shape}}` on `num_examples` validation clips."""
  data = gen.data_config
  if not data.name.startswith('moving_sprites'):
    raise ValueError(f'the probe needs the moving_sprites oracle, the '
                     f'denoiser was trained on {data.name}')
  if not gen.num_classes:
    raise ValueError('the denoiser is not class-conditional')
  tok = gen.tokenizer
  videos, labels = [], []
  for b in pipeline.eval_batches(data, batch_size=batch_size,
                                 num_examples=num_examples,
                                 frames=data.frames):
    videos.append(b['video'])
    labels.append(b['label'][:, 0])
  videos, labels = np.concatenate(videos), np.concatenate(labels)
  latents = tasks.map_batches(tok.encode, videos, gen.mesh, batch_size)

  @jax.jit
  def predict_x0(params, z0, t, labels, rng):
    alpha, sigma = gen.schedule.alpha_sigma(t)
    zt = sched_lib.add_noise(z0, jax.random.normal(rng, z0.shape), alpha,
                             sigma)
    v = gen.model.apply({'params': params}, zt, gen.schedule.time_input(t),
                        labels=labels, self_cond=jnp.zeros_like(zt))
    return sched_lib.x0_from_v(zt, v, alpha, sigma)

  def decoded(t: int, labels: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(latents), batch_size):
      z = jnp.asarray(latents[i:i + batch_size])
      n = z.shape[0]
      x0 = predict_x0(gen.params, z, jnp.full((n,), t, jnp.int32),
                      jnp.asarray(labels[i:i + n], jnp.int32),
                      jax.random.key(seed * 7919 + i))
      out.append(np.asarray(tok.decode(x0)))
    return np.concatenate(out)

  results = {}
  swapped = swap_shape(labels)
  for t in steps:
    scores = oracle.score_samples(data.name, decoded(t, labels), labels)
    follow = oracle.score_samples(data.name, decoded(t, swapped), swapped)
    results[int(t)] = {
        'class_accuracy': scores['class_accuracy'],
        'color_accuracy': scores['color_accuracy'],
        'shape_accuracy': scores['shape_accuracy'],
        'follows_swapped_shape': follow['shape_accuracy']}
  return results


def main(argv):
  del argv
  gen = generator_lib.load_denoiser(_WORKDIR.value)
  out = probe(gen, [int(s) for s in _STEPS.value], _NUM.value, _BATCH.value)
  if _JSON.value:
    print(json.dumps(out))
    return
  print(f'{"t":>5} {"class":>6} {"colour":>6} {"shape":>6} '
        f'{"follows swapped shape":>22}')
  for t, r in out.items():
    print(f'{t:>5} {r["class_accuracy"]:6.2f} {r["color_accuracy"]:6.2f} '
          f'{r["shape_accuracy"]:6.2f} {r["follows_swapped_shape"]:22.2f}')


if __name__ == '__main__':
  app.run(main)
