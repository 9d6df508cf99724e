"""Names -> tfds builders of the data sets the project defines.

Importing a builder module registers its class with tfds; `builder` makes sure
that has happened before it resolves a name such as `moving_sprites/17x64x64`.
"""

from __future__ import annotations

import importlib
import os

import tensorflow_datasets as tfds

# tfds name -> module defining its builder.
BUILDER_MODULES = {
    'moving_sprites': 'walt.data.moving_sprites',
    'ucf101': 'walt.data.real_videos',  # from a user-held copy
    'kinetics600': 'walt.data.real_videos',  # from a user-held copy
    'imagenet_folder': 'walt.data.real_videos',  # from a user-held copy
    'webvideo': 'walt.data.real_videos',  # user-held videos + captions
}


def builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The tfds builder for `name` (`dataset[/config][:version]`) in `data_dir`
  (a leading `~` is the home directory: shells leave `--data_dir=~/x`
  unexpanded, which would otherwise build into a folder named `~`)."""
  base = name.split('/')[0].split(':')[0]
  if base in BUILDER_MODULES:
    importlib.import_module(BUILDER_MODULES[base])
  if data_dir and data_dir.startswith('~'):
    data_dir = os.path.expanduser(data_dir)
  return tfds.builder(name, data_dir=data_dir, try_gcs=False)
