"""Scores of a cascade stage on held-out clips (DESIGN.md section 5).

For each validation example: the true clip at the stage's size, its
low-resolution version (re-rendered from the example's render parameters
when the data set stores them, so both match exactly; else box-filtered)
and its caption. Metrics (the `results.json` names users' scripts read):
- `sr_psnr`: PSNR of the SR stage's output (from the low-res clip's latent,
  `t_sr` = `eval.sr_noise`) against the true clip; `bicubic_psnr`: the same
  for bicubic upsampling of the low-res clip (the baseline to beat);
  `sr_ssim`, `bicubic_ssim` likewise; `tokenizer_psnr`: the stage
  tokenizer's round trip of the true clip, the ceiling of `sr_psnr` (a
  latent SR stage's output is that tokenizer's decoding);
- `caption_accuracy`: the oracle class of the output equals the caption's
  class (moving_sprites: the example's label), for text models;
- `class_accuracy`, `color_accuracy`, `shape_accuracy` of the same outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from walt.data import latent_cache
from walt.data import pipeline
from walt.data import video_ops
from walt.evaluation import oracle
from walt.evaluation import reconstruction


def bicubic_upsample(videos: np.ndarray, size: tuple[int, int]
                     ) -> np.ndarray:
  """`[n, t, h, w, 3]` in [-1, 1] -> `[n, t, H, W, 3]` (bicubic, clipped)."""
  n, t, _, _, c = videos.shape
  out = jax.image.resize(jnp.asarray(videos, jnp.float32),
                         (n, t, *size, c), method='bicubic')
  return np.clip(np.asarray(out), -1.0, 1.0)


def held_out(data, frames: int, resolution, low_resolution, num_examples: int,
             caption_key: str = 'caption') -> dict:
  """The first `num_examples` validation examples: `video` (true clips,
  [-1, 1]), `low_res` (None without `low_resolution`), `caption`, `label`."""
  spec = pipeline.DataSpec.from_config(data, split='validation', build=False)
  source = pipeline.data_source(spec)
  n = min(num_examples, len(source))
  examples = [source[i] for i in range(n)]
  out = {'video': np.stack([video_ops.to_float(latent_cache.clip_pixels(
             e, frames, tuple(resolution))) for e in examples]),
         'label': np.asarray([int(e['label']) for e in examples]),
         'caption': [latent_cache.text_of(e.get(caption_key, ''))
                     for e in examples],
         'low_res': None}
  if low_resolution:
    out['low_res'] = np.stack([video_ops.to_float(latent_cache.low_res_pixels(
        e, frames, tuple(low_resolution))) for e in examples])
  return out


def evaluate_stage(generator, config, *, num_examples: int, batch_size: int,
                   seed: int = 0) -> dict:
  """Samples a cascade stage (SR and/or text) on held-out clips and scores
  it (module doc); `generator` holds the stage's params and config."""
  cfg = generator.config
  e = config.eval
  sr = bool(cfg.low_res_channels)
  data = held_out(config.data, config.data.frames, config.data.resolution,
                  config.cascade.low_res_resolution if sr else None,
                  num_examples)
  text = generator.encode_captions(data['caption']) if cfg.text_dim else {}
  kwargs = dict(batch_size=batch_size, seed=seed, steps=e.steps, eta=e.eta,
                guidance=e.guidance, sampler=e.sampler, **text)
  if sr:
    low = np.concatenate([
        np.asarray(generator.low_res_tokenizer.encode(
            data['low_res'][i:i + batch_size]))
        for i in range(0, len(data['low_res']), batch_size)])
    videos = generator.sample_many(low_res=low,
                                   t_sr=float(e.get('sr_noise', 0.0)),
                                   **kwargs)
  else:
    videos = generator.sample_many(**kwargs)
  metrics = {'num_examples': len(videos)}
  truth = data['video']
  if sr:
    p, s = reconstruction.psnr_ssim(videos, truth)
    bic = bicubic_upsample(data['low_res'], truth.shape[2:4])
    pb, sb = reconstruction.psnr_ssim(bic, truth)
    recon = np.concatenate([
        np.asarray(generator.tokenizer.reconstruct(truth[i:i + batch_size]))
        for i in range(0, len(truth), batch_size)])
    pr, _ = reconstruction.psnr_ssim(recon, truth)
    metrics.update(sr_psnr=float(np.mean(p)), sr_ssim=float(np.mean(s)),
                   bicubic_psnr=float(np.mean(pb)),
                   bicubic_ssim=float(np.mean(sb)),
                   tokenizer_psnr=float(np.mean(pr)))
  scores = oracle.score_samples(config.data.name, videos, data['label'])
  if scores:
    metrics.update({k: v for k, v in scores.items() if '/' not in k})
    if cfg.text_dim:
      metrics['caption_accuracy'] = scores['class_accuracy']
  return metrics, videos
