"""The cascade end to end on tiny stages: a text base model at 16x16 and a
text SR stage 16 -> 32, trained from latent caches holding the low-res
latents and caption embeddings; the stage evaluator; the cascade call."""

import json
import os

import numpy as np
import pytest

from tests.conftest import TINY_DATASET
from walt import config_lib
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


@pytest.fixture(scope='module')
def stages(sprites_data_dir, tokenizer_dir, tmp_path_factory):
  """{stage: (workdir, config)} of the trained tiny base and SR stages."""
  out = {}
  for stage in ('base', 'sr'):
    root = tmp_path_factory.mktemp(f'cascade_{stage}')
    config = _config(stage, sprites_data_dir, tokenizer_dir,
                     str(root / 'cache'))
    workdir = str(root / 'run')
    denoiser_trainer.run(config, workdir, mode='cache_latents')
    denoiser_trainer.run(config, workdir)
    out[stage] = (workdir, config)
  return out


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


def test_stage_jobs_train_and_score(stages):
  for stage, (workdir, _) in stages.items():
    rows = [json.loads(line) for line in open(
        os.path.join(workdir, 'metrics.jsonl')) if '"loss"' in line]
    assert len(rows) == STEPS and all(np.isfinite(r['loss']) for r in rows)
    results = json.load(open(os.path.join(workdir, 'eval', str(STEPS),
                                          'results.json')))
    m = results['metrics']
    assert m['num_examples'] == 8 and 0 <= m['caption_accuracy'] <= 1
    if stage == 'sr':
      # Bicubic upsampling of the re-rendered 16x16 clip is a real
      # baseline: far above noise, below identity.
      assert 12 < m['bicubic_psnr'] < 40 and np.isfinite(m['sr_psnr'])
    else:
      assert 'sr_psnr' not in m
    assert results['protocol']['text_encoder'] == 'builtin:64'


def test_cascade_runs_a_caption_through_both_stages(stages):
  from walt.inference import cascade
  from walt.inference import generator as generator_lib
  base, sr = (generator_lib.Generator.load(stages[s][0])
              for s in ('base', 'sr'))
  assert sr.low_res_clip_shape == base.clip_shape == (5, 16, 16)
  caption = 'a red circle bouncing left and right on a plain background'
  out = cascade.run_cascade([base, sr], 3, captions=caption, batch_size=2,
                            steps=2, guidance=2.0)
  assert [v.shape for v in out] == [(3, 5, 16, 16, 3), (3, 5, 32, 32, 3)]
  assert all(np.all(np.abs(v) <= 1.0) for v in out)
  with pytest.raises(ValueError, match='super-resolution'):
    cascade.run_cascade([sr, base], 1, captions=caption)
  with pytest.raises(ValueError, match='low-res videos'):
    sr.super_resolve(np.zeros((1, 5, 8, 8, 3), np.float32))
