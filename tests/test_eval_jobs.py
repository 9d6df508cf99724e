"""The eval job end to end: the synthetic evaluators on moving_sprites, and
the FVD / FID protocol paths (UCF-101, K600 frame prediction, ImageNet) on
tiny generated data with random-weight feature networks."""

import json
import os
import subprocess
import sys
import types
import warnings

import jax
import numpy as np
import pytest

from tests.test_denoiser_training import _config as denoiser_config
from tests.test_distributed import _free_port
from tests.test_evaluation_stats import _fd_of_features
from tests.test_tokenizer import _load_config
from walt import config_lib
from walt import preflight
from walt.data import build
from walt.data import pipeline
from walt.data import sprites
from walt.data import video_ops
from walt.evaluation import eval_job
from walt.evaluation import sprites_features
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


def _psnr(x, y):
  """Independent numpy PSNR: per frame on [0, 1] (clipped), capped at
  100 dB, averaged over frames then clips."""
  unit = lambda a: (np.clip(np.asarray(a, np.float64), -1, 1) + 1) / 2
  mse = np.mean((unit(x) - unit(y)) ** 2, axis=(2, 3, 4))
  return float(np.mean(np.minimum(-10 * np.log10(np.maximum(mse, 1e-10)),
                                  100.0)))


def ssim_per_clip(x, y):
  """scikit-image's SSIM (11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 =
  0.03, population statistics, per channel) per frame on [0, 1] (clipped),
  averaged over frames: `[n]`."""
  from skimage.metrics import structural_similarity
  unit = lambda a: (np.clip(np.asarray(a, np.float64), -1, 1) + 1) / 2
  return np.asarray([np.mean([structural_similarity(
      unit(a), unit(b), gaussian_weights=True, sigma=1.5,
      use_sample_covariance=False, data_range=1.0, channel_axis=-1)
      for a, b in zip(u, v)]) for u, v in zip(x, y)])


def _ssim(x, y):
  """`ssim_per_clip` averaged over clips."""
  return float(np.mean(ssim_per_clip(x, y)))


def _frechet_sqrtm(a, b):
  """Frechet distance of feature sets `a` `[n1, d]`, `b` `[n2, d]` with
  `scipy.linalg.sqrtm` (the pytorch-fid formula; ddof=1 covariances). With
  n << d both covariances live in the span of the centred features, so they
  are taken in an orthonormal basis of it (tr sqrt(S1 S2) is unchanged; a
  d x d sqrtm takes minutes here)."""
  import scipy.linalg
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  ca, cb = a - a.mean(0), b - b.mean(0)
  q, _ = np.linalg.qr(np.concatenate([ca, cb]).T)
  s1 = np.cov(ca @ q, rowvar=False)
  s2 = np.cov(cb @ q, rowvar=False)
  with warnings.catch_warnings():  # singular: rank n - 1 < k
    warnings.simplefilter('ignore')
    covmean = scipy.linalg.sqrtm(s1 @ s2)
  diff = a.mean(0) - b.mean(0)
  return float(diff @ diff + np.trace(s1) + np.trace(s2)
               - 2 * np.trace(covmean).real)


def _inception_score(logits, splits):
  """exp(E_x KL(p(y|x) || p(y))) averaged over `splits` equal consecutive
  splits, with scipy's softmax and relative entropy."""
  import scipy.special
  import scipy.stats
  scores = []
  for part in np.split(scipy.special.softmax(
      np.asarray(logits, np.float64), axis=1), splits):
    py = part.mean(0)
    scores.append(np.exp(np.mean([scipy.stats.entropy(p, py) for p in part])))
  return float(np.mean(scores))


def _real_clips(c, frames, n):
  """The first `n` clips of the eval config's reference split, in order
  (read here, not through `tasks`)."""
  videos, labels = [], []
  for b in pipeline.eval_batches(c.data, batch_size=c.batch_size,
                                 num_examples=None, seed=c.seed,
                                 split=c.reference.split, frames=frames,
                                 resolution=(32, 32), build=c.data.build):
    videos.append(np.asarray(b['video'], np.float32))
    labels.append(np.asarray(b['label'])[:, 0])
  return np.concatenate(videos)[:n], np.concatenate(labels)[:n]


