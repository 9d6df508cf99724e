"""Weight files from outside: read without pickle, a wrong shape named with
its parameter path, the expected and the found shape (feature networks, the
perceptual ResNet-50, reference statistics)."""

import pickle

import jax
import numpy as np
import pytest

from walt import weight_files
from walt.evaluation import i3d, sprites_features, stats, weights
from walt.models import perceptual


def test_wrong_shape_names_the_parameter_and_both_shapes(tmp_path):
  shapes = sprites_features.param_shapes()
  flat = {k: np.zeros(s.shape, np.float32)
          for k, s in weights.flatten(shapes).items()}
  good = str(tmp_path / 'good.npz')
  weights.save(good, weights.unflatten(flat))
  params = weights.load(good, 'sprites_features', shapes)
  assert jax.tree.structure(params) == jax.tree.structure(shapes)
  name = sorted(k for k, v in flat.items() if v.ndim >= 2)[-1]
  expected = flat[name].shape
  found = expected[:-1] + (expected[-1] + 1,)
  flat[name] = np.zeros(found, np.float32)
  bad = str(tmp_path / 'bad.npz')
  np.savez(bad, **flat)
  with pytest.raises(ValueError) as e:
    weights.load(bad, 'sprites_features', shapes)
  message = str(e.value)
  assert f'{name}: expected shape {expected}, found {found}' in message
  assert bad in message
  # Only that one is named; missing and unexpected names are listed too.
  assert message.count('expected shape') == 1
  del flat[name]
  flat['extra/w'] = np.zeros(3, np.float32)
  np.savez(bad, **flat)
  with pytest.raises(ValueError, match=rf'missing {name}; unexpected extra/w'):
    weights.load(bad, 'sprites_features', shapes)


def test_i3d_file_with_one_wrong_shape(tmp_path):
  """The converted-file path of FVD: one kernel of the real I3D layout in
  the wrong shape (the others right) is named; no array reaches a network."""
  shapes = i3d.param_shapes()
  flat = {k: np.zeros(s.shape, np.float32)
          for k, s in weights.flatten(shapes).items()}
  name = 'Mixed_4b/Branch_1_Conv3d_0b_3x3/w'
  assert flat[name].shape == (3, 3, 3, 96, 208)
  flat[name] = np.zeros((3, 3, 3, 208, 96), np.float32)
  bad = str(tmp_path / 'i3d.npz')
  np.savez(bad, **flat)
  with pytest.raises(ValueError, match=(
      r'Mixed_4b/Branch_1_Conv3d_0b_3x3/w: expected shape '
      r'\(3, 3, 3, 96, 208\), found \(3, 3, 3, 208, 96\)')):
    weights.load(bad, 'i3d', shapes)


def test_perceptual_weights_are_checked(tmp_path):
  shapes = weight_files.flatten(perceptual.variable_shapes())
  flat = {k: np.zeros(s.shape, np.float32) for k, s in shapes.items()}
  name = 'params/layer3_2/conv2/kernel'
  assert flat[name].shape == (3, 3, 256, 256)
  flat[name] = np.zeros((3, 3, 256, 128), np.float32)
  path = str(tmp_path / 'resnet50.npz')
  np.savez(path, **flat)
  with pytest.raises(ValueError, match=(
      r'params/layer3_2/conv2/kernel: expected shape \(3, 3, 256, 256\), '
      r'found \(3, 3, 256, 128\)')):
    perceptual.load(path)


def test_nothing_is_unpickled(tmp_path):
  # An object array inside an .npz (the pickled kind) is refused by name.
  path = str(tmp_path / 'object.npz')
  np.savez(path, mu=np.zeros(3), sigma=np.array([{'a': 1}], dtype=object))
  with pytest.raises(ValueError, match="'sigma' needs pickle"):
    stats.load_reference(path)
  with pytest.raises(ValueError, match="'sigma' needs pickle"):
    weight_files.load_npz(path)
  # A pickle posing as a weight file never reaches pickle.load.
  path = str(tmp_path / 'weights.npz')
  with open(path, 'wb') as f:
    pickle.dump({'w': np.zeros(3)}, f)
  with pytest.raises(ValueError, match='not a readable .npz'):
    weights.load(path, 'sprites_features', sprites_features.param_shapes())
  with pytest.raises(ValueError, match='not a readable .npz'):
    perceptual.load(path)
  # A single .npy array and non-numeric arrays are refused too.
  path = str(tmp_path / 'one.npy')
  np.save(path, np.zeros(3))
  with pytest.raises(ValueError, match='single array'):
    weight_files.load_npz(path)
  path = str(tmp_path / 'strings.npz')
  np.savez(path, w=np.array(['a', 'b']))
  with pytest.raises(ValueError, match="'w' has dtype <U1"):
    weight_files.load_npz(path)


def test_reference_stats_shapes_are_checked(tmp_path):
  path = str(tmp_path / 'ref.npz')
  np.savez(path, mu=np.zeros(4), sigma=np.eye(4), count=10)
  mu, sigma = stats.load_reference(path, 4)
  assert mu.shape == (4,) and sigma.shape == (4, 4)
  # Statistics of another network (another feature size) are named.
  with pytest.raises(ValueError, match=r'mu: expected shape \(400,\), '
                     r'found \(4,\).*sigma: expected shape \(400, 400\), '
                     r'found \(4, 4\)'):
    stats.load_reference(path, 400)
  np.savez(path, mu=np.zeros(4), sigma=np.eye(3))
  with pytest.raises(ValueError, match=r'sigma: expected shape \(4, 4\), '
                     r'found \(3, 3\)'):
    stats.load_reference(path)
