"""`python -m walt.quickstart` end to end on a tiny configuration (`--set`
overrides of its two configs): `quickstart.json`, the sample videos and
grid; a rerun reuses the data and the latent cache (nothing rebuilt or
re-encoded); and, run without JAX_PLATFORMS, no libtpu noise."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.test_platforms import TPU_NOISE
from walt import media

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = 'moving_sprites/5x32x32'
# Seconds of training; the figures mean nothing.
OVERRIDES = {
    'tokenizer': {
        'data.name': TINY, 'data.frames': 5, 'model.base_channels': 8,
        'model.num_groups': 4, 'total_steps': 6, 'log_every': 3,
        'checkpoint_every': 6, 'eval_every': 6, 'summary_every': 0,
        'eval.frames': 5, 'eval.num_examples': 8, 'eval.batch_size': 8,
        'latent_stats.num_examples': 8, 'latent_stats.batch_size': 8,
        'optimizer.warmup_steps': 2},
    'denoiser': {
        'data.name': TINY, 'data.frames': 5, 'model.num_layers': 2,
        'model.width': 32, 'model.num_heads': 2, 'total_steps': 4,
        'batch_size': 8, 'log_every': 2, 'checkpoint_every': 4,
        'eval_every': 4, 'eval.steps': 2, 'eval.samples_per_class': 1,
        'eval.batch_size': 12, 'eval.num_summary_videos': 3,
        'eval.reference_examples': 0, 'latents.num_examples': 16,
        'latents.batch_size': 8, 'optimizer.warmup_steps': 2},
}
FIELDS = {'tokenizer_psnr', 'tokenizer_ssim', 'sample_class_accuracy',
          'sample_color_accuracy', 'sample_shape_accuracy', 'num_samples',
          'sampler', 'wall_seconds', 'tokenizer_workdir', 'denoiser_workdir',
          'samples', 'sample_grid'}

pytestmark = pytest.mark.slow  # two quickstart runs: ~2-4 min


def _quickstart(workdir):
  """The CLI as a user runs it: one CPU device, JAX_PLATFORMS unset."""
  env = {**os.environ, 'PYTHONPATH': ROOT}
  env.pop('JAX_PLATFORMS', None)
  env.pop('XLA_FLAGS', None)
  # Share this session's XLA cache: the rerun compiles nothing new.
  if jax.config.jax_compilation_cache_dir:
    env.setdefault('JAX_COMPILATION_CACHE_DIR',
                   jax.config.jax_compilation_cache_dir)
  sets = [f'--set={job}.{k}={v}' for job, fields in OVERRIDES.items()
          for k, v in fields.items()]
  r = subprocess.run([sys.executable, '-m', 'walt.quickstart',
                      f'--workdir={workdir}', *sets], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=1200)
  assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
  noise = [line for line in r.stderr.splitlines() if TPU_NOISE.search(line)]
  assert not noise, '\n'.join(noise[:10])
  return r.stdout


def _mtimes(directory):
  """{relative path: mtime} of every file under `directory`."""
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      out[os.path.relpath(path, directory)] = os.stat(path).st_mtime_ns
  return out


def test_quickstart_runs_tiny_and_a_rerun_reuses_data_and_latents(tmp_path):
  workdir = tmp_path / 'qs'
  out = _quickstart(workdir)
  for stage in ('1/5 building moving_sprites/5x32x32', '2/5 training the '
                'tokenizer', '3/5 encoding the training clips once',
                '4/5 training the denoiser', '5/5 collecting the scores'):
    assert stage in out, out[-3000:]
  summary = json.loads((workdir / 'quickstart.json').read_text())
  assert set(summary) == FIELDS
  assert np.isfinite(summary['tokenizer_psnr']) and summary['wall_seconds'] > 0
  assert 0 < summary['tokenizer_ssim'] <= 1
  for key in ('sample_class_accuracy', 'sample_color_accuracy',
              'sample_shape_accuracy'):
    assert 0 <= summary[key] <= 1, key
  assert summary['num_samples'] == 12  # one per class
  assert summary['sampler']['steps'] == 2
  assert summary['tokenizer_workdir'] == str(workdir / 'tokenizer')
  assert summary['samples'] == str(workdir / 'denoiser' / 'samples' / '4')
  # The videos (mp4 + gif of the first 3 classes) and the grid (a row of 5
  # frames per video).
  files = set(os.listdir(summary['samples']))
  assert {f'class_samples_{i}.{ext}' for i in range(3)
          for ext in ('mp4', 'gif')} <= files
  video = media.read_video(os.path.join(summary['samples'],
                                       'class_samples_0.mp4'))
  assert video.shape == (5, 32, 32, 3)
  grid = media.read_image(summary['sample_grid'])
  assert grid.shape[:2] == (3 * 32, 5 * 32)

  # The rerun resumes: no data build, no encoding, no training step.
  data, latents = _mtimes(workdir / 'data'), _mtimes(workdir / 'latents')
  checkpoints = {job: sorted(os.listdir(workdir / job / 'checkpoints'))
                 for job in ('tokenizer', 'denoiser')}
  assert data and latents
  out = _quickstart(workdir)
  assert '3/5 encoding' not in out, out[-3000:]
  assert ' step ' not in out  # no progress line: nothing trained
  assert _mtimes(workdir / 'data') == data
  assert _mtimes(workdir / 'latents') == latents
  assert {job: sorted(os.listdir(workdir / job / 'checkpoints'))
          for job in checkpoints} == checkpoints
  again = json.loads((workdir / 'quickstart.json').read_text())
  assert again['tokenizer_psnr'] == pytest.approx(summary['tokenizer_psnr'],
                                                  abs=1e-4)
