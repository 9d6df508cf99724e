"""The cascade end to end on tiny stages: a text base model at 16x16 and a
text SR stage 16 -> 32, trained from latent caches holding the low-res
latents and caption embeddings; the stage evaluator; the cascade call."""

import json
import os

import numpy as np
import pytest

from tests.conftest import TINY_DATASET
from tests.test_eval_jobs import ssim_per_clip as _ssim
from walt import config_lib
from walt import media
from walt.data import latent_cache
from walt.data import moving_sprites
from walt.data import video_ops
from walt.train import denoiser_trainer

STEPS = 8

# Two stage jobs (caches, training, eval sampling) and a cascade: ~3 min.
pytestmark = pytest.mark.slow


def _config(stage, data_dir, tokenizer_dir, cache):
  c = config_lib.load_file('walt/sprites_cascade.py',
                           'stage=' + {'base': 'base', 'sr': 'sr1'}[stage])
  c.unlock()
  resolution, low_res = {'base': ((16, 16), (0, 0)),
                         'sr': ((32, 32), (16, 16))}[stage]
  c.data.update({'name': TINY_DATASET, 'data_dir': data_dir, 'frames': 5,
                 'resolution': resolution})
  c.tokenizer.workdir = tokenizer_dir
  if stage == 'sr':
    c.cascade.low_res_tokenizer.workdir = tokenizer_dir
    c.cascade.low_res_resolution = low_res
  c.latents.update({'cache': cache, 'num_examples': 32, 'batch_size': 8})
  c.model.update({'num_layers': 2, 'width': 32, 'num_heads': 2,
                  'patch_size': 2, 'spatiotemporal_window': (0, 2, 2)})
  c.optimizer.update({'lr': 3e-3, 'warmup_steps': 2})
  c.batch_size, c.total_steps = 8, STEPS
  c.log_every, c.checkpoint_every = 1, STEPS
  c.eval_every, c.summary_every = STEPS, 0
  c.eval.update({'steps': 2, 'batch_size': 8, 'cascade_examples': 8,
                 'num_summary_videos': 2})
  c.lock()
  config_lib.validate(c, extra=denoiser_trainer.VALIDATORS)
  return c


def test_sr_cache_holds_the_rerendered_low_res_latent_and_the_caption(
    stages, tokenizer_dir):
  from walt.inference import tokenizer as tokenizer_lib
  from walt.text import encoders
  _, config = stages['sr']
  source = latent_cache.LatentCacheSource(config.latents.cache)
  assert len(source) == 32
  meta = source.metadata
  assert meta['low_res_latent_shape'] == [2, 4, 4, 16]
  assert meta['text_shape'] == [16, 64]
  record = source[3]
  spec_source = moving_sprites.MovingSprites(
      config=TINY_DATASET.split('/')[1],
      data_dir=config.data.data_dir).as_data_source(split='train')
  example = spec_source[3]
  # The low-res latent is the tokenizer's latent of the clip re-rendered at
  # 16x16 (not a resampling of the stored 32x32 clip).
  low = moving_sprites.rerender(example['render_params'], 5, 16, 16)
  tokenizer = tokenizer_lib.load_tokenizer(tokenizer_dir)
  want = np.asarray(tokenizer.encode(video_ops.to_float(low)[None]))[0]
  np.testing.assert_allclose(record['low_res'], want, atol=1e-4)
  caption = example['caption'].decode()
  assert record['caption'] == caption
  emb, mask = encoders.load_encoder('builtin:64', 16)([caption])
  np.testing.assert_array_equal(record['text_mask'], mask[0])
  np.testing.assert_allclose(record['text'], emb[0], atol=1e-3)  # float16


def _unit(x):
  return (np.clip(np.asarray(x, np.float64), -1, 1) + 1) / 2


def _psnr(x, y):
  """Independent numpy PSNR `[n]`: per frame on [0, 1], capped at 100 dB,
  averaged over frames."""
  mse = np.mean((_unit(x) - _unit(y)) ** 2, axis=(2, 3, 4))
  return np.mean(np.minimum(-10 * np.log10(np.maximum(mse, 1e-10)), 100.0),
                 axis=1)


def _bicubic(videos, size):
  """PIL's bicubic upsampling of `[n, t, h, w, 3]` in [-1, 1] (float
  images, per channel), clipped to [-1, 1]."""
  from PIL import Image
  up = lambda f: np.asarray(Image.fromarray(f).resize(
      size[::-1], Image.Resampling.BICUBIC))
  return np.clip(np.asarray([[np.stack([up(np.ascontiguousarray(
      frame[..., c])) for c in range(3)], -1) for frame in v]
                             for v in videos]), -1, 1)


def _held_out(config, n):
  """The first `n` validation clips, read from the data set here: (clips at
  the stage's size, 16x16 re-renders, labels), clips in [-1, 1]."""
  source = moving_sprites.MovingSprites(
      config=TINY_DATASET.split('/')[1],
      data_dir=config.data.data_dir).as_data_source(split='validation')
  h, w = config.data.resolution
  examples = [source[i] for i in range(n)]
  render = lambda e, hh, ww: video_ops.to_float(moving_sprites.rerender(
      e['render_params'], 5, hh, ww))
  return (np.stack([render(e, h, w) for e in examples]),
          np.stack([render(e, 16, 16) for e in examples]),
          np.asarray([int(e['label']) for e in examples]))