def _record_samples(monkeypatch):
  """Records what `tasks.generate` gives the eval tasks: a list of
  (seed, conditioned on frames?, videos)."""
  calls = []
  original = tasks.generate

  def generate(config, gen, labels, seed, cond_latent=None, cond_mask=None):
    videos = [np.asarray(v) for v in original(config, gen, labels, seed,
                                              cond_latent, cond_mask)]
    calls.append((seed, cond_latent is not None, np.concatenate(videos)))
    return iter(videos)
  monkeypatch.setattr(tasks, 'generate', generate)
  return calls


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


def test_sprites_eval_job(trained, sprites_data_dir, tmp_path, monkeypatch):
  """The sprites eval job's scores, recomputed from the samples it drew and
  the real clips (numpy PSNR, scikit-image SSIM, the oracle, an SVD Frechet
  distance). Catches a score of the wrong frames or arrays, e.g. an SSIM
  that is not the standard Gaussian-window SSIM of the predicted frames."""
  generator, config, _ = trained
  c = sprites_eval_config(generator, sprites_data_dir, config.data.name)
  # Every input is there (the generator's own tokenizer included).
  assert preflight.missing_inputs(c, str(tmp_path)) == []
  samples = _record_samples(monkeypatch)
  results = eval_job.run(c, str(tmp_path))
  step = config.total_steps
  r = _results(str(tmp_path), step)
  assert set(results) == {step} and r['num_samples'] == 16
  m = r['metrics']
  # The scores, recomputed here from the samples the job drew and the real
  # clips read independently: labels cycle over the 12 classes.
  (seed, given, videos), (_, given_p, predicted) = samples
  assert (seed, given, given_p) == (0, False, True)
  labels = np.arange(16) % 12
  oracle = sprites.classify_batch(video_ops.to_uint8(videos))
  assert m['class_accuracy'] == pytest.approx(np.mean(oracle == labels))
  for k in range(12):
    assert m[f'class_accuracy/{k}'] == pytest.approx(
        np.mean(oracle[labels == k] == k))
  # A right class is a right colour and a right shape.
  assert min(m['color_accuracy'], m['shape_accuracy']) >= m['class_accuracy']
  real, _ = _real_clips(c, 5, 16)
  # Frame prediction: frame 0 given, frames 1..4 scored; the baseline
  # repeats frame 0.
  assert m['prediction_psnr'] == pytest.approx(
      _psnr(predicted[:, 1:], real[:, 1:]), abs=1e-3)
  assert m['copy_last_frame_psnr'] == pytest.approx(
      _psnr(np.repeat(real[:, :1], 4, axis=1), real[:, 1:]), abs=1e-3)
  assert m['prediction_psnr'] != pytest.approx(m['copy_last_frame_psnr'],
                                               abs=1e-3)
  assert m['prediction_ssim'] == pytest.approx(
      _ssim(predicted[:, 1:], real[:, 1:]), abs=1e-4)
  assert m['copy_last_frame_ssim'] == pytest.approx(
      _ssim(np.repeat(real[:, :1], 4, axis=1), real[:, 1:]), abs=1e-4)
  # fvd_sprites: the Frechet distance between the sprites network's
  # features of the 16 samples and of the first 16 real clips.
  params = sprites_features.random_params(0)
  feats = lambda x: np.asarray(sprites_features.features(params, x)[0])
  assert m['fvd_sprites'] == pytest.approx(
      _fd_of_features(feats(real), feats(videos)), rel=1e-4, abs=1e-5)
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
  # A step the generator never saved.
  c2 = _eval_config('sprites', generator, sprites_data_dir, config.data.name,
                    step=step + 1)
  assert preflight.missing_inputs(c2, str(tmp_path)) == [
      f'step: no checkpoint at step {step + 1} in {generator}: [{step}]']


