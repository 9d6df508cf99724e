r"""Offline evaluation on moving_sprites (nothing downloaded).

    python -m walt.main --config=configs/eval/sprites.py --workdir=EVAL_DIR \
        --config.generator_workdir=DENOISER_DIR --config.data.data_dir=DATA

    python -m walt.main --config=configs/eval/sprites.py:prediction \
        --workdir=EVAL_DIR --config.generator_workdir=PREDICTION_DENOISER_DIR

Default: scores a `configs/walt/sprites.py` denoiser by the oracle class
accuracy of class-conditional samples (`num_samples`, labels cycling over
the 12 classes). `prediction`: a `configs/walt/sprites_prediction.py`
denoiser (trained with given frames), on real validation clips: frame
prediction (the first 5 frames given, the other 12 predicted; PSNR/SSIM
against the true, deterministic continuation: `prediction_psnr`, next to
`copy_last_frame_psnr`) and keyframe interpolation (frame 0 and the last
latent frame's 4 frames given: `interpolation_psnr` of frames 1..12, next to
`linear_blend_psnr`), plus the class accuracy. A model trained without
frames can be scored by reconstruction guidance:
`--config.sampler.reconstruction_weight=W`.
"""

import os

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default')
  c = defaults.evaluation('sprites')
  c.generator_workdir = os.path.expanduser('~/walt_runs/walt_sprites')
  c.data.update({'name': 'moving_sprites/17x64x64',
                 'data_dir': os.path.expanduser('~/walt_data')})
  c.num_samples = 96
  c.batch_size = 48
  c.eval_frames = 9
  c.reference.split = 'validation'
  if arg.variant == 'prediction':
    c.generator_workdir = os.path.expanduser(
        '~/walt_runs/walt_sprites_prediction')
    c.cond_frames = 5
    c.interpolate = True
    c.eval_frames = 17
  elif arg.variant != 'default':
    raise ValueError(f'unknown variant {arg.variant!r}: default, prediction')
  c.lock()
  return c
