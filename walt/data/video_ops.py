"""Host-side (numpy) video ops for the input pipeline.

All functions take uint8 `[t, h, w, 3]` clips straight from a data source and
are deterministic given their `np.random.Generator`.
"""

from __future__ import annotations

import numpy as np


def temporal_crop(video: np.ndarray, frames: int,
                  rng: np.random.Generator | None) -> np.ndarray:
  """`frames` consecutive frames; a random start if `rng`, else the first."""
  total = video.shape[0]
  if total < frames:
    raise ValueError(f'clip has {total} frames, {frames} requested')
  start = int(rng.integers(total - frames + 1)) if rng is not None else 0
  return video[start:start + frames]


def downsample(video: np.ndarray, factor: int) -> np.ndarray:
  """Box-filter downsampling by an integer `factor` in both spatial axes.

  Box filtering is exact antialiasing for integer factors; for rendered data it
  matches rendering at the lower resolution up to edge quantisation.
  """
  if factor == 1:
    return video
  t, h, w, c = video.shape
  h2, w2 = h // factor, w // factor
  x = video[:, :h2 * factor, :w2 * factor].astype(np.float32)
  x = x.reshape(t, h2, factor, w2, factor, c).mean(axis=(2, 4))
  return np.round(x).astype(np.uint8)


def resize_and_crop(video: np.ndarray, height: int, width: int,
                    rng: np.random.Generator | None) -> np.ndarray:
  """Scales by the largest integer factor that keeps both sides >= the target,
  then crops `height x width` (random offset if `rng`, else centred)."""
  h, w = video.shape[1:3]
  factor = min(h // height, w // width)
  if factor < 1:
    raise ValueError(
        f'frames of {h}x{w} are smaller than the requested {height}x{width}; '
        'build the data set at a higher resolution')
  return crop(downsample(video, factor), height, width, rng)


def crop(video: np.ndarray, height: int, width: int,
         rng: np.random.Generator | None) -> np.ndarray:
  """A `height x width` window: random offset if `rng`, else centred."""
  h, w = video.shape[1:3]
  if height > h or width > w:
    raise ValueError(f'cannot crop {height}x{width} from {h}x{w}')
  if rng is not None:
    top = int(rng.integers(h - height + 1))
    left = int(rng.integers(w - width + 1))
  else:
    top, left = (h - height) // 2, (w - width) // 2
  return video[:, top:top + height, left:left + width]


def to_float(video: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return video.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


def to_uint8(video: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255] (clipped, rounded)."""
  x = (np.clip(np.asarray(video, np.float32), -1.0, 1.0) + 1.0) * 127.5
  return np.round(x).astype(np.uint8)
