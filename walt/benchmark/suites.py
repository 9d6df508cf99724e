"""The benchmark suites (`python -m walt.benchmark --suite=<name>`).

Each suite yields JSON-ready dicts with `suite`, `seconds` (median after a
warm-up) and its derived figures; every ratio is formed from figures
measured in the same process, interleaved (`timing.interleaved_medians`).
Shapes are CPU-sized: the suite `all` runs in about 10 minutes on 2 cores.
`--tiny` runs `TINY_SUITES` at `TINY` sizes (seconds, for tests: the rows
are right in form, their figures mean nothing); `cache['sizes']` holds the
sizes of a run.
"""

from __future__ import annotations

from typing import Callable, Iterator


from walt.benchmark import models
from walt.benchmark import timing

Row = dict
# The architecture comparisons: width / depth / heads / batch.
WIDTH, DEPTH, HEADS, BATCH = 256, 8, 4, 8
LATENT_CHANNELS = 8
MATMUL_N = 2048  # the matmul peak's n x n x n
FULL = {'width': WIDTH, 'depth': DEPTH, 'heads': HEADS, 'batch': BATCH,
        'matmul_n': MATMUL_N}
TINY = {'width': 32, 'depth': 2, 'heads': 2, 'batch': 2, 'matmul_n': 256}
TINY_SUITES = ('matmul_peak', 'peer')


def _sizes(cache: dict) -> dict:
  return cache.get('sizes', FULL)


def _peak_flops(cache: dict) -> float:
  if 'float32' not in cache:
    cache['float32'] = timing.matmul_peak(
        'float32', n=_sizes(cache)['matmul_n'])['flops_per_sec']
  return cache['float32']


def matmul_peak(repeats: int, cache: dict) -> Iterator[Row]:
  for dtype in ('float32', 'bfloat16'):
    row = timing.matmul_peak(dtype, n=_sizes(cache)['matmul_n'],
                             repeats=repeats)
    cache.setdefault(dtype, row['flops_per_sec'])
    yield {'suite': 'matmul_peak', **row}


def peer(repeats: int, cache: dict) -> Iterator[Row]:
  """W.A.L.T vs the textbook DiT at equal width, depth and tokens: full
  attention on a 1x16x16 latent (256 tokens: both windows are the whole
  grid) and the default windows on 5x16x16 (1280 tokens, batch 4)."""
  peak = _peak_flops(cache)
  z = _sizes(cache)
  width, depth, heads = z['width'], z['depth'], z['heads']
  for attention, t, batch in (('full', 1, z['batch']),
                              ('window', 5, z['batch'] // 2)):
    latent = (t, 16, 16, LATENT_CHANNELS)
    cfg = models.denoiser_config(latent, width, depth, heads)
    scanned = models.denoiser_config(latent, width, depth, heads,
                                     scan_unroll=1)
    runners = {'walt': models.denoiser_runner(cfg, batch),
               'walt_scanned': models.denoiser_runner(scanned, batch),
               'dit': models.dit_runner(latent, width, depth, heads, batch)}
    sec = timing.interleaved_medians(runners, repeats)
    tokens = batch * t * 256
    walt_flops = models.train_flops(cfg, batch)
    dit_flops = models.dit_train_flops(width, depth, t * 256, batch,
                                       LATENT_CHANNELS)
    yield {'suite': 'peer', 'attention': attention,
           'latent': 'x'.join(map(str, latent[:3])), 'width': width,
           'depth': depth, 'batch': batch, 'tokens': tokens,
           'seconds': sec['walt'], 'dit_seconds': sec['dit'],
           'scanned_seconds': sec['walt_scanned'],
           'per_token_vs_dit': sec['walt'] / sec['dit'],
           'scanned_vs_dit': sec['walt_scanned'] / sec['dit'],
           'model_flops': walt_flops, 'dit_model_flops': dit_flops,
           'flops_utilization': walt_flops / sec['walt'] / peak,
           'dit_flops_utilization': dit_flops / sec['dit'] / peak}


def window_scaling(repeats: int, cache: dict) -> Iterator[Row]:
  """Width 128, depth 4, batch 1; windows (1x16x16 / t x 8 x 8) vs full
  attention in every layer, at 5x16x16, 5x32x32 and 9x32x32 latents (full
  attention at 9x32x32 keeps ~6 GB of attention weights for the backward
  pass at batch 1; batch 2 does not fit 24 GB)."""
  del cache
  base = {}
  for attention in ('window', 'full'):
    for t, s in ((5, 16), (5, 32), (9, 32)):
      latent = (t, s, s, LATENT_CHANNELS)
      cfg = models.denoiser_config(latent, 128, 4, 2, window=attention)
      runner = models.denoiser_runner(cfg, 1)
      sec = timing.median_seconds(runner, repeats)
      name = f'{t}x{s}x{s}'
      base.setdefault(attention, (t * s * s, sec))
      tokens0, sec0 = base[attention]
      yield {'suite': 'window_scaling', 'latent': name,
             'attention': attention, 'tokens': t * s * s, 'seconds': sec,
             'tokens_vs_5x16x16': t * s * s / tokens0,
             'time_vs_5x16x16': sec / sec0,
             'model_flops': models.train_flops(cfg, 1),
             'windows': [list(w) for w in cfg.windows()]}
      del runner


def remat(repeats: int, cache: dict) -> Iterator[Row]:
  """Peak memory (XLA's memory analysis of the compiled step: arguments +
  outputs + temporaries) at depth 4 and 8, for each remat policy; width
  128, 5x32x32 latent, batch 2, layers in a rolled scan (remat needs it:
  `DenoiserConfig.validate`)."""
  del cache
  from walt.models import denoiser as denoiser_lib  # pylint: disable=g-import-not-at-top
  for policy in denoiser_lib.REMAT_POLICIES:
    peaks = {}
    for depth in (4, 8):
      cfg = models.denoiser_config((5, 32, 32, LATENT_CHANNELS), 128, depth,
                                   2, remat=policy, scan_unroll=1)
      runner = models.denoiser_runner(cfg, 2)
      peaks[depth] = timing.peak_bytes(runner.compiled)
      yield {'suite': 'remat', 'depth': depth, 'remat': policy,
             'peak_bytes': peaks[depth],
             'seconds': timing.median_seconds(runner, repeats),
             'peak_vs_depth_4': peaks[depth] / peaks[4]}
      del runner


SUITES: dict[str, Callable[[int, dict], Iterator[Row]]] = {
    'matmul_peak': matmul_peak,
    'peer': peer,
    'window_scaling': window_scaling,
    'remat': remat,
}
