"""Bilinear resizing without antialiasing, as the metric protocols specify.

Two sampling grids, both as separable interpolation matrices (two matmuls, no
gathers, exact on every backend):
- 'tf1': TF1 `tf.image.resize_bilinear(align_corners=False)` (source position
  = dst * in / out), what the FVD reference code runs before I3D;
- 'half_pixel': half-pixel centres, source = (dst + 0.5) * in / out - 0.5
  clamped at the borders (PyTorch `F.interpolate(mode='bilinear',
  align_corners=False)`, pytorch-fid's resize before InceptionV3).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ('tf1', 'half_pixel')


@functools.lru_cache(maxsize=64)
def interpolation_matrix(size_in: int, size_out: int, method: str
                         ) -> np.ndarray:
  """`[size_out, size_in]` float32 rows of bilinear weights."""
  if method not in METHODS:
    raise ValueError(f'unknown resize method {method!r}: {METHODS}')
  scale = size_in / size_out
  dst = np.arange(size_out, dtype=np.float64)
  if method == 'tf1':
    src = dst * scale
  else:
    src = np.maximum((dst + 0.5) * scale - 0.5, 0.0)
  lo = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
  hi = np.minimum(lo + 1, size_in - 1)
  frac = src - lo
  m = np.zeros((size_out, size_in), np.float64)
  np.add.at(m, (np.arange(size_out), lo), 1.0 - frac)
  np.add.at(m, (np.arange(size_out), hi), frac)
  return m.astype(np.float32)


def resize_frames(x: jax.Array, size: tuple[int, int], method: str = 'tf1'
                  ) -> jax.Array:
  """`[..., h, w, c]` -> `[..., size[0], size[1], c]`, float32."""
  h, w = x.shape[-3], x.shape[-2]
  x = x.astype(jnp.float32)
  if (h, w) == tuple(size):
    return x
  my = jnp.asarray(interpolation_matrix(h, size[0], method))
  mx = jnp.asarray(interpolation_matrix(w, size[1], method))
  hp = jax.lax.Precision.HIGHEST
  x = jnp.einsum('yh,...hwc->...ywc', my, x, precision=hp)
  return jnp.einsum('xw,...ywc->...yxc', mx, x, precision=hp)


def describe(method: str) -> str:
  return {'tf1': 'bilinear, TF1 resize_bilinear grid (align_corners=False), '
                 'no antialiasing',
          'half_pixel': 'bilinear, half-pixel centres (align_corners=False), '
                        'no antialiasing'}[method]
