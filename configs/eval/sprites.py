r"""Offline evaluation on moving_sprites (nothing downloaded).

    python -m walt.main --config=configs/eval/sprites.py --workdir=EVAL_DIR \
        --config.generator_workdir=DENOISER_DIR --config.data.data_dir=DATA

Scores a `configs/walt/sprites.py` denoiser: oracle class accuracy of
class-conditional samples (`num_samples`, labels cycling over the 12
classes), and frame prediction: the first 5 frames of real validation clips
given, the rest predicted, PSNR/SSIM against the true (deterministic)
continuation next to a copy-last-frame baseline.
"""

import os

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  config_lib.parse_arg(arg)
  c = defaults.evaluation('sprites')
  c.generator_workdir = os.path.expanduser('~/walt_runs/walt_sprites')
  c.data.update({'name': 'moving_sprites/17x64x64',
                 'data_dir': os.path.expanduser('~/walt_data')})
  c.num_samples = 96
  c.batch_size = 48
  c.cond_frames = 5
  c.eval_frames = 9
  c.reference.split = 'validation'
  c.lock()
  return c