@pytest.fixture(scope='module')
def nine_frame_generator(sprites_data_dir, tokenizer_dir, tmp_path_factory):
  build.ensure_built(NINE_FRAMES, sprites_data_dir)
  return _train(sprites_data_dir, tokenizer_dir,
                str(tmp_path_factory.mktemp('gen9')), NINE_FRAMES, 9)


@pytest.mark.slow
def test_sprites_prediction_and_interpolation_scores(nine_frame_generator,
                                                     sprites_data_dir,
                                                     tmp_path, monkeypatch):
  """The `prediction` variant's metrics on a 9-frame model trained with
  frame conditioning; baselines scored on the same frames (all recomputed
  here from the job's samples and the real clips). Catches a PSNR or SSIM
  (scikit-image's here) of other frames than the ones not given."""
  c = _eval_config('sprites', nine_frame_generator, sprites_data_dir,
                   NINE_FRAMES, num_samples=8, batch_size=8, cond_frames=5,
                   eval_frames=9, interpolate=True)
  samples = _record_samples(monkeypatch)
  eval_job.run(c, str(tmp_path))
  r = _results(str(tmp_path), 2)
  m, p = r['metrics'], r['protocol']
  real, _ = _real_clips(c, 9, 8)
  (_, _, videos), (_, given, predicted), (_, given_i, interpolated) = samples
  assert given and given_i
  # Prediction: frames 0..4 given (latent frames 0, 1), 5..8 scored; the
  # baseline repeats frame 4.
  assert m['prediction_psnr'] == pytest.approx(
      _psnr(predicted[:, 5:], real[:, 5:]), abs=1e-3)
  assert m['copy_last_frame_psnr'] == pytest.approx(
      _psnr(np.repeat(real[:, 4:5], 4, axis=1), real[:, 5:]), abs=1e-3)
  # Interpolation: frame 0 and frames 5..8 (the last latent frame) given,
  # 1..4 scored; the blend goes linearly from frame 0 to frame 5.
  w = np.arange(1, 5).reshape(1, 4, 1, 1, 1) / 5
  blend = (1 - w) * real[:, :1] + w * real[:, 5:6]
  assert m['interpolation_psnr'] == pytest.approx(
      _psnr(interpolated[:, 1:5], real[:, 1:5]), abs=1e-3)
  assert m['linear_blend_psnr'] == pytest.approx(
      _psnr(blend, real[:, 1:5]), abs=1e-3)
  # The four differ: each scores its own frames.
  assert len({round(m[k], 3) for k in (
      'prediction_psnr', 'copy_last_frame_psnr', 'interpolation_psnr',
      'linear_blend_psnr')}) == 4
  # SSIM: scikit-image's on the same frames.
  assert m['prediction_ssim'] == pytest.approx(
      _ssim(predicted[:, 5:], real[:, 5:]), abs=1e-4)
  assert m['copy_last_frame_ssim'] == pytest.approx(
      _ssim(np.repeat(real[:, 4:5], 4, axis=1), real[:, 5:]), abs=1e-4)
  assert m['interpolation_ssim'] == pytest.approx(
      _ssim(interpolated[:, 1:5], real[:, 1:5]), abs=1e-4)
  assert m['linear_blend_ssim'] == pytest.approx(
      _ssim(blend, real[:, 1:5]), abs=1e-4)
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


def test_eval_sampler_takes_per_condition_guidance():
  c = _load_config('configs/eval/sprites.py', 'prediction')
  kwargs = tasks.sample_kwargs(c)
  assert 'guidance_class' not in kwargs and 'guidance_frames' not in kwargs
  c.sampler.guidance_frames = 2.0
  kwargs = tasks.sample_kwargs(c)
  assert kwargs['guidance_frames'] == 2.0 and 'guidance_class' not in kwargs
  assert tasks.sampler_protocol(c)['guidance_frames'] == 2.0


