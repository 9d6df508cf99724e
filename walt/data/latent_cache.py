"""Latents written once to array_record, read back like a tfds source.

Encoding every clip with the frozen tokenizer at each step costs more than a
small denoiser's own step; `write` encodes a split once (video latent and the
example's independent image latent, both normalised with the tokenizer's
latent statistics) and `LatentCacheSource` serves them with the keys the Grain
pipeline reads (`video`, `label`, `image`, `image_label`), so the same
pipeline (per-process slicing, shuffling, image stacks, batching) runs on
latents.

A cascade stage's cache also holds, per clip, the low-resolution stage's
latent (`low_res`, from its own tokenizer; SR stages) and the caption's text
embeddings (`text` float16 `[n, d]`, `text_mask` `[n]`; text models), so
training never runs the text encoder or a second tokenizer. Clips whose
data set stores `render_params` (moving_sprites) are re-rendered at each
resolution, so the low- and high-resolution clips match exactly; others are
box-filtered down from the stored clip.

Layout of a cache directory:
    latents.array_record-00000-of-0000N   msgpack records
    metadata.json                         shapes, tokenizer, data, count
"""

from __future__ import annotations

import glob
import json
import os
from typing import Any

from absl import logging
from array_record.python import array_record_data_source
from array_record.python import array_record_module
from flax import serialization
import jax
import numpy as np

from walt import storage
from walt.data import video_ops

METADATA = 'metadata.json'
PATTERN = 'latents.array_record-{:05d}-of-{:05d}'


def text_of(value) -> str:
  """A stored text field (bytes or str) as str."""
  return value.decode() if isinstance(value, bytes) else str(value)


class LatentCacheSource:
  """Random-access source of cached latents (a Grain/tfds-like source)."""

  def __init__(self, directory: str):
    storage.require_local(directory, 'latents.cache')
    meta_path = os.path.join(directory, METADATA)
    if not os.path.exists(meta_path):
      raise FileNotFoundError(
          f'no latent cache in {directory} ({METADATA} missing). Write one '
          'with: python -m walt.main --config=<denoiser config> '
          f'--workdir=DIR --mode=cache_latents --config.latents.cache='
          f'{directory}')
    with open(meta_path) as f:
      self.metadata = json.load(f)
    paths = sorted(glob.glob(os.path.join(directory,
                                          'latents.array_record-*')))
    self._source = array_record_data_source.ArrayRecordDataSource(paths)

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return serialization.msgpack_restore(self._source[index])


def clip_pixels(example, frames: int, resolution: tuple[int, int],
                key: str = 'video') -> np.ndarray:
  """uint8 `[frames, h, w, 3]`: example[key]'s first `frames` frames at
  `resolution`, re-rendered from the example's render parameters when it
  stores them (exact at any size), else resized and centre-cropped."""
  height, width = resolution
  params = example.get('render_params' if key == 'video'
                       else f'{key}_render_params')
  stored = np.asarray(example[key])
  if stored.ndim == 3:
    stored = stored[None]
  if params is not None and stored.shape[1:3] != (height, width):
    from walt.data import moving_sprites  # pylint: disable=g-import-not-at-top
    return moving_sprites.rerender(params, stored.shape[0], height,
                                   width)[:frames]
  video = video_ops.temporal_crop(stored, min(frames, len(stored)), None)
  return video_ops.resize_and_crop(video, height, width, None)


def low_res_pixels(example, frames: int, resolution: tuple[int, int]
                   ) -> np.ndarray:
  """uint8 `[frames, h, w, 3]`: an SR stage's input clip at the lower
  `resolution` (re-rendered, or box-filtered from the stored clip)."""
  return clip_pixels(example, frames, resolution)


def _pixels(example, frames: int, height: int, width: int):
  video = clip_pixels(example, frames, (height, width))
  image = clip_pixels(example, 1, (height, width), key='image')
  return video_ops.to_float(video), video_ops.to_float(image)[0]


