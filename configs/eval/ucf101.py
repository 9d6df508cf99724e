r"""UCF-101 class-conditional FVD and IS (W.A.L.T Table 1 protocol).

    python -m walt.main --config=configs/eval/ucf101.py --workdir=EVAL_DIR \
        --config.generator_workdir=DENOISER_DIR --config.data.data_dir=DATA \
        --config.features.weights=~/walt_weights/i3d_kinetics400.npz

16-frame clips, 10k samples x 4 repeats (mean +- std), class labels of the
real clips, I3D features (FVD) and logits (IS). Weights: see
`python -m walt.evaluation.convert`. Add `--config.poll_seconds=600` to run
beside training.
"""

import os

from walt import config_lib
from walt.evaluation import eval_job


def get_config(arg=None):
  config_lib.parse_arg(arg)
  c = eval_job.default_config('ucf101')
  c.generator_workdir = os.path.expanduser('~/walt_runs/walt_ucf101')
  c.data.update({'name': 'ucf101/17x128x128', 'frames': 17,
                 'resolution': (128, 128),
                 'data_dir': os.path.expanduser('~/walt_data')})
  c.features.weights = os.path.expanduser('~/walt_weights/i3d_kinetics400.npz')
  c.num_samples = 10_000
  c.repeats = 4
  c.eval_frames = 16
  c.batch_size = 64
  c.reference.split = 'train'
  c.lock()
  return c
