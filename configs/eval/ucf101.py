r"""UCF-101 class-conditional FVD and IS (W.A.L.T Table 1 protocol):
`configs/eval/paper.py:dataset=ucf101`.

    python -m walt.main --config=configs/eval/ucf101.py \
        --workdir=EVAL_DIR --config.generator_workdir=DENOISER_DIR \
        --config.data.data_dir=DATA
"""

import os

from walt import config_lib


def get_config(arg=None):
  config_lib.parse_arg(arg)
  return config_lib.load_file('eval/paper.py', 'dataset=ucf101',
                              os.path.dirname(os.path.dirname(
                                  os.path.abspath(__file__))))
