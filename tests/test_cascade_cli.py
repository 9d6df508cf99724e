"""`python -m walt.cascade` on the tiny trained stages of
`tests/test_cascade.py` (a text base at 5x16x16, an SR stage 16 -> 32):
`--eval_captions` (held-out captions scored by the oracle) and
`--save_stages` (every stage's videos). Bad flags are tested cheaply in
`tests/test_cli.py`."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from walt import media

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 4

# Uses the `stages` fixture (conftest.py), shared with test_cascade.py.
pytestmark = pytest.mark.slow


def test_eval_captions_and_save_stages(stages, tmp_path):
  base, sr = stages['base'][0], stages['sr'][0]
  out = tmp_path / 'out'
  env = {**os.environ, 'PYTHONPATH': ROOT}
  if jax.config.jax_compilation_cache_dir:
    env.setdefault('JAX_COMPILATION_CACHE_DIR',
                   jax.config.jax_compilation_cache_dir)
  r = subprocess.run(
      [sys.executable, '-m', 'walt.cascade', f'--workdirs={base},{sr}',
       f'--eval_captions={N}', '--save_stages', f'--out={out}', '--steps=2',
       '--batch_size=2', '--guidance=2'],
      env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f'over {N} captions' in r.stdout
  info = json.loads((out / 'cascade.json').read_text())
  assert info['workdirs'] == [base, sr] and info['eval_captions'] == N
  assert info['caption'] is None and info['steps'] == 2
  assert info['sizes'] == [[5, 16, 16], [5, 32, 32]]
  assert info['files'] == [str(out / f'sample_{i}.{ext}') for i in range(N)
                           for ext in ('mp4', 'gif')] + [
                               str(out / 'sample.png')]
  results = json.loads((out / 'results.json').read_text())
  assert results['num_samples'] == N
  assert 0 <= results['caption_accuracy'] <= 1
  assert results['caption_accuracy'] == results['metrics']['class_accuracy']
  # One score per stage, the last one the headline.
  per_stage = results['stage_caption_accuracy']
  assert len(per_stage) == 2 and per_stage[-1] == results['caption_accuracy']
  assert results['protocol']['captions'] == (
      f'first {N} validation clips of moving_sprites/5x32x32')
  # --save_stages: each stage's videos at its own size; the last stage's
  # are the final samples.
  for k, size in enumerate(((16, 16), (32, 32))):
    files = set(os.listdir(out / f'stage{k}'))
    assert {f'sample_{i}.{e}' for i in range(N) for e in ('mp4', 'gif')} | {
        'sample.png'} == files
    video = media.read_video(str(out / f'stage{k}' / 'sample_0.gif'))
    assert video.shape == (5, *size, 3)
  final = media.read_video(str(out / 'sample_1.gif'))
  np.testing.assert_array_equal(
      final, media.read_video(str(out / 'stage1' / 'sample_1.gif')))
  assert media.read_image(str(out / 'sample.png')).shape[:2] == (N * 32,
                                                                 5 * 32)
