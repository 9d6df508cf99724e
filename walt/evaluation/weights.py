"""Feature-network weight files: flat `.npz` archives of float32 arrays.

Keys are '/'-joined Flax parameter paths (`Mixed_3b/Branch_0_Conv3d_0a_1x1/w`).
`walt.evaluation.convert` writes them from the public releases; `load` reads
them without pickle and checks every name and shape against the network
before anything runs (`walt.weight_files`).
"""

from __future__ import annotations

import jax
import numpy as np

from walt import storage
from walt import weight_files

# Where each network's public release lives, and how to convert it.
SOURCES = {
    'i3d': (
        'the Kinetics-400 I3D of the FVD reference code: the TF-Hub module '
        'deepmind/i3d-kinetics-400/1 (https://tfhub.dev/deepmind/'
        'i3d-kinetics-400/1, mirrored on Kaggle Models as '
        'deepmind/i3d-kinetics/tensorFlow1/400); extract it to a directory '
        'and run `python -m walt.evaluation.convert --network=i3d '
        '--src=MODULE_DIR --out={path}` (needs tensorflow)'),
    'inception': (
        'the FID InceptionV3 of pytorch-fid (the TF FID graph ported to '
        'PyTorch): https://github.com/mseitzer/pytorch-fid/releases/download/'
        'fid_weights/pt_inception-2015-12-05-6726825d.pth; run `python -m '
        'walt.evaluation.convert --network=inception --src=FILE.pth '
        '--out={path}` (needs torch)'),
    'sprites_features': (
        'the moving_sprites feature network of fvd_sprites: train it with '
        '`python -m walt.evaluation.sprites_features --data_dir=DATA '
        '--out={path}` (a few CPU minutes)'),
}


flatten = weight_files.flatten
unflatten = weight_files.unflatten


def save(path: str, params) -> None:
  flat = {k: np.asarray(v, np.float32) for k, v in flatten(params).items()}
  with storage.open(path, 'wb') as f:
    np.savez(f, **flat)


def check(flat: dict[str, object], shapes, what: str) -> None:
  """Raises if `flat` lacks, adds or reshapes any parameter of `shapes`
  (naming the parameter path, the expected and the found shape)."""
  weight_files.check_shapes(flat, flatten(shapes), what)


def load(path: str, network: str, shapes):
  """Loads a converted weight file and checks it against `shapes` (the
  network's `param_shapes()`); a missing file says where to get it."""
  path = storage.resolve(path) if path else ''
  if not path or not storage.exists(path):
    raise FileNotFoundError(
        f'{network} weights not found at {path or "(no path given)"}. They '
        'cannot be downloaded by walt; get ' + SOURCES[network].format(
            path=path or 'WEIGHTS.npz'))
  flat = weight_files.load_npz(path)  # no pickle
  check(flat, shapes, path)
  flat = {k: np.asarray(v, np.float32) for k, v in flat.items()}
  return jax.tree.map(np.asarray, unflatten(flat))


def random_like(shapes, seed: int = 0):
  """Random float32 weights for `shapes`: fan-in-scaled kernels, small biases,
  batch-norm variances in [0.5, 1.5] (so conversions of every field show)."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, s in flatten(shapes).items():
    name, shape = key.rsplit('/', 1)[-1], tuple(s.shape)
    if name in ('moving_variance', 'var'):
      v = rng.uniform(0.5, 1.5, shape)
    elif name in ('w', 'kernel') and len(shape) > 1:
      v = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
    elif name == 'scale':
      v = rng.uniform(0.5, 1.5, shape)
    else:
      v = rng.normal(size=shape) * 0.1
    out[key] = v.astype(np.float32)
  return unflatten(out)
