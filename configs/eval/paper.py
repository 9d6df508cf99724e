r"""The paper's evaluation protocols, one per data set.

    python -m walt.main --config=configs/eval/paper.py:dataset=ucf101 \
        --workdir=EVAL_DIR --config.generator_workdir=DENOISER_DIR \
        --config.data.data_dir=DATA \
        --config.features.weights=~/walt_weights/i3d_kinetics400.npz

- `ucf101` (Table 1): class-conditional FVD and IS, 16-frame clips, 10k
  samples x 4 repeats (mean +- std), class labels of the real clips, I3D
  features (FVD) and logits (IS).
- `k600` (Table 2): frame prediction FVD, 5 real frames given, 11
  predicted, FVD on the 16-frame clips, 50k samples.
- `imagenet` (ADM protocol): 50k samples (labels i % 1000), 50 DDIM steps,
  no guidance, InceptionV3 pool features (FID) and logits (IS, 10 splits)
  against ADM's reference batch (`reference.stats`: `mu`, `sigma`) or,
  without it, statistics of the `reference.split` images. Samples go to
  `eval/<step>/samples.npz` (`arr_0`, uint8), which ADM's evaluator reads.

Weights: see `python -m walt.evaluation.convert`. Add
`--config.poll_seconds=600` to run beside training. `configs/eval/ucf101.py`,
`k600_frame_prediction.py` and `imagenet.py` are this file with `dataset`
set.
"""

import os

from walt import config_lib
from walt import defaults

_I3D = '~/walt_weights/i3d_kinetics400.npz'
# dataset -> (eval task, data set, fields that differ)
DATASETS = {
    'ucf101': ('ucf101', 'ucf101/17x128x128', {
        'features.weights': _I3D, 'num_samples': 10_000, 'repeats': 4,
        'eval_frames': 16, 'reference.split': 'train'}),
    'k600': ('k600_frame_prediction', 'kinetics600/17x128x128', {
        'features.weights': _I3D, 'num_samples': 50_000, 'cond_frames': 5,
        'eval_frames': 16, 'reference.split': 'test'}),
    'imagenet': ('imagenet', 'imagenet_folder/1x256x256', {
        'features.weights': '~/walt_weights/inception_fid.npz',
        'reference.stats': '~/walt_weights/VIRTUAL_imagenet256_labeled.npz',
        'reference.split': 'train', 'num_samples': 50_000,
        'save_samples': True}),
}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, dataset='ucf101')
  if arg.dataset not in DATASETS:
    raise ValueError(f'unknown dataset {arg.dataset!r}: {sorted(DATASETS)}')
  task, data_name, fields = DATASETS[arg.dataset]
  c = defaults.evaluation(task)
  c.generator_workdir = os.path.expanduser(f'~/walt_runs/walt_{arg.dataset}')
  c.data.update({'name': data_name,
                 'data_dir': os.path.expanduser('~/walt_data')})
  c.batch_size = 64
  for key, value in fields.items():
    if isinstance(value, str) and value.startswith('~'):
      value = os.path.expanduser(value)
    node, _, leaf = key.rpartition('.')
    (c[node] if node else c)[leaf] = value
  c.lock()
  return c
