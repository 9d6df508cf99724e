r"""Converts public feature-network releases to walt weight files (`.npz`).

    python -m walt.evaluation.convert --network=i3d --src=I3D_MODULE_DIR \
        --out=~/walt_weights/i3d_kinetics400.npz
    python -m walt.evaluation.convert --network=inception \
        --src=pt_inception-2015-12-05-6726825d.pth \
        --out=~/walt_weights/inception_fid.npz

- i3d: the TF-Hub `deepmind/i3d-kinetics-400/1` module directory (or any TF
  checkpoint of DeepMind's `inception_i3d` scope, e.g. the kinetics-i3d
  repository's `rgb_scratch` checkpoint). Reads variables with
  `tf.train.load_checkpoint`; tensorflow is imported only here.
- inception: pytorch-fid's FID Inception state dict; torch is imported only
  here.

The name mappings (`i3d_params_from_tf`, `inception_params_from_torch`) are
plain numpy, and the result is checked name by name and shape by shape against
the Flax network before it is written.
"""

from __future__ import annotations

import os
import re

from absl import app
from absl import flags
import numpy as np

from walt.evaluation import i3d, inception, weights

_I3D_LEAVES = ('w', 'b', 'beta', 'moving_mean', 'moving_variance')
_BN_TORCH = {'weight': 'scale', 'bias': 'bias', 'running_mean': 'mean',
             'running_var': 'var'}


def i3d_params_from_tf(variables: dict[str, np.ndarray]) -> dict:
  """TF variable names -> I3D params.

  `.../inception_i3d/Mixed_3b/Branch_1/Conv3d_0b_3x3/conv_3d/w` ->
  `Mixed_3b/Branch_1_Conv3d_0b_3x3/w`; `.../Conv3d_1a_7x7/batch_norm/beta` ->
  `Conv3d_1a_7x7/beta`; `.../Logits/Conv3d_0c_1x1/conv_3d/b` ->
  `Logits_Conv3d_0c_1x1/b`. Sonnet stores batch-norm vectors as
  `[1, 1, 1, 1, c]`: they are flattened. Optimizer slots and moving-average
  shadows are skipped.
  """
  flat = {}
  for name, value in variables.items():
    if 'inception_i3d/' not in name:
      continue
    parts = name.split('inception_i3d/', 1)[1].split('/')
    leaf = parts[-1]
    if leaf not in _I3D_LEAVES or any(
        re.search(r'Momentum|Adam|ExponentialMovingAverage', p) for p in parts):
      continue
    path = [p for p in parts[:-1] if p not in ('conv_3d', 'batch_norm')]
    if path[0].startswith('Mixed_'):
      module = f'{path[0]}/{"_".join(path[1:])}'
    else:
      module = '_'.join(path)
    value = np.asarray(value, np.float32)
    if leaf != 'w':
      value = value.reshape(-1)
    flat[f'{module}/{leaf}'] = value
  weights.check(flat, i3d.param_shapes(), 'the I3D checkpoint')
  return weights.unflatten(flat)


def inception_params_from_torch(state: dict[str, np.ndarray]) -> dict:
  """pytorch-fid state dict -> InceptionV3 params (OIHW -> HWIO kernels,
  `fc.weight` transposed); `AuxLogits` and `num_batches_tracked` skipped."""
  flat = {}
  for name, value in state.items():
    parts = name.split('.')
    if parts[0] == 'AuxLogits' or parts[-1] == 'num_batches_tracked':
      continue
    value = np.asarray(value, np.float32)
    if parts[0] == 'fc':
      flat['fc/' + {'weight': 'kernel', 'bias': 'bias'}[parts[1]]] = (
          value.T if parts[1] == 'weight' else value)
    elif parts[-2] == 'conv' and parts[-1] == 'weight':
      flat['/'.join(parts[:-1]) + '/kernel'] = value.transpose(2, 3, 1, 0)
    elif parts[-2] == 'bn':
      flat['/'.join(parts[:-2]) + '/' + _BN_TORCH[parts[-1]]] = value
    else:
      raise ValueError(f'unexpected parameter {name} in the Inception file')
  weights.check(flat, inception.param_shapes(), 'the Inception state dict')
  return weights.unflatten(flat)


def read_tf_variables(src: str) -> dict[str, np.ndarray]:
  """All variables of a TF checkpoint prefix or SavedModel / TF-Hub dir."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = src
  if os.path.isdir(src):
    prefix = os.path.join(src, 'variables', 'variables')
    if not os.path.exists(prefix + '.index'):
      prefix = tf.train.latest_checkpoint(src) or prefix
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def read_torch_state_dict(src: str) -> dict[str, np.ndarray]:
  import torch  # pylint: disable=g-import-not-at-top
  state = torch.load(src, map_location='cpu', weights_only=True)
  if 'state_dict' in state:
    state = state['state_dict']
  return {k: v.detach().cpu().numpy() for k, v in state.items()}


def convert(network: str, src: str, out: str) -> dict:
  """Reads `src`, maps it to the Flax network, writes `out`; returns params."""
  src, out = os.path.expanduser(src), os.path.expanduser(out)
  if not os.path.exists(src) and not os.path.exists(src + '.index'):
    raise FileNotFoundError(f'{src} does not exist; get '
                            + weights.SOURCES[network].format(path=out))
  if network == 'i3d':
    params = i3d_params_from_tf(read_tf_variables(src))
  elif network == 'inception':
    params = inception_params_from_torch(read_torch_state_dict(src))
  else:
    raise ValueError(f'unknown network {network!r}: i3d, inception')
  weights.save(out, params)
  return params


def main(argv):
  del argv
  f = flags.FLAGS
  convert(f.network, f.src, f.out)
  print(f'wrote {f.out}')


if __name__ == '__main__':
  flags.DEFINE_enum('network', None, ['i3d', 'inception'], 'Which network.')
  flags.DEFINE_string('src', None, 'The public release file or directory.')
  flags.DEFINE_string('out', None, 'The walt weight file (.npz) to write.')
  flags.mark_flags_as_required(['network', 'src', 'out'])
  app.run(main)