def write(tokenizer, source, directory: str, *, frames: int,
          resolution: tuple[int, int], batch_size: int = 8,
          num_examples: int | None = None, shard_size: int = 4096,
          extra_metadata: dict | None = None, low_res=None,
          text_encoder=None, caption_key: str = 'caption') -> dict:
  """Encodes `source` (a tfds pixel source) into `directory`.

  low_res: `(tokenizer, (height, width))` of the low-resolution stage (SR
  stages): each record gains `low_res`, that tokenizer's normalised latent of
  the clip at that size. text_encoder: a `walt.text.encoders.TextEncoder`:
  records gain `text` / `text_mask` of example[caption_key].

  Clips are the first `frames` frames, resized and centre-cropped to
  `resolution` (deterministic: the cache is the data set, not an augmented
  view of it). A single-process job (the cache is written once and read by
  every process of the training job).

  Returns:
    The metadata written.
  """
  if jax.process_count() > 1:
    raise ValueError('write the latent cache from a single process')
  storage.require_local(directory, 'latents.cache')
  n = len(source) if num_examples is None else min(num_examples, len(source))
  os.makedirs(directory, exist_ok=True)
  num_shards = max(1, -(-n // shard_size))
  height, width = resolution
  latent_shape = tokenizer.latent_shape(frames, height, width)
  writer = None
  written = 0
  for start in range(0, n, batch_size):
    idx = list(range(start, min(start + batch_size, n)))
    examples = [source[i] for i in idx]
    pixels = [_pixels(e, frames, height, width) for e in examples]
    pad = batch_size - len(idx)  # one compiled shape for every batch
    videos = np.stack([p[0] for p in pixels] + [pixels[0][0]] * pad)
    images = np.stack([p[1] for p in pixels] + [pixels[0][1]] * pad)
    z = np.asarray(jax.device_get(tokenizer.encode(videos)), np.float32)
    zi = np.asarray(jax.device_get(
        tokenizer.encode_images(images[:, None])), np.float32)[:, 0]
    extras = [{} for _ in idx]
    if low_res is not None:
      low_tok, low_size = low_res
      low = np.stack([video_ops.to_float(low_res_pixels(e, frames, low_size))
                      for e in examples] + [video_ops.to_float(
                          low_res_pixels(examples[0], frames, low_size))] * pad)
      zl = np.asarray(jax.device_get(low_tok.encode(low)), np.float32)
      for j, extra in enumerate(extras):
        extra['low_res'] = zl[j]
    if text_encoder is not None:
      captions = [text_of(e[caption_key]) for e in examples]
      emb, mask = text_encoder(captions)
      for j, extra in enumerate(extras):
        extra.update(text=emb[j].astype(np.float16), text_mask=mask[j],
                     caption=captions[j])
    for j, (i, e) in enumerate(zip(idx, examples)):
      shard = i // shard_size
      if i % shard_size == 0:
        if writer is not None:
          writer.close()
        writer = array_record_module.ArrayRecordWriter(
            os.path.join(directory, PATTERN.format(shard, num_shards)),
            'group_size:1')
      writer.write(serialization.msgpack_serialize({
          'video': z[j], 'label': np.int32(e['label']),
          'image': zi[j], 'image_label': np.int32(e['image_label']),
          'index': np.int32(i), **extras[j]}))
      written += 1
    if (start // batch_size) % 10 == 0 or written == n:
      logging.info('cached %d / %d latents', written, n)
  if writer is not None:
    writer.close()
  metadata = {'num_examples': written, 'latent_shape': list(latent_shape),
              'frames': frames, 'resolution': [height, width],
              'normalized': True, **(extra_metadata or {})}
  if low_res is not None:
    metadata['low_res_resolution'] = list(low_res[1])
    metadata['low_res_latent_shape'] = list(
        low_res[0].latent_shape(frames, *low_res[1]))
  if text_encoder is not None:
    metadata['text_shape'] = [text_encoder.max_length, text_encoder.dim]
  with open(os.path.join(directory, METADATA), 'w') as f:
    json.dump(metadata, f, indent=2)
  logging.info('wrote %d latents %s to %s', written, latent_shape, directory)
  return metadata
