r"""ImageNet 256 class-conditional FID and IS (ADM protocol).

    python -m walt.main --config=configs/eval/imagenet.py --workdir=EVAL_DIR \
        --config.generator_workdir=DENOISER_DIR \
        --config.reference.stats=~/walt_weights/VIRTUAL_imagenet256_labeled.npz \
        --config.features.weights=~/walt_weights/inception_fid.npz

50k samples (labels i % 1000), 50 DDIM steps, no guidance, InceptionV3 pool
features (FID) and logits (IS, 10 splits). The reference is ADM's reference
batch (`mu`, `sigma`) or, without `reference.stats`, statistics of the
`reference.split` images. Samples go to `eval/<step>/samples.npz` (`arr_0`,
uint8), which ADM's evaluator also reads.
"""

import os

from walt import config_lib
from walt.evaluation import eval_job


def get_config(arg=None):
  config_lib.parse_arg(arg)
  c = eval_job.default_config('imagenet')
  c.generator_workdir = os.path.expanduser('~/walt_runs/walt_imagenet')
  c.data.update({'name': 'imagenet_folder/1x256x256', 'frames': 1,
                 'resolution': (256, 256),
                 'data_dir': os.path.expanduser('~/walt_data')})
  c.features.weights = os.path.expanduser('~/walt_weights/inception_fid.npz')
  c.reference.stats = os.path.expanduser(
      '~/walt_weights/VIRTUAL_imagenet256_labeled.npz')
  c.reference.split = 'train'
  c.num_samples = 50_000
  c.batch_size = 64
  c.save_samples = True
  c.lock()
  return c