def _record_predictions(monkeypatch):
  """Records the videos `Generator.sample` returns (the frame-prediction
  task calls it directly): a list of `[b, T, H, W, 3]`."""
  from walt.inference import generator as generator_lib
  calls = []
  original = generator_lib.Generator.sample

  def sample(self, *args, **kwargs):
    videos = original(self, *args, **kwargs)
    calls.append(np.asarray(videos))
    return videos
  monkeypatch.setattr(generator_lib.Generator, 'sample', sample)
  return calls


# Both need the 9-frame generator (a fixture of its own): CI runs them.
@pytest.mark.slow
@pytest.mark.parametrize('name', ['ucf101', 'k600_frame_prediction'])
def test_fvd_eval_jobs(name, nine_frame_generator, sprites_data_dir,
                       tmp_path, monkeypatch):
  """The FVD tasks' protocol, and each repeat's FVD recomputed here: the
  (random) I3D's features of the samples the job drew and of the first real
  clips, read here, and the Frechet distance with scipy's sqrtm. Catches an
  FVD of the wrong sets (other real clips, frames, a stale repeat) or a
  wrong Frechet distance."""
  from walt.evaluation import i3d
  extra = {'cond_frames': 5} if name == 'k600_frame_prediction' else {}
  c = _eval_config(name, nine_frame_generator, sprites_data_dir, NINE_FRAMES,
                   num_samples=4, batch_size=8, repeats=2, eval_frames=9,
                   **extra)
  c.unlock()
  c.features.weights = 'random:0'
  c.lock()
  if name == 'ucf101':
    samples = _record_samples(monkeypatch)
  else:
    predictions = _record_predictions(monkeypatch)
  eval_job.run(c, str(tmp_path))
  r = _results(str(tmp_path), 2)
  m, p = r['metrics'], r['protocol']
  assert r['num_samples'] == 8
  # Two repeats draw other samples, so score differently; the reported
  # FVD is their mean and spread.
  fvds = p['fvd_per_repeat']
  assert len(fvds) == 2 and fvds[0] != pytest.approx(fvds[1], rel=1e-6)
  assert m['fvd'] == pytest.approx(np.mean(fvds))
  assert m['fvd_std'] == pytest.approx(np.std(fvds))
  fakes = ([v for _, _, v in samples] if name == 'ucf101' else predictions)
  assert [len(v) for v in fakes] == [4, 4]  # one call per repeat
  real, _ = _real_clips(c, 9, 4)
  features = jax.jit(i3d.fvd_features)
  params = i3d.random_params(0)
  real_features = features(params, real)
  for fake, fvd in zip(fakes, fvds):
    assert fvd == pytest.approx(
        _frechet_sqrtm(real_features, features(params, fake[:, :9])),
        rel=1e-4)
  for key in ('feature_network', 'resize', 'value_range', 'frames',
              'frame_stride', 'split', 'repeats', 'sampler', 'steps',
              'guidance'):
    assert key in p, key
  assert p['frames'] == 9 and 'RANDOM' in p['warning']
  if name == 'ucf101':
    # 4 samples a repeat make 4 one-sample IS splits (IS = 1 by
    # construction): IS is checked in test_imagenet_eval_job.
    assert len(p['is_per_repeat']) == 2
  else:
    assert p['cond_frames'] == 5 and p['predicted_frames'] == 4


