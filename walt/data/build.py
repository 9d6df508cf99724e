r"""Builds a tfds data set offline into a data dir (array_record, no TensorFlow).

    python -m walt.data.build --dataset=moving_sprites/17x64x64 --data_dir=DIR
    python -m walt.data.build --dataset=ucf101/17x128x128 --data_dir=DIR \
        --manual_dir=YOUR_COPY   # see walt/data/real_videos.py

Building is idempotent: an already prepared data set is left as is.
"""

from __future__ import annotations

import time

from absl import app
from absl import flags
from absl import logging
import tensorflow_datasets as tfds

from walt.data import registry

_DATASET = flags.DEFINE_string(
    'dataset', 'moving_sprites/17x64x64', 'tfds name[/config][:version].')
_DATA_DIR = flags.DEFINE_string('data_dir', None,
                                'Where to write the data set.')
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'Your copy of a data set walt cannot download '
    '(UCF-101, Kinetics-600); default DATA_DIR/downloads/manual.')


def ensure_built(name: str, data_dir: str, manual_dir: str | None = None
                 ) -> tfds.core.DatasetBuilder:
  """Returns the builder of `name` in `data_dir`, preparing it if needed
  (`manual_dir`: a user-held copy, for data sets walt cannot download)."""
  builder = registry.builder(name, data_dir)
  if not builder.is_prepared():
    logging.info('Building %s in %s', name, builder.data_dir)
    start = time.time()
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            try_download_gcs=False, verify_ssl=True, manual_dir=manual_dir))
    logging.info('Built %s in %.0f s', name, time.time() - start)
  return builder


def main(argv):
  del argv
  builder = ensure_built(_DATASET.value, _DATA_DIR.value, _MANUAL_DIR.value)
  sizes = {k: v.num_examples for k, v in builder.info.splits.items()}
  print(f'{builder.info.full_name} ready in {builder.data_dir}: {sizes}')


if __name__ == '__main__':
  # Required only for this program: other programs import `ensure_built`.
  flags.mark_flag_as_required('data_dir')
  app.run(main)
