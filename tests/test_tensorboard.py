"""TensorBoard output of a training job that stops and resumes, read back
with TensorFlow's own event reader: every step's scalars exactly once, at
their global step, and the reconstruction video summary (a frame grid
image) of both runs, in two event files (the first run's file intact)."""

import glob
import json
import os

import numpy as np
import pytest

from tests.test_tokenizer_training import _config
from walt.train import tokenizer_trainer

tf = pytest.importorskip('tensorflow')

STEPS, STOP = 10, 5


def _read_events(path):
  """{'scalars': {tag: [(step, value)]}, 'images': {tag: [(step, image
  uint8 [h, w, 3])]}} of one event file."""
  scalars, images = {}, {}
  for event in tf.compat.v1.train.summary_iterator(path):
    for value in event.summary.value:
      if value.HasField('image'):
        png = tf.io.decode_png(value.image.encoded_image_string).numpy()
        assert png.shape == (value.image.height, value.image.width, 3)
        images.setdefault(value.tag, []).append((event.step, png))
      elif value.HasField('simple_value'):
        scalars.setdefault(value.tag, []).append((event.step,
                                                  value.simple_value))
  return {'scalars': scalars, 'images': images}


def test_scalars_and_video_summaries_survive_a_resume(sprites_data_dir,
                                                      tmp_path):
  # The tokenizer_dir fixture's run (its train step is in the XLA cache),
  # logging every step and writing a summary every 5 steps.
  config = _config(sprites_data_dir, STEPS, gan_start=10_000)
  with config.unlocked():
    config.eval_every, config.summary_every, config.log_every = 0, STOP, 1
    config.latent_stats.num_examples = 0
    config.stop_at_step = STOP
  workdir = str(tmp_path / 'tok')
  tokenizer_trainer.run(config, workdir)
  (first,) = glob.glob(os.path.join(workdir, 'tensorboard', 'events.*'))
  before = _read_events(first)
  with config.unlocked():
    config.stop_at_step = 0
  tokenizer_trainer.run(config, workdir)  # resumes at step 5
  files = sorted(glob.glob(os.path.join(workdir, 'tensorboard', 'events.*')),
                 key=os.path.getmtime)
  assert len(files) == 2 and files[0] == first
  runs = [_read_events(f) for f in files]
  assert _same(runs[0], before)  # the first run's file is not rewritten
  # Each run logged its own steps at their global step numbers.
  assert [s for s, _ in runs[0]['scalars']['loss']] == [1, 2, 3, 4, 5]
  assert [s for s, _ in runs[1]['scalars']['loss']] == [6, 7, 8, 9, 10]
  # The scalars are the ones metrics.jsonl holds for the same steps.
  jsonl = {r['step']: r for r in map(json.loads, open(
      os.path.join(workdir, 'metrics.jsonl'))) if 'loss' in r}
  for run in runs:
    for tag in ('loss', 'l2', 'psnr'):
      for step, value in run['scalars'][tag]:
        assert value == pytest.approx(jsonl[step][tag], rel=1e-6), (tag, step)
  # The video summary: real clips beside reconstructions, one row of 5
  # frames (32 x (32 + 32) pixels each), at steps 5 and 10.
  for run, step in zip(runs, (STOP, STEPS)):
    (got_step, grid), = run['images']['reconstruction']
    assert got_step == step
    assert grid.shape == (32, 5 * 64, 3)
    assert grid.std() > 0  # sprites on a background, not a blank image
    # The same grid as the PNG written beside the videos.
    png = tf.io.decode_png(tf.io.read_file(os.path.join(
        workdir, 'samples', str(step), 'reconstruction.png'))).numpy()
    np.testing.assert_array_equal(grid, png[..., :3])


def _same(a, b):
  """Equal event contents (images compared as arrays)."""
  if a['scalars'] != b['scalars'] or a['images'].keys() != b['images'].keys():
    return False
  return all(s1 == s2 and np.array_equal(x1, x2)
             for tag in a['images']
             for (s1, x1), (s2, x2) in zip(a['images'][tag],
                                           b['images'][tag]))