def test_stage_jobs_train_and_score(stages):
  """The stages' eval scores, recomputed here: the stage's samples drawn
  again from its checkpoint (the job's saved summary GIFs show the same
  clips), scored with numpy PSNR, scikit-image SSIM, PIL bicubic and the
  oracle on clips read from the data set. Catches a score computed from
  the wrong arrays (e.g. `sr_psnr` of the bicubic baseline, a caption
  accuracy that is not the oracle's agreement with the captions' classes)."""
  from walt.data import sprites
  from walt.evaluation import cascade_eval
  from walt.inference import generator as generator_lib
  for stage, (workdir, config) in stages.items():
    rows = [json.loads(line) for line in open(
        os.path.join(workdir, 'metrics.jsonl')) if '"loss"' in line]
    assert len(rows) == STEPS and all(np.isfinite(r['loss']) for r in rows)
    results = json.load(open(os.path.join(workdir, 'eval', str(STEPS),
                                          'results.json')))
    m = results['metrics']
    assert results['protocol']['text_encoder'] == 'builtin:64'
    assert m['num_examples'] == 8
    # The same scoring call on the saved (EMA) params reproduces the job's
    # scores; its videos are the job's samples (its summary GIFs).
    gen = generator_lib.Generator.load(workdir)
    again, videos = cascade_eval.evaluate_stage(
        gen, config, num_examples=8, batch_size=8, seed=config.seed + 1)
    assert again.keys() == m.keys()
    for key in m:
      assert again[key] == pytest.approx(m[key], rel=1e-3, abs=1e-3), key
    for i in range(config.eval.num_summary_videos):
      gif = media.read_video(os.path.join(
          workdir, 'samples', str(STEPS), f'stage_samples_{i}.gif'))
      saved = video_ops.to_float(gif)
      assert _psnr(saved[None], videos[i:i + 1])[0] > 25, (stage, i)
      if i:  # and not another sample's
        assert _psnr(saved[None], videos[:1])[0] < 25, (stage, i)
    truth, low, labels = _held_out(config, 8)
    oracle = sprites.classify_batch(video_ops.to_uint8(videos))
    assert m['caption_accuracy'] == pytest.approx(np.mean(oracle == labels))
    if stage == 'sr':
      assert m['sr_psnr'] == pytest.approx(np.mean(_psnr(videos, truth)),
                                           abs=1e-3)
      assert m['sr_ssim'] == pytest.approx(np.mean(_ssim(videos, truth)),
                                           abs=1e-4)
      bicubic = _bicubic(low, truth.shape[2:4])
      assert m['bicubic_psnr'] == pytest.approx(
          np.mean(_psnr(bicubic, truth)), abs=1e-3)
      assert m['bicubic_ssim'] == pytest.approx(
          np.mean(_ssim(bicubic, truth)), abs=1e-4)
      # Bicubic upsampling of the re-rendered 16x16 clip is a real
      # baseline: far above noise, below identity.
      assert 12 < m['bicubic_psnr'] < 40
      recon = np.asarray(gen.tokenizer.reconstruct(truth))
      assert m['tokenizer_psnr'] == pytest.approx(
          np.mean(_psnr(recon, truth)), abs=1e-3)
    else:
      assert 'sr_psnr' not in m


def test_cascade_runs_a_caption_through_both_stages(stages):
  """The SR stage is called on the base stage's clips, row for row, and
  its output depends on the clip it is given (the same call with the rows
  swapped gives other clips). Catches an SR stage fed other clips than the
  base output, or one whose low-res input never reaches the model.

  Not checked: that the SR output looks like its low-res input. After 8
  steps (and a 10-step tokenizer, 12 dB round trips) it does not: its
  downsampled output is as close to another base clip as to its own
  (15.5 dB both)."""
  from walt.inference import cascade
  from walt.inference import generator as generator_lib
  base, sr = (generator_lib.Generator.load(stages[s][0])
              for s in ('base', 'sr'))
  assert sr.low_res_clip_shape == base.clip_shape == (5, 16, 16)
  caption = 'a red circle bouncing left and right on a plain background'
  calls = []  # (videos given, keyword arguments, output) of each SR call
  resolve = sr.super_resolve

  def record(videos, **kwargs):
    got = resolve(videos, **kwargs)
    calls.append((np.array(videos), kwargs, got))
    return got
  sr.super_resolve = record
  out = cascade.run_cascade([base, sr], 3, captions=caption, batch_size=2,
                            steps=2, guidance=2.0)
  assert [v.shape for v in out] == [(3, 5, 16, 16, 3), (3, 5, 32, 32, 3)]
  assert all(np.all(np.abs(v) <= 1.0) for v in out)
  # Two SR calls of 2 rows: base rows 0, 1, then row 2 padded with itself.
  given = np.concatenate([v for v, _, _ in calls])
  np.testing.assert_array_equal(given, out[0][[0, 1, 2, 2]])
  np.testing.assert_array_equal(
      np.concatenate([g for _, _, g in calls])[:3], out[1])
  videos, kwargs, got = calls[0]
  swapped = resolve(videos[::-1], **kwargs)  # same seed and captions
  assert np.all(_psnr(swapped, got) < 60), _psnr(swapped, got)
  with pytest.raises(ValueError, match='super-resolution'):
    cascade.run_cascade([sr, base], 1, captions=caption)
  with pytest.raises(ValueError, match='low-res videos'):
    sr.super_resolve(np.zeros((1, 5, 8, 8, 3), np.float32))
