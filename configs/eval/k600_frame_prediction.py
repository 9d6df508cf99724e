r"""Kinetics-600 frame prediction FVD (W.A.L.T Table 2 protocol):
`configs/eval/paper.py:dataset=k600`.

    python -m walt.main --config=configs/eval/k600_frame_prediction.py \
        --workdir=EVAL_DIR --config.generator_workdir=DENOISER_DIR \
        --config.data.data_dir=DATA
"""

import os

from walt import config_lib


def get_config(arg=None):
  config_lib.parse_arg(arg)
  return config_lib.load_file('eval/paper.py', 'dataset=k600',
                              os.path.dirname(os.path.dirname(
                                  os.path.abspath(__file__))))
