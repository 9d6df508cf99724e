"""Pixel inputs of the conditioning API: validation, resizing, and which
latent frames a number of given pixel frames fills.

The tokenizer is causal and encodes the first frame alone, then groups of
`temporal_factor` frames, so `1 + f j` given pixel frames are exactly the
first `1 + j` latent frames, whatever follows them (5 frames = 2 latent
frames at f = 4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def to_model_frames(frames, resolution: tuple[int, int], name: str = 'frames'
                    ) -> np.ndarray:
  """uint8 [0, 255] or float [-1, 1] `[n, k, H', W', 3]` -> float32 in
  [-1, 1] `[n, k, H, W, 3]` at the model's `resolution` (centre-cropped to
  its aspect ratio, then resized with antialiasing)."""
  x = np.asarray(frames)
  if x.ndim != 5 or x.shape[-1] != 3:
    raise ValueError(f'{name}: expected [n, frames, height, width, 3] RGB, '
                     f'got shape {x.shape}')
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f'{name}: empty input of shape {x.shape}')
  if x.dtype == np.uint8:
    x = x.astype(np.float32) / 127.5 - 1.0
  elif np.issubdtype(x.dtype, np.floating):
    x = x.astype(np.float32)
    if x.min() < -1.001 or x.max() > 1.001:
      raise ValueError(f'{name}: float frames must lie in [-1, 1] (got '
                       f'[{x.min():.3g}, {x.max():.3g}]); pass uint8 for '
                       '[0, 255]')
  else:
    raise ValueError(f'{name}: dtype {x.dtype}, expected uint8 or float')
  h, w = resolution
  n, k, hi, wi, _ = x.shape
  if (hi, wi) == (h, w):
    return x
  # Centre crop to the target aspect ratio, then one antialiased resize.
  if hi * w > wi * h:
    ch, cw = max(1, round(wi * h / w)), wi
  else:
    ch, cw = hi, max(1, round(hi * w / h))
  top, left = (hi - ch) // 2, (wi - cw) // 2
  x = x[:, :, top:top + ch, left:left + cw]
  x = jax.image.resize(jnp.asarray(x), (n, k, h, w, 3), 'linear',
                       antialias=True)
  return np.clip(np.asarray(x), -1.0, 1.0)


def images_to_frames(images, resolution: tuple[int, int], name: str = 'image'
                     ) -> np.ndarray:
  """One image `[H, W, 3]` or a batch `[n, H, W, 3]` -> `[n, 1, H, W, 3]`."""
  x = np.asarray(images)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4:
    raise ValueError(f'{name}: expected [height, width, 3] or '
                     f'[n, height, width, 3], got shape {x.shape}')
  return to_model_frames(x[:, None], resolution, name)


def given_latent_frames(pixel_frames: int, temporal_factor: int,
                        clip_frames: int) -> int:
  """Latent frames filled by the first `pixel_frames` frames of a clip of
  `clip_frames`; raises unless `pixel_frames` = 1 + f j and leaves frames to
  generate."""
  f = temporal_factor
  if pixel_frames < 1 or (pixel_frames - 1) % f:
    raise ValueError(
        f'{pixel_frames} given frames: the causal tokenizer encodes the first '
        f'frame alone and then groups of {f}, so give 1 + {f}k frames '
        f'(1, {1 + f}, {1 + 2 * f}, ...)')
  if pixel_frames >= clip_frames:
    raise ValueError(f'{pixel_frames} given frames leave nothing to generate '
                     f'in a clip of {clip_frames}')
  return 1 + (pixel_frames - 1) // f


def boundary_change(video: np.ndarray, boundaries) -> tuple[float, float]:
  """Mean absolute frame-to-frame change `(at the boundaries, elsewhere)` of
  `video` `[n, T, H, W, 3]`; boundary i is the step from frame i - 1 to i."""
  diffs = np.abs(np.diff(np.asarray(video, np.float32), axis=1)).mean(
      axis=(0, 2, 3, 4))
  at = np.zeros(len(diffs), bool)
  at[np.asarray(list(boundaries), int) - 1] = True
  return float(diffs[at].mean()), float(diffs[~at].mean())