@pytest.mark.slow
def test_imagenet_eval_job(sprites_data_dir, tokenizer_dir, tmp_path,
                           monkeypatch):
  """FID and IS of 20 class-conditional samples (10 IS splits of 2),
  recomputed here with the (random) Inception's features and logits of the
  samples the job drew and of the first 20 real images, scipy's sqrtm and
  scipy's relative entropy. Catches an FID of the wrong sets or a wrong
  Frechet distance, and an IS of wrong splits or a wrong formula."""
  from walt.evaluation import inception
  generator = _train(sprites_data_dir, tokenizer_dir, str(tmp_path / 'gen1'),
                     'moving_sprites/5x32x32', 1)
  c = _eval_config('imagenet', generator, sprites_data_dir,
                   'moving_sprites/5x32x32', num_samples=20, batch_size=8)
  c.unlock()
  c.features.weights = 'random:0'
  c.reference.stats = ''  # statistics of the real validation images
  c.lock()
  samples = _record_samples(monkeypatch)
  eval_job.run(c, str(tmp_path / 'eval'))
  r = _results(str(tmp_path / 'eval'), 2)
  m = r['metrics']
  [(seed, given, videos)] = samples
  assert (seed, given, videos.shape) == (0, False, (20, 1, 32, 32, 3))
  real, _ = _real_clips(c, 1, 20)
  features = jax.jit(inception.features)
  params = inception.random_params(0)
  real_pool, _ = features(params, real[:, 0])
  pool, logits = features(params, videos[:, 0])
  assert m['fid'] == pytest.approx(_frechet_sqrtm(real_pool, pool), rel=1e-4)
  assert r['protocol']['is_splits'] == 10
  assert m['is'] == pytest.approx(_inception_score(logits, 10), rel=1e-4)
  assert m['is'] > 1.0 + 1e-6  # two samples a split: not 1 by construction
  with np.load(r['protocol']['samples_npz'], allow_pickle=False) as f:
    np.testing.assert_array_equal(f['arr_0'], video_ops.to_uint8(videos[:, 0]))
    np.testing.assert_array_equal(f['labels'], np.arange(20) % 12)


def _fake_generator(monkeypatch, c, frames, noise_by_seed):
  """A stand-in generator whose samples are the real clips the task reads
  (`tasks.generate` replaced), plus `noise_by_seed[seed]` x a fixed
  Gaussian noise."""
  from walt.parallel import mesh as mesh_lib
  gen = types.SimpleNamespace(
      mesh=mesh_lib.create_mesh(c.mesh.to_dict()), num_classes=12,
      data_config=types.SimpleNamespace(frames=frames, resolution=(32, 32)))

  def generate(config, gen, labels, seed, cond_latent=None, cond_mask=None):
    del gen, cond_latent, cond_mask
    real, _ = _real_clips(config, frames, len(labels))
    noise = np.random.default_rng(0).normal(size=real.shape)
    yield (real + noise_by_seed[seed] * noise).astype(np.float32)
  monkeypatch.setattr(tasks, 'generate', generate)
  return gen


@pytest.mark.slow
def test_fid_and_fvd_of_real_clips_are_zero(sprites_data_dir, monkeypatch,
                                            tmp_path):
  """The FVD and FID paths, with samples that are the real clips: 0 (real
  and sample features go through the same frames, resize and network), and
  more than 0 once noise is added."""
  build.ensure_built(NINE_FRAMES, sprites_data_dir)
  c = _eval_config('ucf101', 'fake', sprites_data_dir, NINE_FRAMES,
                   num_samples=4, batch_size=8, repeats=2, eval_frames=9)
  c.unlock()
  c.features.weights = 'random:0'
  c.lock()
  gen = _fake_generator(monkeypatch, c, 9, [0.0, 0.1])
  m, _, p = tasks.ucf101(c, gen, str(tmp_path), 0)
  same, noised = p['fvd_per_repeat']
  assert same < 1e-6 * noised and noised > 0, (same, noised)
  c = _eval_config('imagenet', 'fake', sprites_data_dir,
                   'moving_sprites/5x32x32', num_samples=8, batch_size=8)
  c.unlock()
  c.features.weights = 'random:0'
  c.reference.stats = ''
  c.save_samples = False
  c.lock()
  fids = []
  for level in (0.0, 0.1):
    gen = _fake_generator(monkeypatch, c, 1, [level])
    fids.append(tasks.imagenet(c, gen, str(tmp_path), 0)[0]['fid'])
  assert fids[0] < 1e-6 * fids[1] and fids[1] > 0, fids


