r"""Samplers side by side on a moving_sprites denoiser, in one process.

    python -m walt.tools.sampler_compare --workdir=DENOISER_DIR \
        [--settings=ddim:50,dpmpp:15] [--num_samples=96] [--guidance=3] \
        [--features=~/walt_weights/sprites_features.npz] [--json]

For each `sampler:steps` setting: the same class-conditional samples (labels
cycling over the classes, the same seeds), the oracle class / colour / shape
accuracy, `fvd_sprites` against as many real validation clips when
`--features` is given (`python -m walt.evaluation.sprites_features` trains
that network), and the sampling seconds (after one compiling batch, so
compilation is not counted), with each setting's ratios to the first one.
"""

from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags
import numpy as np

from walt import config_lib
from walt.evaluation import oracle
from walt.evaluation import tasks
from walt.inference import generator as generator_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags (defined when run as a program, so importing this
  module beside another tool defines no flag twice)."""
  flags.DEFINE_string('workdir', None, 'Denoiser workdir.')
  flags.DEFINE_list('settings', ['ddim:50', 'dpmpp:15'],
                    'sampler:steps pairs, the first the reference.')
  flags.DEFINE_integer('num_samples', 96, 'Samples per setting.')
  flags.DEFINE_integer('batch_size', 48, 'Samples per call.')
  flags.DEFINE_float('guidance', 3.0, 'Class guidance scale.')
  flags.DEFINE_string('features', '', 'sprites_features weights (.npz); '
                      'empty: no fvd_sprites.')
  flags.DEFINE_bool('json', False, 'Print one JSON object.')
  flags.mark_flags_as_required(['workdir'])


def parse_settings(settings) -> list[tuple[str, int]]:
  out = []
  for s in settings:
    name, _, steps = s.partition(':')
    if not steps.isdigit():
      raise ValueError(f'setting {s!r}: expected sampler:steps, e.g. dpmpp:15')
    out.append((name, int(steps)))
  return out


def compare(gen: generator_lib.Generator, settings, num_samples: int,
            batch_size: int, guidance: float, features: str = '') -> list:
  """One row per setting (see the module doc)."""
  if not gen.num_classes:
    raise ValueError('sampler_compare scores class-conditional samples')
  config = config_lib.load_file('eval/sprites.py')
  config.unlock()
  config.data.update({'name': gen.data_config.name,
                      'data_dir': gen.data_config.data_dir})
  config.num_samples, config.batch_size = num_samples, batch_size
  config.features.weights = os.path.expanduser(features)
  config.lock()
  labels = np.arange(num_samples) % gen.num_classes
  rows = []
  for sampler, steps in settings:
    kwargs = {'sampler': sampler, 'steps': steps, 'guidance': guidance}
    gen.sample_many(labels[:batch_size], batch_size=batch_size, **kwargs)
    started = time.perf_counter()
    videos = gen.sample_many(labels, batch_size=batch_size, seed=0, **kwargs)
    seconds = time.perf_counter() - started
    row = {'sampler': sampler, 'steps': steps, 'seconds': seconds,
           **oracle.score_samples(gen.data_config.name, videos, labels)}
    if features:
      row['fvd_sprites'] = tasks.sprites_fvd(config, gen, videos)[0]
    rows.append(row)
  for row in rows:
    row['time_vs_first'] = row['seconds'] / rows[0]['seconds']
    row['class_accuracy_vs_first'] = (row['class_accuracy']
                                      - rows[0]['class_accuracy'])
    if features:
      row['fvd_sprites_vs_first'] = row['fvd_sprites'] / rows[0]['fvd_sprites']
  return rows


def main(argv):
  del argv
  gen = generator_lib.load_denoiser(FLAGS.workdir)
  rows = compare(gen, parse_settings(FLAGS.settings), FLAGS.num_samples,
                 FLAGS.batch_size, FLAGS.guidance, FLAGS.features)
  if FLAGS.json:
    print(json.dumps(rows))
    return
  for row in rows:
    print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in row.items() if '/' not in k))


if __name__ == '__main__':
  define_flags()
  app.run(main)
