r"""Kinetics-600 frame prediction FVD (W.A.L.T Table 2 protocol).

    python -m walt.main --config=configs/eval/k600_frame_prediction.py \
        --workdir=EVAL_DIR --config.generator_workdir=DENOISER_DIR \
        --config.data.data_dir=DATA \
        --config.features.weights=~/walt_weights/i3d_kinetics400.npz

5 real frames given, 11 predicted, FVD on the 16-frame clips, 50k samples.
"""

import os

from walt import config_lib
from walt.evaluation import eval_job


def get_config(arg=None):
  config_lib.parse_arg(arg)
  c = eval_job.default_config('k600_frame_prediction')
  c.generator_workdir = os.path.expanduser('~/walt_runs/walt_k600')
  c.data.update({'name': 'kinetics600/17x128x128', 'frames': 17,
                 'resolution': (128, 128),
                 'data_dir': os.path.expanduser('~/walt_data')})
  c.features.weights = os.path.expanduser('~/walt_weights/i3d_kinetics400.npz')
  c.num_samples = 50_000
  c.cond_frames = 5
  c.eval_frames = 16
  c.batch_size = 64
  c.reference.split = 'test'
  c.lock()
  return c
