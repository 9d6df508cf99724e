"""Scores that need no download: the moving_sprites oracle classifier
(`walt.data.sprites.classify`) on class-conditional samples."""

from __future__ import annotations

import numpy as np

from walt.data import sprites
from walt.data import video_ops


def score_samples(data_name: str, videos: np.ndarray, labels: np.ndarray
                  ) -> dict:
  """Oracle class accuracy (overall, per class, colour and shape) of videos
  `[n, T, H, W, 3]` in [-1, 1] against `labels` `[n]`; `{}` for data sets
  without an oracle."""
  if not data_name.startswith('moving_sprites'):
    return {}
  predicted = sprites.classify_batch(video_ops.to_uint8(videos))
  correct = predicted == labels
  scores = {'class_accuracy': float(np.mean(correct))}
  for k in np.unique(labels):
    scores[f'class_accuracy/{k}'] = float(np.mean(correct[labels == k]))
  colour = predicted % len(sprites.COLORS) == labels % len(sprites.COLORS)
  shape = predicted // len(sprites.COLORS) == labels // len(sprites.COLORS)
  scores['color_accuracy'] = float(np.mean(colour))
  scores['shape_accuracy'] = float(np.mean(shape))
  return scores
