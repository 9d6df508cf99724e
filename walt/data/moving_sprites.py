"""`moving_sprites`: a procedural video data set as a tfds builder.

Built offline, stored as array_record (no TensorFlow needed to write or read):

    python -m walt.data.build --dataset=moving_sprites/17x64x64 --data_dir=DIR

Each example (generated from its index and the split seed, see `sprites.py`):
  video          uint8 [T, H, W, 3]   one main sprite bouncing, distractors
  label          int64 class of the main sprite (shape x colour, 12 classes)
  caption        text, e.g. 'a red circle bouncing left and right ...'
  render_params  JSON of the `ClipParams`, to re-render at any resolution
  image          uint8 [H, W, 3]      one frame of an independent clip
  image_label, image_caption, image_render_params   the same for `image`
  index          int64 position of the example in its split

Configs share their seeds, so example i of `17x64x64` and of `17x128x128` is the
same clip at two resolutions.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import tensorflow_datasets as tfds

from walt.data import shard_writer
from walt.data import sprites
from walt.data.sprites import classify, classify_batch  # noqa: F401  (the oracle)

# Fixed per-split seeds: examples never depend on the resolution or on how many
# examples a config holds.
SPLIT_SEEDS = {'train': 1_000, 'validation': 2_000, 'test': 3_000}
IMAGE_STREAM = 1
EXAMPLES_PER_SHARD = 1_000  # ~210 MB shards at 17x64x64


@dataclasses.dataclass
class MovingSpritesConfig(tfds.core.BuilderConfig):
  """Resolution and size of a `moving_sprites` variant."""
  frames: int = 17
  height: int = 64
  width: int = 64
  num_train: int = 10_000
  num_validation: int = 1_000
  num_test: int = 1_000

  def split_sizes(self) -> dict[str, int]:
    return {'train': self.num_train, 'validation': self.num_validation,
            'test': self.num_test}


def _config(frames, height, width, **sizes) -> MovingSpritesConfig:
  return MovingSpritesConfig(
      name=f'{frames}x{height}x{width}',
      description=f'{frames} frames of {height}x{width}', frames=frames,
      height=height, width=width, **sizes)


class MovingSprites(tfds.core.GeneratorBasedBuilder):
  """Sprites bouncing elastically; the future is determined by the past."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [
      _config(17, 64, 64),                                    # base model
      _config(17, 128, 128, num_train=5_000, num_validation=500,
              num_test=500),                                  # 2x SR stage
      _config(17, 32, 32, num_train=2_000, num_validation=256,
              num_test=256),                                  # small / CPU
      _config(5, 32, 32, num_train=256, num_validation=64,
              num_test=64),                                   # tests
      _config(9, 32, 32, num_train=64, num_validation=32,
              num_test=32),                   # tests needing >= 9 frames
  ]
  DEFAULT_CONFIG_NAME = '17x64x64'

  def __init__(self, *, file_format='array_record', **kwargs):
    super().__init__(file_format=file_format, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    # Raw bytes: the default integer encoding upcasts uint8 video to int64.
    raw = tfds.features.Encoding.BYTES
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'video': tfds.features.Tensor(
                shape=(c.frames, c.height, c.width, 3), dtype=np.uint8,
                encoding=raw),
            'label': tfds.features.ClassLabel(names=sprites.CLASS_NAMES),
            'caption': tfds.features.Text(),
            'render_params': tfds.features.Text(),
            'image': tfds.features.Tensor(
                shape=(c.height, c.width, 3), dtype=np.uint8, encoding=raw),
            'image_label': tfds.features.ClassLabel(names=sprites.CLASS_NAMES),
            'image_caption': tfds.features.Text(),
            'image_render_params': tfds.features.Text(),
            'index': tfds.features.Scalar(dtype=np.int64),
        }),
        supervised_keys=('video', 'label'),
        homepage='https://github.com/walt-jax/walt',
    )

  def _download_and_prepare(self, dl_manager, download_config=None):
    """Writes every split shard by shard, examples in index order (see
    `shard_writer`)."""
    del dl_manager, download_config  # nothing to download
    shard_writer.write_splits(self, {
        split: [functools.partial(self._generate_examples, split, start,
                                  min(start + EXAMPLES_PER_SHARD, n))
                for start in range(0, n, EXAMPLES_PER_SHARD)]
        for split, n in self.builder_config.split_sizes().items()})

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is generated
    return {split: self._generate_examples(split, 0, n)
            for split, n in self.builder_config.split_sizes().items()}

  def _generate_examples(self, split: str, start: int, stop: int):
    for index in range(start, stop):
      yield index, make_example(self.builder_config, split, index)


def make_example(config: MovingSpritesConfig, split: str, index: int) -> dict:
  """Example `index` of `split`, exactly as the builder stores it."""
  seed = SPLIT_SEEDS[split]
  c = config
  params = sprites.sample_params(seed, index)
  image_params = sprites.sample_params(seed, index, stream=IMAGE_STREAM,
                                       max_start_frame=c.frames - 1)
  return {
      'video': sprites.render(params, c.frames, c.height, c.width),
      'label': params.label,
      'caption': sprites.caption(params),
      'render_params': params.to_json(),
      'image': sprites.render(image_params, 1, c.height, c.width)[0],
      'image_label': image_params.label,
      'image_caption': sprites.caption(image_params),
      'image_render_params': image_params.to_json(),
      'index': index,
  }


def rerender(render_params: str | bytes, frames: int, height: int,
             width: int) -> np.ndarray:
  """Re-renders a stored example at another resolution: uint8 [t, h, w, 3]."""
  return sprites.render(sprites.ClipParams.from_json(render_params), frames,
                        height, width)
