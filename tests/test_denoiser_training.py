"""The denoiser job end to end on tiny moving_sprites: the loss falls, eval
samples every class and scores them with the oracle, the latent cache holds
exactly the on-the-fly latents, sampling API and CLI."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import mediapy
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.conftest import CompileCounter
from tests.conftest import TINY_DATASET
from tests.test_tokenizer import _load_config
from walt import config_lib
from walt import inference
from walt import sampler
from walt.data import latent_cache
from walt.data import pipeline
from walt.data import video_ops
from walt.diffusion import sampling
from walt.inference import frames as frames_lib
from walt.evaluation import oracle
from walt.tools import denoiser_probe
from walt.tools import sampler_compare
from walt.parallel import mesh as mesh_lib
from walt.train import denoiser_trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 60


def _config(data_dir, tokenizer_dir, steps=STEPS, cache=''):
  c = _load_config('configs/walt/sprites.py', 'quick')
  c.unlock()
  c.data.update({'name': TINY_DATASET, 'data_dir': data_dir, 'frames': 5,
                 'resolution': (32, 32), 'image_fraction': 0.25})
  c.tokenizer.workdir = tokenizer_dir
  c.latents.cache = cache
  # Self-conditioning on (the quick config turns it off for speed).
  c.model.update({'num_layers': 2, 'width': 32, 'num_heads': 2,
                  'self_conditioning': True})
  c.diffusion.self_cond_prob = 0.9
  # Half the clips given their first latent frame (1 pixel frame).
  c.diffusion.update({'frame_cond_prob': 0.5, 'frame_cond_frames': 1})
  c.optimizer.update({'lr': 3e-3, 'warmup_steps': 5})
  c.batch_size, c.total_steps = 16, steps
  c.log_every, c.checkpoint_every = 1, steps
  c.eval_every, c.summary_every = steps, 0
  c.eval.update({'steps': 4, 'samples_per_class': 1, 'batch_size': 12,
                 'num_summary_videos': 2, 'reference_examples': 12})
  c.mesh.fsdp = 2
  c.lock()
  config_lib.validate(c, extra=denoiser_trainer.VALIDATORS)
  return c


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_loss_falls_and_eval_scores_every_class(trained, tokenizer_dir):
  workdir, config, state = trained
  assert int(state.step) == STEPS
  rows = [r for r in _metrics(workdir) if 'loss' in r]
  assert {'step', 'loss', 'steps_per_sec', 'self_cond_fraction'} <= set(
      rows[0])
  first = np.mean([r['loss'] for r in rows[:5]])
  last = np.mean([r['loss'] for r in rows[-10:]])
  assert last < 0.8 * first, (first, last)
  # Self-conditioning was used on most (not all) samples.
  assert 0.7 < np.mean([r['self_cond_fraction'] for r in rows]) < 1.0
  results = json.load(open(os.path.join(workdir, 'eval', str(STEPS),
                                        'results.json')))
  assert results['num_samples'] == 12
  m = results['metrics']
  # One sample per class: each class scores 0 or 1, the overall score is
  # their mean, and a right class is a right colour and shape.
  per_class = [m[f'class_accuracy/{k}'] for k in range(12)]
  assert set(per_class) <= {0.0, 1.0}
  assert m['class_accuracy'] == pytest.approx(np.mean(per_class))
  assert min(m['color_accuracy'], m['shape_accuracy']) >= m['class_accuracy']
  # The tokenizer's ceiling, recomputed here: the oracle on round trips of
  # the first validation clips (one batch: 12 rounded up to the 8-way batch
  # split, 16), up to one clip flipped by another batching.
  mesh = mesh_lib.create_mesh({'data': -1})
  tok = inference.load_tokenizer(tokenizer_dir, mesh)
  batch = next(pipeline.eval_batches(config.data, batch_size=16,
                                     num_examples=16, seed=config.seed,
                                     split='validation'))
  recon = np.asarray(tok.decode(tok.encode(batch['video'])))
  ceiling = oracle.score_samples(config.data.name, recon,
                                 np.asarray(batch['label'])[:, 0])
  assert abs(results['reconstruction_class_accuracy']
             - ceiling['class_accuracy']) <= 1 / 16 + 1e-6
  assert results['protocol']['steps'] == 4
  assert results['protocol']['spacing'] == 'trailing'
  files = os.listdir(os.path.join(workdir, 'samples', str(STEPS)))
  assert {'class_samples_0.mp4', 'class_samples_0.gif',
          'class_samples.png'} <= set(files)


def test_evaluation_compiles_once_per_job(trained, tmp_path):
  """A second eval (and summary) of the same task compiles nothing: the
  generator, tokenizer and their sampling functions live for the job."""
  _, config, state = trained
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  task = denoiser_trainer.DenoiserTask(config, str(tmp_path), mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    task.evaluate(state, 1)
    with CompileCounter() as second:
      task.evaluate(state, 2)
  assert second.count == 0


@pytest.mark.slow
def test_denoiser_probe_scores_predictions_against_the_clips(trained):
  """At t=0 the noisy latent is the clean one, so the probe's x0 decodes to
  the tokenizer's reconstruction: its oracle scores are those of the round
  trip (labels aligned with their clips through the batching)."""
  workdir, _, _ = trained
  labels = np.arange(12)
  swapped = denoiser_probe.swap_shape(labels)
  np.testing.assert_array_equal(swapped % 4, labels % 4)  # colour kept
  assert np.all(swapped // 4 != labels // 4)  # shape changed
  gen = inference.load_denoiser(workdir)
  out = denoiser_probe.probe(gen, [0, 999], num_examples=12, batch_size=5)
  assert set(out) == {0, 999}
  videos, clip_labels = [], []
  for b in pipeline.eval_batches(gen.data_config, batch_size=12,
                                 num_examples=12, frames=5):
    videos.append(b['video'])
    clip_labels.append(b['label'][:, 0])
  recon = gen.tokenizer.decode(gen.tokenizer.encode(
      jnp.asarray(np.concatenate(videos))))
  ceiling = oracle.score_samples(gen.data_config.name, np.asarray(recon),
                                 np.concatenate(clip_labels))
  for key in ('class_accuracy', 'color_accuracy', 'shape_accuracy'):
    assert abs(out[0][key] - ceiling[key]) <= 1 / 12 + 1e-6, key
  for r in out.values():  # a right class is a right colour and shape
    assert min(r['color_accuracy'], r['shape_accuracy']) >= (
        r['class_accuracy'])


def test_sized_config_takes_explicit_fields():
  c = _load_config('configs/walt/ucf101.py', 'L')
  assert denoiser_trainer.model_config(c).num_layers == 24
  with c.unlocked():
    c.model.num_layers = 12
  cfg = denoiser_trainer.model_config(c)
  assert (cfg.num_layers, cfg.width, cfg.num_heads) == (12, 1024, 16)


def test_sampler_api_is_deterministic_and_conditional(trained):
  workdir, _, _ = trained
  gen = sampler.Generator.load(workdir)
  a = gen.sample([0, 5, 11], seed=3, steps=3)
  b = gen.sample([0, 5, 11], seed=3, steps=3)
  assert a.shape == (3, 5, 32, 32, 3)
  np.testing.assert_array_equal(a, b)
  # The videos are the tokenizer's decoding of the sampled latents.
  z = gen.sample_latents([0, 5, 11], seed=3, steps=3)
  assert z.shape == (3, *gen.config.latent_shape)
  np.testing.assert_allclose(a, np.asarray(gen.tokenizer.decode(z)),
                             atol=1e-4)
  # Another seed gives other samples, every one of them.
  other = gen.sample([0, 5, 11], seed=4, steps=3)
  assert np.all(np.abs(other - a).max(axis=(1, 2, 3, 4)) > 1e-3)
  # Another class gives another sample; guidance runs.
  c = gen.sample([1, 5, 11], seed=3, steps=3)
  assert np.abs(c[0] - a[0]).max() > 0
  np.testing.assert_array_equal(c[1:], a[1:])  # per-sample noise is fixed
  g = gen.sample([0, 5, 11], seed=3, steps=3, guidance=2.0)
  assert np.abs(g - a).max() > 0
  # Without given frames the class scale is the only one that acts.
  np.testing.assert_allclose(
      gen.sample([0, 5, 11], seed=3, steps=3, guidance_class=2.0,
                 guidance_frames=5.0), g, atol=1e-5)
  # The guidance passes run batched in one forward and equal separate ones.
  denoise = gen._denoise(gen.params, jnp.asarray([0, 5, 11]), None, None)
  z = jax.random.normal(jax.random.key(0), (3, *gen.config.latent_shape))
  t = jnp.asarray([900, 500, 100])
  both = denoise(z, t, 0.5 * z, (sampling.ALL, sampling.NONE_GIVEN))
  for i, variant in enumerate((sampling.ALL, sampling.NONE_GIVEN)):
    np.testing.assert_allclose(both[i], denoise(z, t, 0.5 * z, (variant,))[0],
                               atol=1e-5)
  assert np.abs(both[0] - both[1]).max() > 0
  d = gen.sample([0, 5, 11], seed=3, steps=4, sampler='dpmpp')
  np.testing.assert_array_equal(
      d, gen.sample([0, 5, 11], seed=3, steps=4, sampler='dpmpp'))
  assert np.abs(d - a).max() > 0
  with pytest.raises(ValueError, match='labels must be in'):
    gen.sample([12 + 1], steps=2)
  with pytest.raises(ValueError, match='sampler'):
    gen.sample([0], steps=2, sampler='euler')


@pytest.mark.slow
def test_pixel_conditioning_api(trained):
  """predict / image_to_video / extend / interpolate: inputs validated and
  resized, given frames returned unchanged, the given latent kept exactly
  (so a decoded first frame is the tokenizer's round trip of the image)."""
  workdir, _, _ = trained
  gen = sampler.Generator.load(workdir)
  assert gen.clip_shape == (5, 32, 32) and gen.trained_with_frames
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
  kw = {'steps': 3, 'seed': 1}
  videos = gen.image_to_video(image, labels=[3, 7], **kw)
  assert videos.shape == (2, 5, 32, 32, 3)
  fitted = frames_lib.images_to_frames(image, (32, 32))
  np.testing.assert_array_equal(videos[:, :1], fitted)
  np.testing.assert_array_equal(
      videos, gen.predict(fitted, labels=[3, 7], **kw))
  # Before the given pixels are pasted back: the sampler keeps the given
  # latent frame exactly, and the causal decoder's first frame depends on
  # it alone.
  z = np.zeros((2, *gen.config.latent_shape), np.float32)
  z[:, :1] = gen.tokenizer.encode(fitted)
  mask = np.zeros((2, z.shape[1]), np.float32)
  mask[:, 0] = 1
  for weight in (0.0, 2.0):  # frame channels, reconstruction guidance
    raw = gen.sample([3, 7], cond_latent=z, cond_mask=mask,
                     reconstruction_weight=weight, **kw)
    round_trip = np.asarray(gen.tokenizer.decode(z[:, :1]))
    np.testing.assert_allclose(raw[:, 0], round_trip[:, 0], atol=2e-5)
  # Long video: each chunk continues the last frame (context 1 here).
  long = gen.extend(videos, 3, labels=[3, 7], context=1, **kw)
  assert long.shape == (2, 5 + 3 * 4, 32, 32, 3)
  np.testing.assert_array_equal(long[:, :5], videos)
  np.testing.assert_array_equal(
      long, gen.predict(fitted, num_frames=17, labels=[3, 7], **kw))
  # Longer videos reuse the one clip's compiled function (so its memory),
  # and chunk boundaries change no more than the frames inside chunks.
  compiled = gen.num_compiled
  long = gen.extend(videos, 5, labels=[3, 7], context=1, **kw)
  assert gen.num_compiled == compiled and long.shape[1] == 25
  at, inside = frames_lib.boundary_change(long, range(5, 25, 4))
  assert at <= 1.5 * inside, (at, inside)
  ends = gen.interpolate(image[0], image[1], **kw)
  np.testing.assert_allclose(ends[0, 0], fitted[0, 0], atol=1e-6)
  np.testing.assert_allclose(ends[0, 1:], np.repeat(fitted[1], 4, 0),
                             atol=1e-6)
  with pytest.raises(ValueError, match='1 \\+ 4k'):
    gen.predict(np.zeros((1, 2, 32, 32, 3), np.uint8))
  with pytest.raises(ValueError, match='nothing to generate'):
    gen.predict(np.zeros((1, 5, 32, 32, 3), np.uint8))
  with pytest.raises(ValueError, match='RGB'):
    gen.predict(np.zeros((1, 1, 32, 32), np.uint8))
  with pytest.raises(ValueError, match=r'\[-1, 1\]'):
    gen.predict(np.full((1, 1, 32, 32, 3), 255.0, np.float32))
  with pytest.raises(ValueError, match='labels for'):
    gen.image_to_video(image, labels=[1, 2, 3], **kw)


@pytest.mark.slow
def test_sampler_compare_scores_each_setting_on_the_same_labels(trained):
  workdir, _, _ = trained
  gen = sampler.Generator.load(workdir)
  rows = sampler_compare.compare(
      gen, sampler_compare.parse_settings(['ddim:3', 'dpmpp:2']), 12, 12,
      guidance=1.0, features='random:0')
  assert [(r['sampler'], r['steps']) for r in rows] == [('ddim', 3),
                                                        ('dpmpp', 2)]
  assert rows[0]['time_vs_first'] == 1.0
  assert rows[0]['fvd_sprites_vs_first'] == 1.0
  assert rows[1]['fvd_sprites'] != rows[0]['fvd_sprites']
  with pytest.raises(ValueError, match='sampler:steps'):
    sampler_compare.parse_settings(['dpmpp'])


@pytest.mark.slow
def test_sample_cli_writes_videos_and_grid(trained, tmp_path):
  workdir, _, _ = trained
  out = tmp_path / 'samples'
  env = {**os.environ, 'PYTHONPATH': ROOT}
  r = subprocess.run(
      [sys.executable, '-m', 'walt.sample', f'--workdir={workdir}',
       f'--out={out}', '--class_label=4', '--num_samples=2', '--steps=3',
       '--sampler=dpmpp', '--guidance_class=2'],
      env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  files = set(os.listdir(out))
  assert {'sample_0.mp4', 'sample_0.gif', 'sample_1.mp4', 'sample.png',
          'samples.json'} <= files
  info = json.loads((out / 'samples.json').read_text())
  assert info['labels'] == [4, 4] and info['steps'] == 3
  assert info['sampler'] == 'dpmpp' and info['guidance_class'] == 2.0
  # Image-to-video continued by one chunk; a bad input says what is wrong.
  image = tmp_path / 'still.png'
  mediapy.write_image(str(image), np.full((40, 48, 3), 200, np.uint8))
  args = [sys.executable, '-m', 'walt.sample', f'--workdir={workdir}',
          '--num_samples=1', '--steps=2', '--given_frames=1']
  r = subprocess.run(args + [f'--out={tmp_path / "i2v"}', f'--image={image}',
                             '--chunks=1', '--guidance_frames=2'],
                     env=env, cwd=ROOT, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  info = json.loads((tmp_path / 'i2v' / 'samples.json').read_text())
  assert info['frames'] == 9 and info['image'] == str(image)
  r = subprocess.run(args + [f'--out={tmp_path / "bad"}',
                             f'--given={tmp_path / "missing.mp4"}'],
                     env=env, cwd=ROOT, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode != 0 and 'missing.mp4 does not exist' in r.stderr


@pytest.mark.slow
def test_latent_cache_matches_on_the_fly_encoding_and_trains(
    sprites_data_dir, tokenizer_dir, trained, tmp_path):
  _, config, _ = trained
  cache = str(tmp_path / 'cache')
  c = _config(sprites_data_dir, tokenizer_dir, steps=3, cache=cache)
  with c.unlocked():
    c.latents.num_examples = 20
    c.latents.batch_size = 8
  meta = denoiser_trainer.run(c, str(tmp_path / 'w'), mode='cache_latents')
  assert meta['num_examples'] == 20 and meta['latent_shape'] == [2, 8, 8, 16]
  source = latent_cache.LatentCacheSource(cache)
  assert len(source) == 20
  mesh = mesh_lib.create_mesh({'data': -1})
  tok = inference.load_tokenizer(tokenizer_dir, mesh)
  pixels = pipeline.data_source(pipeline.DataSpec.from_config(config.data))
  for i in (0, 13):
    ex = pixels[i]
    video = video_ops.to_float(np.asarray(ex['video'])[:5])[None]
    np.testing.assert_allclose(source[i]['video'],
                               np.asarray(tok.encode(video))[0], atol=1e-5)
    image = video_ops.to_float(np.asarray(ex['image']))[None, None]
    np.testing.assert_allclose(source[i]['image'],
                               np.asarray(tok.encode(image))[0, 0],
                               atol=1e-5)
    assert source[i]['label'] == ex['label']
  state = denoiser_trainer.run(c, str(tmp_path / 'w'))
  assert int(state.step) == 3
  rows = [r for r in _metrics(str(tmp_path / 'w')) if 'loss' in r]
  assert np.isfinite(rows[-1]['loss'])
  with pytest.raises(FileNotFoundError, match='mode=cache_latents'):
    latent_cache.LatentCacheSource(str(tmp_path / 'nowhere'))


def test_missing_tokenizer_says_how_to_get_one(sprites_data_dir, tmp_path):
  c = _config(sprites_data_dir, str(tmp_path / 'no_tokenizer'))
  with pytest.raises(FileNotFoundError, match='configs/tokenizer'):
    denoiser_trainer.run(c, str(tmp_path / 'w'))
