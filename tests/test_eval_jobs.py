"""The eval job end to end: the synthetic evaluators on moving_sprites, and
the FVD / FID protocol paths (UCF-101, K600 frame prediction, ImageNet) on
tiny generated data with random-weight feature networks."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from tests.test_denoiser_training import _config as denoiser_config
from tests.test_distributed import _free_port
from tests.test_tokenizer import _load_config
from walt import config_lib
from walt.data import build
from walt.evaluation import eval_job
from walt.evaluation import tasks
from walt.train import denoiser_trainer

NINE_FRAMES = 'moving_sprites/9x32x32'
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _eval_config(name, generator, data_dir, dataset, **fields):
  c = _load_config(f'configs/eval/{name}.py', None)
  c.unlock()
  c.generator_workdir = generator
  c.data.update({'name': dataset, 'data_dir': data_dir})
  c.sampler.steps = 3
  c.features.batch_size = 8
  c.reference.split = 'validation'
  c.update(fields)
  c.lock()
  config_lib.validate(c, extra=eval_job.VALIDATORS)
  return c


def _results(workdir, step):
  with open(os.path.join(workdir, 'eval', str(step), 'results.json')) as f:
    return json.load(f)


def _train(data_dir, tokenizer_dir, workdir, dataset, frames, steps=2):
  c = denoiser_config(data_dir, tokenizer_dir, steps=steps)
  c.unlock()
  c.data.update({'name': dataset, 'frames': frames,
                 'image_fraction': 0.0 if frames == 1 else 0.25})
  c.eval_every = 0
  c.lock()
  denoiser_trainer.run(c, workdir)
  return workdir


def sprites_eval_config(generator, data_dir, dataset):
  c = _eval_config('sprites', generator, data_dir, dataset, num_samples=16,
                   batch_size=16, cond_frames=1, eval_frames=5)
  c.unlock()
  c.features.weights = 'random:0'  # the fvd_sprites network (path test)
  c.lock()
  return c


def test_sprites_eval_job(trained, sprites_data_dir, tmp_path):
  generator, config, _ = trained
  c = sprites_eval_config(generator, sprites_data_dir, config.data.name)
  results = eval_job.run(c, str(tmp_path))
  step = config.total_steps
  r = _results(str(tmp_path), step)
  assert set(results) == {step} and r['num_samples'] == 16
  m = r['metrics']
  for key in ('class_accuracy', 'color_accuracy', 'shape_accuracy',
              'prediction_psnr', 'prediction_ssim',
              'copy_last_frame_psnr', 'copy_last_frame_ssim', 'fvd_sprites'):
    assert np.isfinite(m[key]), key
  assert 0 <= m['class_accuracy'] <= 1
  assert r['protocol']['cond_frames'] == 1
  assert r['protocol']['predicted_frames'] == 4
  assert r['protocol']['steps'] == 3
  assert r['protocol']['fvd_sprites']['note'] == 'not FVD'
  assert 'fvd' not in m
  # Already evaluated: a second run (no polling) evaluates nothing new.
  assert eval_job.run(c, str(tmp_path)) == {}
  # Two processes (4 devices each) sharing the sampling and the features
  # write the same scores.
  port = _free_port()
  env = {**os.environ, 'PYTHONPATH': ROOT}
  env.pop('XLA_FLAGS', None)
  out = str(tmp_path / 'two_processes')
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'tests', 'eval_worker.py'), str(i),
       '2', str(port), generator, sprites_data_dir, config.data.name, out],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  for p in procs:
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log[-3000:]
  m2 = _results(out, step)['metrics']
  assert m2.keys() == m.keys()
  for key in m:
    assert m2[key] == pytest.approx(m[key], rel=1e-3, abs=1e-3), key
  # A missing generator says what to do.
  c2 = _eval_config('sprites', str(tmp_path / 'none'), sprites_data_dir,
                    config.data.name)
  with pytest.raises(FileNotFoundError, match='train a denoiser'):
    eval_job.run(c2, str(tmp_path / 'eval2'))


@pytest.fixture(scope='module')
def nine_frame_generator(sprites_data_dir, tokenizer_dir, tmp_path_factory):
  build.ensure_built(NINE_FRAMES, sprites_data_dir)
  return _train(sprites_data_dir, tokenizer_dir,
                str(tmp_path_factory.mktemp('gen9')), NINE_FRAMES, 9)


def test_sprites_prediction_and_interpolation_scores(nine_frame_generator,
                                                     sprites_data_dir,
                                                     tmp_path):
  """The `prediction` variant's metrics on a 9-frame model trained with
  frame conditioning; baselines scored on the same frames."""
  c = _eval_config('sprites', nine_frame_generator, sprites_data_dir,
                   NINE_FRAMES, num_samples=8, batch_size=8, cond_frames=5,
                   eval_frames=9, interpolate=True)
  eval_job.run(c, str(tmp_path))
  r = _results(str(tmp_path), 2)
  m, p = r['metrics'], r['protocol']
  for key in ('prediction_psnr', 'prediction_ssim', 'copy_last_frame_psnr',
              'interpolation_psnr', 'interpolation_ssim',
              'linear_blend_psnr', 'linear_blend_ssim'):
    assert np.isfinite(m[key]), key
  assert p['predicted_frames'] == 4
  assert p['frame_conditioning'] == "the model's frame channels"
  assert 'frames 1..4 scored' in p['interpolation']


def test_frame_scores_need_frame_training_or_reconstruction_guidance():
  untrained = types.SimpleNamespace(train_config={}, trained_with_frames=False)
  c = _load_config('configs/eval/sprites.py', 'prediction')
  with pytest.raises(ValueError, match='trained without frame conditioning'):
    tasks.frame_conditioning(c, untrained)
  c.sampler.reconstruction_weight = 2.0
  assert tasks.frame_conditioning(c, untrained) == (
      2.0, 'reconstruction guidance, w_r = 2.0')


@pytest.mark.parametrize('name', ['ucf101', 'k600_frame_prediction'])
def test_fvd_eval_jobs(name, nine_frame_generator, sprites_data_dir,
                       tmp_path):
  extra = {'cond_frames': 5} if name == 'k600_frame_prediction' else {}
  c = _eval_config(name, nine_frame_generator, sprites_data_dir, NINE_FRAMES,
                   num_samples=4, batch_size=8, repeats=2, eval_frames=9,
                   **extra)
  c.unlock()
  c.features.weights = 'random:0'
  c.lock()
  eval_job.run(c, str(tmp_path))
  r = _results(str(tmp_path), 2)
  m, p = r['metrics'], r['protocol']
  assert r['num_samples'] == 8 and m['fvd'] >= 0 and np.isfinite(m['fvd_std'])
  assert len(p['fvd_per_repeat']) == 2
  for key in ('feature_network', 'resize', 'value_range', 'frames',
              'frame_stride', 'split', 'repeats', 'sampler', 'steps',
              'guidance'):
    assert key in p, key
  assert p['frames'] == 9 and 'RANDOM' in p['warning']
  if name == 'ucf101':
    assert m['is'] >= 1.0 - 1e-9
  else:
    assert p['cond_frames'] == 5 and p['predicted_frames'] == 4


def test_imagenet_eval_job(sprites_data_dir, tokenizer_dir, tmp_path):
  generator = _train(sprites_data_dir, tokenizer_dir, str(tmp_path / 'gen1'),
                     'moving_sprites/5x32x32', 1)
  c = _eval_config('imagenet', generator, sprites_data_dir,
                   'moving_sprites/5x32x32', num_samples=8, batch_size=8)
  c.unlock()
  c.features.weights = 'random:0'
  c.reference.stats = ''  # statistics of the real validation images
  c.lock()
  eval_job.run(c, str(tmp_path / 'eval'))
  r = _results(str(tmp_path / 'eval'), 2)
  assert r['metrics']['fid'] >= 0 and r['metrics']['is'] >= 1.0 - 1e-9
  with np.load(r['protocol']['samples_npz']) as f:
    assert f['arr_0'].shape == (8, 32, 32, 3) and f['arr_0'].dtype == np.uint8


def test_sprites_features_separate_real_from_noise(sprites_data_dir):
  """fvd_sprites' network: two halves of the real data are closer to each
  other than real clips are to noise, and a short training run learns."""
  from walt.data import pipeline
  from walt.evaluation import sprites_features, stats
  params, accs = sprites_features.train(sprites_data_dir, 'moving_sprites/5x32x32',
                                        frames=5, steps=30, batch_size=16,
                                        log_every=0)
  assert np.mean(accs[-10:]) > 1.5 / 12  # above chance (1/12)
  spec = pipeline.DataSpec(name='moving_sprites/5x32x32',
                           data_dir=sprites_data_dir, split='validation',
                           frames=5, resolution=(32, 32), shuffle=False,
                           random_crop=False, num_epochs=1)
  real = np.concatenate([b['video'] for b in pipeline.make_dataset(
      spec, global_batch_size=32, seed=0)])[:64]
  noise = np.random.default_rng(0).uniform(-1, 1, real.shape).astype(np.float32)
  feats = lambda x: np.asarray(sprites_features.features(params, x)[0])
  s = lambda x: stats.FeatureStats(sprites_features.FEATURE_DIM).add(feats(x))
  real_real = stats.stats_frechet_distance(s(real[:32]), s(real[32:]))
  real_noise = stats.stats_frechet_distance(s(real[:32]), s(noise[32:]))
  assert real_real < real_noise
