"""I3D and InceptionV3: shapes, values, and converters against independent
reference implementations (TF ops for I3D, torch modules for InceptionV3),
randomly initialised from the published architectures."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from walt.evaluation import convert, i3d, inception, resize, weights

# ------------------------------------------------------------ TF I3D reference

_I3D_MIXED = {  # DeepMind kinetics-i3d, i3d.py
    'Mixed_3b': (64, 96, 128, 16, 32, 32), 'Mixed_3c': (128, 128, 192, 32, 96, 64),
    'Mixed_4b': (192, 96, 208, 16, 48, 64), 'Mixed_4c': (160, 112, 224, 24, 64, 64),
    'Mixed_4d': (128, 128, 256, 24, 64, 64), 'Mixed_4e': (112, 144, 288, 32, 64, 64),
    'Mixed_4f': (256, 160, 320, 32, 128, 128), 'Mixed_5b': (256, 160, 320, 32, 128, 128),
    'Mixed_5c': (384, 192, 384, 48, 128, 128)}


def _tf_i3d(x, variables, rng):
  """The TF-Hub I3D graph with TF ops; creates Sonnet-shaped random variables
  under `RGB/inception_i3d/` on first use."""
  import tensorflow as tf
  prefix = 'RGB/inception_i3d/'

  def var(name, shape, kind):
    key = prefix + name
    if key not in variables:
      if kind == 'w':
        v = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
      elif kind == 'var':
        v = rng.uniform(0.5, 1.5, shape)
      else:
        v = rng.normal(size=shape) * 0.1
      variables[key] = v.astype(np.float32)
    return variables[key]

  def unit(x, scope, out, k=(1, 1, 1), s=(1, 1, 1), bn=True, bias=False,
           relu=True):
    w = var(f'{scope}/conv_3d/w', (*k, x.shape[-1], out), 'w')
    y = tf.nn.conv3d(x, w, strides=[1, *s, 1], padding='SAME')
    if bias:
      y = y + var(f'{scope}/conv_3d/b', (out,), 'b')
    if bn:
      shape = (1, 1, 1, 1, out)  # Sonnet keeps the reduced axes
      y = tf.nn.batch_normalization(
          y, var(f'{scope}/batch_norm/moving_mean', shape, 'b'),
          var(f'{scope}/batch_norm/moving_variance', shape, 'var'),
          offset=var(f'{scope}/batch_norm/beta', shape, 'b'), scale=None,
          variance_epsilon=1e-3)
    return tf.nn.relu(y) if relu else y

  def pool(x, k, s):
    return tf.nn.max_pool3d(x, [1, *k, 1], [1, *s, 1], 'SAME')

  def mixed(x, n):
    b0, b1a, b1b, b2a, b2b, b3 = _I3D_MIXED[n]
    return tf.concat([
        unit(x, f'{n}/Branch_0/Conv3d_0a_1x1', b0),
        unit(unit(x, f'{n}/Branch_1/Conv3d_0a_1x1', b1a),
             f'{n}/Branch_1/Conv3d_0b_3x3', b1b, (3, 3, 3)),
        unit(unit(x, f'{n}/Branch_2/Conv3d_0a_1x1', b2a),
             f'{n}/Branch_2/Conv3d_0b_3x3', b2b, (3, 3, 3)),
        unit(pool(x, (3, 3, 3), (1, 1, 1)), f'{n}/Branch_3/Conv3d_0b_1x1', b3),
    ], axis=4)

  x = unit(x, 'Conv3d_1a_7x7', 64, (7, 7, 7), (2, 2, 2))
  x = pool(x, (1, 3, 3), (1, 2, 2))
  x = unit(x, 'Conv3d_2b_1x1', 64)
  x = unit(x, 'Conv3d_2c_3x3', 192, (3, 3, 3))
  x = pool(x, (1, 3, 3), (1, 2, 2))
  x = mixed(mixed(x, 'Mixed_3b'), 'Mixed_3c')
  x = pool(x, (3, 3, 3), (2, 2, 2))
  for n in ('Mixed_4b', 'Mixed_4c', 'Mixed_4d', 'Mixed_4e', 'Mixed_4f'):
    x = mixed(x, n)
  x = pool(x, (2, 2, 2), (2, 2, 2))
  x = mixed(mixed(x, 'Mixed_5b'), 'Mixed_5c')
  x = tf.nn.avg_pool3d(x, [1, 2, 7, 7, 1], [1, 1, 1, 1, 1], 'VALID')
  x = unit(x, 'Logits/Conv3d_0c_1x1', 400, bn=False, bias=True, relu=False)
  return tf.reduce_mean(tf.squeeze(x, [2, 3]), axis=1).numpy()


def _close(a, b, tol=2e-4):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  assert a.shape == b.shape
  np.testing.assert_allclose(a, b, atol=tol * np.abs(b).max(), rtol=0)


@pytest.mark.slow
def test_i3d_converter_round_trips_tf_reference(tmp_path):
  tf = pytest.importorskip('tensorflow')
  rng = np.random.default_rng(0)
  video = rng.uniform(-1, 1, (2, 10, 40, 48, 3)).astype(np.float32)
  # The FVD reference resize: TF1 resize_bilinear (align_corners=False).
  frames = tf.compat.v1.image.resize_bilinear(
      video.reshape(20, 40, 48, 3), [224, 224], align_corners=False).numpy()
  _close(resize.resize_frames(jnp.asarray(video), (224, 224), 'tf1'),
         frames.reshape(2, 10, 224, 224, 3), 2e-5)  # float32 lerp order
  variables = {}
  expected = _tf_i3d(frames.reshape(2, 10, 224, 224, 3), variables, rng)
  # Save as a TF-Hub module directory (variables/variables.{index,data}),
  # with a non-network variable the converter must skip.
  variables['global_step'] = np.int64(7)
  prefix = str(tmp_path / 'i3d_module' / 'variables' / 'variables')
  os.makedirs(os.path.dirname(prefix))
  names = sorted(variables)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[''] * len(names),
                    tensors=[tf.constant(variables[n]) for n in names])
  out = str(tmp_path / 'i3d.npz')
  convert.convert('i3d', str(tmp_path / 'i3d_module'), out)
  params = weights.load(out, 'i3d', i3d.param_shapes())
  got = jax.jit(i3d.fvd_features)(params, jnp.asarray(video))
  assert got.shape == (2, i3d.NUM_CLASSES)
  _close(got, expected)


# ------------------------------------------------------- torch Inception reference


def _torch_fid_inception():
  """pytorch-fid's FID InceptionV3 (torchvision blocks + FID patches)."""
  import torch
  from torch import nn
  import torch.nn.functional as F

  class BC(nn.Module):
    def __init__(self, cin, cout, **kw):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
      self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)))

  def avg(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

  class A(nn.Module):
    def __init__(self, cin, pf):
      super().__init__()
      self.branch1x1 = BC(cin, 64, kernel_size=1)
      self.branch5x5_1 = BC(cin, 48, kernel_size=1)
      self.branch5x5_2 = BC(48, 64, kernel_size=5, padding=2)
      self.branch3x3dbl_1 = BC(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BC(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BC(96, 96, kernel_size=3, padding=1)
      self.branch_pool = BC(cin, pf, kernel_size=1)

    def forward(self, x):
      return torch.cat([
          self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
          self.branch_pool(avg(x))], 1)

  class B(nn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3 = BC(cin, 384, kernel_size=3, stride=2)
      self.branch3x3dbl_1 = BC(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BC(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BC(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
      return torch.cat([
          self.branch3x3(x),
          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
          F.max_pool2d(x, 3, 2)], 1)

  class C(nn.Module):
    def __init__(self, cin, c7):
      super().__init__()
      self.branch1x1 = BC(cin, 192, kernel_size=1)
      self.branch7x7_1 = BC(cin, c7, kernel_size=1)
      self.branch7x7_2 = BC(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7_3 = BC(c7, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_1 = BC(cin, c7, kernel_size=1)
      self.branch7x7dbl_2 = BC(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_3 = BC(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7dbl_4 = BC(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_5 = BC(c7, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch_pool = BC(cin, 192, kernel_size=1)

    def forward(self, x):
      b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
      bd = x
      for i in range(1, 6):
        bd = getattr(self, f'branch7x7dbl_{i}')(bd)
      return torch.cat([self.branch1x1(x), b7, bd,
                        self.branch_pool(avg(x))], 1)

  class D(nn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3_1 = BC(cin, 192, kernel_size=1)
      self.branch3x3_2 = BC(192, 320, kernel_size=3, stride=2)
      self.branch7x7x3_1 = BC(cin, 192, kernel_size=1)
      self.branch7x7x3_2 = BC(192, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7x3_3 = BC(192, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7x3_4 = BC(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
      b7 = x
      for i in range(1, 5):
        b7 = getattr(self, f'branch7x7x3_{i}')(b7)
      return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                        F.max_pool2d(x, 3, 2)], 1)

  class E(nn.Module):
    def __init__(self, cin, max_pool):
      super().__init__()
      self.max_pool = max_pool
      self.branch1x1 = BC(cin, 320, kernel_size=1)
      self.branch3x3_1 = BC(cin, 384, kernel_size=1)
      self.branch3x3_2a = BC(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3_2b = BC(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch3x3dbl_1 = BC(cin, 448, kernel_size=1)
      self.branch3x3dbl_2 = BC(448, 384, kernel_size=3, padding=1)
      self.branch3x3dbl_3a = BC(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3dbl_3b = BC(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch_pool = BC(cin, 192, kernel_size=1)

    def forward(self, x):
      b3 = self.branch3x3_1(x)
      bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      pool = F.max_pool2d(x, 3, 1, 1) if self.max_pool else avg(x)
      return torch.cat([
          self.branch1x1(x),
          self.branch3x3_2a(b3), self.branch3x3_2b(b3),
          self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd),
          self.branch_pool(pool)], 1)

  class Net(nn.Module):
    def __init__(self):
      super().__init__()
      self.Conv2d_1a_3x3 = BC(3, 32, kernel_size=3, stride=2)
      self.Conv2d_2a_3x3 = BC(32, 32, kernel_size=3)
      self.Conv2d_2b_3x3 = BC(32, 64, kernel_size=3, padding=1)
      self.Conv2d_3b_1x1 = BC(64, 80, kernel_size=1)
      self.Conv2d_4a_3x3 = BC(80, 192, kernel_size=3)
      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = (
          A(192, 32), A(256, 64), A(288, 64))
      self.Mixed_6a = B(288)
      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = (
          C(768, 128), C(768, 160), C(768, 160), C(768, 192))
      self.Mixed_7a = D(768)
      self.Mixed_7b, self.Mixed_7c = E(1280, False), E(2048, True)
      self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
      x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
      x = F.max_pool2d(x, 3, 2)
      x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
      for n in ('5b', '5c', '5d', '6a', '6b', '6c', '6d', '6e', '7a', '7b',
                '7c'):
        x = getattr(self, f'Mixed_{n}')(x)
      pool = F.adaptive_avg_pool2d(x, 1).flatten(1)
      return pool, self.fc(pool)

  return Net


def test_inception_converter_round_trips_torch_reference(tmp_path):
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  net = _torch_fid_inception()().eval()
  with torch.no_grad():  # non-trivial batch-norm statistics
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_(0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0, 0.1)
  src = str(tmp_path / 'pt_inception.pth')
  torch.save(net.state_dict(), src)
  images = np.random.default_rng(1).uniform(-1, 1, (2, 64, 48, 3)).astype(
      np.float32)
  with torch.no_grad():
    x = torch.nn.functional.interpolate(
        torch.from_numpy(images).permute(0, 3, 1, 2), size=(299, 299),
        mode='bilinear', align_corners=False)
    pool_ref, logits_ref = (t.numpy() for t in net(x))
  out = str(tmp_path / 'inception.npz')
  convert.convert('inception', src, out)
  params = weights.load(out, 'inception', inception.param_shapes())
  pool, logits = jax.jit(inception.features)(params, jnp.asarray(images))
  assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
  _close(pool, pool_ref)
  _close(logits, logits_ref)


# ------------------------------------------------------------ shapes and files


def _i3d_param_count():
  """I3D (RGB) parameters in closed form from the DeepMind kinetics-i3d
  architecture (this file's `_I3D_MIXED` table): Sonnet units hold a conv
  kernel without bias and a batch norm with beta, moving mean and moving
  variance (no gamma); 400 logits from a 1x1x1 conv with bias. About the
  paper's 12M (Carreira & Zisserman 2017, Table 1)."""
  unit = lambda cin, out, k=1: k * cin * out + 3 * out
  n = unit(3, 64, 7 ** 3) + unit(64, 64) + unit(64, 192, 3 ** 3)
  cin = 192
  for b0, b1a, b1b, b2a, b2b, b3 in _I3D_MIXED.values():  # in order
    n += (unit(cin, b0) + unit(cin, b1a) + unit(b1a, b1b, 27)
          + unit(cin, b2a) + unit(b2a, b2b, 27) + unit(cin, b3))
    cin = b0 + b1b + b2b + b3
  return n + cin * 400 + 400


@pytest.mark.slow
def test_i3d_shapes_and_values():
  """I3D's parameter count against the closed-form count of the published
  architecture, output shapes, and an all-zero network's output. Catches
  a layer of the wrong size (a channel table typo)."""
  shapes = i3d.param_shapes()
  n = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
  assert n == _i3d_param_count() == 12_704_544
  # The time axis: 16 frames (the FVD clips) and 9 (the minimum) both map to
  # one averaged 400-d vector; fewer frames or another size are refused.
  out = jax.eval_shape(i3d.I3D().apply, {'params': shapes},
                       jax.ShapeDtypeStruct((3, 16, 224, 224, 3), jnp.float32))
  assert out.shape == (3, 400)
  with pytest.raises(ValueError, match='t>=9'):
    jax.eval_shape(i3d.I3D().apply, {'params': shapes},
                   jax.ShapeDtypeStruct((1, 8, 224, 224, 3), jnp.float32))
  # An all-zero network gives exactly its final bias, at any input size.
  zeros = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), shapes)
  zeros['Logits_Conv3d_0c_1x1']['b'] = np.arange(400, dtype=np.float32)
  video = jnp.ones((1, 9, 32, 32, 3)) * 0.5
  np.testing.assert_allclose(i3d.fvd_features(zeros, video)[0],
                             np.arange(400), atol=1e-5)


def test_inception_shapes():
  """InceptionV3's parameter count (with batch-norm statistics) against
  the torch reference in this file, itself checked against torchvision's
  published count of inception_v3 (27,161,264 parameters with the aux
  head and 1000 logits: IMAGENET1K_V1's num_params) less the aux head,
  with 1008 logits. Catches a layer of the wrong size (a channel table
  typo) or a missing or extra parameter."""
  torch = pytest.importorskip('torch')
  with torch.device('meta'):  # shapes only: no allocation, no init
    net = _torch_fid_inception()()
  params = sum(p.numel() for p in net.parameters())
  aux = ((768 * 128 + 2 * 128)  # InceptionAux conv0: 1x1 conv + BN
         + (128 * 768 * 25 + 2 * 768)  # conv1: 5x5 conv + BN
         + (768 * 1000 + 1000))  # fc
  assert params == 27_161_264 - aux + 8 * (2048 + 1)  # 1008 logits
  bn_stats = 2 * sum(m.num_features for m in net.modules()
                     if isinstance(m, torch.nn.BatchNorm2d))
  shapes = inception.param_shapes()
  n = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
  assert n == params + bn_stats == 23_885_392
  pool, logits = jax.eval_shape(
      inception.features, shapes,
      jax.ShapeDtypeStruct((5, 32, 32, 3), jnp.float32))
  assert pool.shape == (5, 2048) and logits.shape == (5, 1008)


def test_missing_weights_say_where_to_get_them(tmp_path):
  with pytest.raises(FileNotFoundError, match='i3d-kinetics-400'):
    weights.load(str(tmp_path / 'nope.npz'), 'i3d', i3d.param_shapes())
  with pytest.raises(FileNotFoundError, match='pt_inception-2015-12-05'):
    weights.load('', 'inception', inception.param_shapes())
  bad = str(tmp_path / 'bad.npz')
  weights.save(bad, {'Conv3d_1a_7x7': {'w': np.zeros((1, 2, 3))}})
  with pytest.raises(ValueError, match=(
      r'does not match the network: Conv3d_1a_7x7/w: expected shape '
      r'\(7, 7, 7, 3, 64\), found \(1, 2, 3\); missing ')):
    weights.load(bad, 'i3d', i3d.param_shapes())
