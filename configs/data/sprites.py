r"""Input-pipeline job on moving_sprites: builds the data set, measures the
pipeline, writes a preview of a batch.

    python -m walt.main --config=configs/data/sprites.py --workdir=/tmp/walt_data
    python -m walt.main --config=configs/data/sprites.py:quick --workdir=...

Variants: default (17x64x64, joint image-video batches), `quick` (5x32x32),
`hires` (17x128x128, for the 2x super-resolution stage).
"""

import os

from walt import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default')
  c = config_lib.base_config()
  c.job = 'data'
  c.batch_size = 16
  c.total_steps = 100
  c.log_every = 20
  c.data.data_dir = os.path.expanduser('~/walt_data')
  c.data.image_fraction = 0.25
  if arg.variant == 'quick':
    c.data.name = 'moving_sprites/5x32x32'
    c.data.frames, c.data.resolution = 5, (32, 32)
    c.total_steps = 20
  elif arg.variant == 'hires':
    c.data.name = 'moving_sprites/17x128x128'
    c.data.resolution = (128, 128)
  elif arg.variant != 'default':
    raise ValueError(f'unknown variant {arg.variant!r}')
  c.lock()
  return c
