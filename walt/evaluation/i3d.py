"""The Kinetics-400 I3D network used by FVD, in Flax, float32.

Architecture of DeepMind's Inception-v1 I3D (Carreira & Zisserman 2017; the
network behind the TF-Hub `deepmind/i3d-kinetics-400` module that the FVD
reference code calls): 3D convolutions with TF 'SAME' padding, batch norm with
offset only (eps 1e-3, frozen statistics), ReLU; 9 Inception blocks; logits
from a `2x7x7` VALID average pool and a 1x1x1 conv with bias, averaged over
time. Parameter names follow the TF variable scopes (`Conv3d_1a_7x7`,
`Mixed_3b/Branch_1_Conv3d_0b_3x3`, `w`, `b`, `beta`, `moving_mean`,
`moving_variance`) so `walt.evaluation.convert` maps them one to one.

FVD protocol (`fvd_features`): videos `[b, t, h, w, 3]` in [-1, 1], `t >= 9`,
resized to 224x224 per frame with bilinear interpolation and no antialiasing
(`resize_method`: 'tf1' = TF1 `resize_bilinear` as in the reference code,
default; 'half_pixel' = half-pixel centres), features = the 400 logits
averaged over time.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from walt.evaluation import resize, weights

NETWORK_ID = 'i3d-kinetics-400 (deepmind/kinetics-i3d, RGB)'
NUM_CLASSES = 400
RESOLUTION = 224
MIN_FRAMES = 9
_HIGHEST = jax.lax.Precision.HIGHEST

# name: (branch0, (branch1 reduce, branch1), (branch2 reduce, branch2), pool)
MIXED = {
    'Mixed_3b': (64, (96, 128), (16, 32), 32),
    'Mixed_3c': (128, (128, 192), (32, 96), 64),
    'Mixed_4b': (192, (96, 208), (16, 48), 64),
    'Mixed_4c': (160, (112, 224), (24, 64), 64),
    'Mixed_4d': (128, (128, 256), (24, 64), 64),
    'Mixed_4e': (112, (144, 288), (32, 64), 64),
    'Mixed_4f': (256, (160, 320), (32, 128), 128),
    'Mixed_5b': (256, (160, 320), (32, 128), 128),
    'Mixed_5c': (384, (192, 384), (48, 128), 128),
}


def max_pool_same(x: jax.Array, window: Sequence[int],
                  strides: Sequence[int]) -> jax.Array:
  """TF `max_pool3d(..., 'SAME')` over `[b, t, h, w, c]`."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max,
                               (1, *window, 1), (1, *strides, 1), 'SAME')


class Unit3D(nn.Module):
  """Conv3D (TF SAME) [+ bias] [+ batch norm, offset only] [+ ReLU]."""
  features: int
  kernel: Sequence[int] = (1, 1, 1)
  strides: Sequence[int] = (1, 1, 1)
  batch_norm: bool = True
  use_bias: bool = False
  relu: bool = True

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    w = self.param('w', nn.initializers.lecun_normal(),
                   (*self.kernel, x.shape[-1], self.features))
    y = jax.lax.conv_general_dilated(
        x, w, tuple(self.strides), 'SAME',
        dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'), precision=_HIGHEST)
    if self.use_bias:
      y = y + self.param('b', nn.initializers.zeros, (self.features,))
    if self.batch_norm:
      beta = self.param('beta', nn.initializers.zeros, (self.features,))
      mean = self.param('moving_mean', nn.initializers.zeros, (self.features,))
      var = self.param('moving_variance', nn.initializers.ones,
                       (self.features,))
      y = (y - mean) * jax.lax.rsqrt(var + 1e-3) + beta
    return nn.relu(y) if self.relu else y


class Mixed(nn.Module):
  """Inception block: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 | maxpool -> 1x1."""
  widths: tuple

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b0, (b1r, b1), (b2r, b2), bp = self.widths
    k3 = (3, 3, 3)
    branches = [
        Unit3D(b0, name='Branch_0_Conv3d_0a_1x1')(x),
        Unit3D(b1, k3, name='Branch_1_Conv3d_0b_3x3')(
            Unit3D(b1r, name='Branch_1_Conv3d_0a_1x1')(x)),
        Unit3D(b2, k3, name='Branch_2_Conv3d_0b_3x3')(
            Unit3D(b2r, name='Branch_2_Conv3d_0a_1x1')(x)),
        Unit3D(bp, name='Branch_3_Conv3d_0b_1x1')(
            max_pool_same(x, k3, (1, 1, 1))),
    ]
    return jnp.concatenate(branches, axis=-1)


class I3D(nn.Module):
  """`[b, t, 224, 224, 3]` (t >= 9) -> logits averaged over time `[b, 400]`."""
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[1] < MIN_FRAMES or x.shape[2:4] != (RESOLUTION, RESOLUTION):
      raise ValueError(f'I3D takes [b, t>={MIN_FRAMES}, {RESOLUTION}, '
                       f'{RESOLUTION}, 3], got {x.shape}')
    x = x.astype(jnp.float32)
    x = Unit3D(64, (7, 7, 7), (2, 2, 2), name='Conv3d_1a_7x7')(x)
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    x = Unit3D(64, name='Conv3d_2b_1x1')(x)
    x = Unit3D(192, (3, 3, 3), name='Conv3d_2c_3x3')(x)
    x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
    for name in ('Mixed_3b', 'Mixed_3c'):
      x = Mixed(MIXED[name], name=name)(x)
    x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
    for name in ('Mixed_4b', 'Mixed_4c', 'Mixed_4d', 'Mixed_4e', 'Mixed_4f'):
      x = Mixed(MIXED[name], name=name)(x)
    x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
    for name in ('Mixed_5b', 'Mixed_5c'):
      x = Mixed(MIXED[name], name=name)(x)
    x = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 7, 7, 1),
                              (1, 1, 1, 1, 1), 'VALID') / (2 * 7 * 7)
    logits = Unit3D(self.num_classes, batch_norm=False, use_bias=True,
                    relu=False, name='Logits_Conv3d_0c_1x1')(x)
    return logits[:, :, 0, 0, :].mean(axis=1)


def preprocess(videos: jax.Array, resize_method: str = 'tf1') -> jax.Array:
  """`[b, t, h, w, 3]` in [-1, 1] -> `[b, t, 224, 224, 3]` float32."""
  return resize.resize_frames(videos.astype(jnp.float32),
                              (RESOLUTION, RESOLUTION), resize_method)


def fvd_features(params, videos: jax.Array,
                 resize_method: str = 'tf1') -> jax.Array:
  """FVD features `[b, 400]` of videos `[b, t, h, w, 3]` in [-1, 1]."""
  return I3D().apply({'params': params}, preprocess(videos, resize_method))


def param_shapes():
  """The parameter tree as `jax.ShapeDtypeStruct`s (nothing allocated)."""
  x = jax.ShapeDtypeStruct((1, MIN_FRAMES, RESOLUTION, RESOLUTION, 3),
                           jnp.float32)
  return jax.eval_shape(I3D().init, jax.random.key(0), x)['params']


def random_params(seed: int = 0):
  """Random weights with non-trivial batch-norm statistics (tests)."""
  return weights.random_like(param_shapes(), seed)


def protocol(resize_method: str = 'tf1') -> dict:
  return {'feature_network': NETWORK_ID, 'features': 'logits averaged over time (400)',
          'resolution': [RESOLUTION, RESOLUTION],
          'resize': resize.describe(resize_method), 'value_range': [-1.0, 1.0],
          'dtype': 'float32'}
