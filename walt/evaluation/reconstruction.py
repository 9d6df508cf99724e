"""Reconstruction quality: PSNR and SSIM of videos, and their mean over a
held-out pass.

Both metrics are computed per frame on values mapped to [0, 1] (clipped), as
in image-codec practice, then averaged over frames and clips. SSIM uses the
standard 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, per channel.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from walt.parallel import mesh as mesh_lib


def _to_unit(x: jax.Array) -> jax.Array:
  return (jnp.clip(x, -1.0, 1.0) + 1.0) * 0.5


def psnr(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean over frames of per-frame PSNR (dB); `[b, t, h, w, c]` in [-1, 1]
  -> `[b]`. Identical frames are capped at 100 dB."""
  mse = jnp.mean(jnp.square(_to_unit(x) - _to_unit(y)), axis=(2, 3, 4))
  return jnp.mean(jnp.minimum(-10.0 * jnp.log10(jnp.maximum(mse, 1e-10)),
                              100.0), axis=1)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  r = np.arange(size, dtype=np.float64) - (size - 1) / 2
  g = np.exp(-r ** 2 / (2 * sigma ** 2))
  return (g / g.sum()).astype(np.float32)


def ssim(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean SSIM over frames and channels; `[b, t, h, w, c]` in [-1, 1] ->
  `[b]`. 'valid' windows (frames must be at least 11x11)."""
  b, t, h, w, c = x.shape
  x = _to_unit(x).transpose(0, 1, 4, 2, 3).reshape(b * t * c, h, w, 1)
  y = _to_unit(y).transpose(0, 1, 4, 2, 3).reshape(b * t * c, h, w, 1)
  g = jnp.asarray(_gaussian_window())

  def blur(z):
    z = jax.lax.conv_general_dilated(z, g.reshape(-1, 1, 1, 1), (1, 1),
                                     'VALID', dimension_numbers=(
                                         'NHWC', 'HWIO', 'NHWC'))
    return jax.lax.conv_general_dilated(z, g.reshape(1, -1, 1, 1), (1, 1),
                                        'VALID', dimension_numbers=(
                                            'NHWC', 'HWIO', 'NHWC'))
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  mx, my = blur(x), blur(y)
  sxx = blur(x * x) - mx * mx
  syy = blur(y * y) - my * my
  sxy = blur(x * y) - mx * my
  s = ((2 * mx * my + c1) * (2 * sxy + c2)) / (
      (mx * mx + my * my + c1) * (sxx + syy + c2))
  return s.reshape(b, -1).mean(axis=1)


@jax.jit
def psnr_ssim(x, y):
  """Per-clip `(psnr [b], ssim [b])` of `x` against `y` (jitted once)."""
  return psnr(x, y), ssim(x, y)


def evaluate(reconstruct: Callable[[jax.Array], jax.Array],
             batches: Iterable[dict[str, Any]]) -> dict[str, float]:
  """Mean PSNR / SSIM of `reconstruct(video)` over `batches` (global arrays)."""
  psnrs, ssims = [], []
  for batch in batches:
    video = batch['video']
    p, s = psnr_ssim(reconstruct(video), video)
    psnrs.append(np.asarray(mesh_lib.fetch(p), np.float64))
    ssims.append(np.asarray(mesh_lib.fetch(s), np.float64))
  p, s = np.concatenate(psnrs), np.concatenate(ssims)
  return {'psnr': float(p.mean()), 'ssim': float(s.mean()),
          'psnr_std': float(p.std()), 'num_samples': int(p.size)}
