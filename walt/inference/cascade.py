"""A trained cascade as one call: a base model (text- or class-conditional)
then super-resolution stages, each taking the previous stage's decoded
videos (the CLI is `python -m walt.cascade`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from walt.inference import generator as generator_lib


def check_chain(stages: Sequence[generator_lib.Generator]) -> None:
  """Each SR stage takes the previous stage's clip size."""
  if not stages:
    raise ValueError('no stages')
  if stages[0].config.low_res_channels:
    raise ValueError('the first stage is a super-resolution stage: give the '
                     'base model first')
  for i in range(1, len(stages)):
    if not stages[i].config.low_res_channels:
      raise ValueError(f'stage {i} is not a super-resolution stage')
    got, want = stages[i - 1].clip_shape, stages[i].low_res_clip_shape
    if tuple(got) != tuple(want):
      raise ValueError(f'stage {i - 1} makes clips of {got} (frames, h, w), '
                       f'stage {i} takes {want}')


def run_cascade(stages: Sequence[generator_lib.Generator], num_samples: int, *,
                captions=None, labels=None, seed: int = 0,
                batch_size: int = 8, sr_noise: float | None = None,
                **kwargs) -> list[np.ndarray]:
  """Every stage's videos `[n, T, H_k, W_k, 3]` in [-1, 1], base first.
  `kwargs`: sampler settings (steps, sampler, guidance, eta)."""
  check_chain(stages)
  base = stages[0]
  if captions is not None and isinstance(captions, str):
    captions = [captions] * num_samples
  if base.config.text_dim and captions is None:
    raise ValueError('the base stage is a text model: give a caption')
  if base.num_classes and labels is None and captions is None:
    raise ValueError('the base stage is class-conditional: give a class')
  text = base.encode_captions(captions, num_samples) \
      if base.config.text_dim else {}
  videos = base.sample_many(
      labels, num_samples=None if labels is not None else num_samples,
      batch_size=batch_size, seed=seed, **text, **kwargs)
  outputs = [videos]
  size = min(batch_size, num_samples)
  for k, stage in enumerate(stages[1:], start=1):
    parts = []
    for i in range(0, num_samples, size):
      part = videos[i:i + size]
      caps = None
      if stage.config.text_dim and captions is not None:
        caps = _pad_rows(list(captions[i:i + size]), size)
      # A last partial batch is padded: one compiled shape per stage.
      parts.append(stage.super_resolve(
          np.asarray(_pad_rows(part, size)), captions=caps, t_sr=sr_noise,
          seed=seed * 1_000_003 + 7919 * k + i, **kwargs)[:len(part)])
    videos = np.concatenate(parts)
    outputs.append(videos)
  return outputs


def _pad_rows(rows, size: int):
  """`rows` (a list or an array) padded to `size` with its first row."""
  if len(rows) >= size:
    return rows
  if isinstance(rows, list):
    return rows + [rows[0]] * (size - len(rows))
  return np.concatenate([rows, np.repeat(rows[:1], size - len(rows), axis=0)])
