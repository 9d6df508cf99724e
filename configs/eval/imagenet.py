r"""ImageNet 256 class-conditional FID and IS (ADM protocol):
`configs/eval/paper.py:dataset=imagenet`.

    python -m walt.main --config=configs/eval/imagenet.py \
        --workdir=EVAL_DIR --config.generator_workdir=DENOISER_DIR \
        --config.data.data_dir=DATA
"""

import os

from walt import config_lib


def get_config(arg=None):
  config_lib.parse_arg(arg)
  return config_lib.load_file('eval/paper.py', 'dataset=imagenet',
                              os.path.dirname(os.path.dirname(
                                  os.path.abspath(__file__))))