@pytest.mark.slow
def test_sprites_features_separate_real_from_noise(sprites_data_dir):
  """fvd_sprites' network, after a short training run, sees the sprites'
  colours (the class it is trained on): clips with their colour channels
  rotated (red sprites turn blue, ...) are far from the real clips in
  Frechet distance, >4x the distance between two halves of the real data,
  where random weights (the control) measure about 1x. Catches features
  that do not come from the trained weights (a random network, as a
  weight-loading slip would give) and a training run that learns nothing;
  any network, random ones too, separates clips from uniform noise."""
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
  recoloured = real[..., [1, 2, 0]]

  def distances(weights):
    """FD(real, real), FD(real, recoloured), FD(real, noise): disjoint
    halves of the 64 validation clips."""
    feats = lambda x: np.asarray(sprites_features.features(weights, x)[0])
    s = lambda x: stats.FeatureStats(sprites_features.FEATURE_DIM).add(
        feats(x))
    first = s(real[:32])
    return [stats.stats_frechet_distance(first, s(x[32:]))
            for x in (real, recoloured, noise)]

  real_real, real_recoloured, real_noise = distances(params)
  assert real_real < real_noise
  assert real_recoloured > 4 * real_real, (real_real, real_recoloured)
  control_real, control_recoloured, _ = distances(
      sprites_features.random_params(0))
  assert control_recoloured < 2 * control_real, (control_real,
                                                 control_recoloured)


def test_eval_preflight_knows_what_each_task_reads(tmp_path):
  """Which inputs each task needs, found missing without loading anything:
  FID against reference statistics reads no real data; the sprites oracle
  needs neither weights nor data; polling waits for the generator only."""
  none = str(tmp_path / 'none')

  def problems(name, **fields):
    c = _eval_config(name, str(tmp_path / 'denoiser'), none,
                     'moving_sprites/5x32x32', **fields)
    return preflight.missing_inputs(c, str(tmp_path / 'eval'))

  stats_path = str(tmp_path / 'VIRTUAL_imagenet256_labeled.npz')
  found = problems('imagenet', reference=dict(stats=stats_path, split='train',
                                              num_examples=0))
  assert [p.split(':')[0] for p in found] == [
      'features.weights', 'reference.stats', 'generator_workdir']
  assert 'inception weights not found' in found[0]
  assert '--network=inception' in found[0]
  assert f'reference statistics not found at {stats_path}' in found[1]
  assert 'ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz' in found[1]
  assert [p.split(':')[0] for p in problems('sprites')] == ['generator_workdir']
  found = problems('sprites', cond_frames=1, eval_frames=5, poll_seconds=60)
  assert [p.split(' ')[0] for p in found] == ['reference.split'], found
  assert '--dataset=moving_sprites/5x32x32' in found[0]
  assert problems('sprites', poll_seconds=60) == []


def test_oracle_scores_real_clips_and_wrong_labels(sprites_data_dir):
  """The sprites oracle's scores: near 1 on real clips with their labels;
  labels moved to the next class (the next colour, the same shape except
  after the last colour) score 0 on class and colour, 3/4 on shape; random
  labels score near chance."""
  from walt.evaluation import oracle
  c = _eval_config('sprites', 'unused', sprites_data_dir,
                   'moving_sprites/5x32x32', batch_size=16)
  videos, labels = _real_clips(c, 5, 48)
  assert len(labels) == 48 and len(set(labels)) == 12
  right = oracle.score_samples(c.data.name, videos, labels)
  assert right['class_accuracy'] >= 0.95, right
  assert min(right['color_accuracy'], right['shape_accuracy']) >= 0.95
  shifted = (labels + 1) % 12
  wrong = oracle.score_samples(c.data.name, videos, shifted)
  assert wrong['class_accuracy'] <= 0.05 and wrong['color_accuracy'] <= 0.05
  expected_shape = np.mean(labels % 4 != 3)  # the shape changes after yellow
  assert abs(wrong['shape_accuracy'] - expected_shape) <= 0.05
  shuffled = np.random.default_rng(0).permutation(labels)
  chance = oracle.score_samples(c.data.name, videos, shuffled)
  assert chance['class_accuracy'] <= 0.25, chance  # about 1/12
  assert oracle.score_samples('ucf101', videos, labels) == {}
