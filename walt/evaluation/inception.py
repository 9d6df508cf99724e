"""InceptionV3 as used by FID and IS, in Flax, float32.

The FID variant of InceptionV3 (the 2015-12-05 TF graph used by the TTUR FID
code and the ADM evaluator, as ported by pytorch-fid): BasicConv2d = conv
without bias + batch norm (eps 1e-3) + ReLU; average pools in the A, C and
first E blocks exclude padding from the count; the last E block max-pools;
1008-way logits. Parameter names follow pytorch-fid's state dict
(`Mixed_5b/branch5x5_2/conv/kernel`, `bn/scale|bias|mean|var`, `fc`), so
`walt.evaluation.convert` maps them one to one.

Protocol (`features`): images `[b, h, w, 3]` in [-1, 1], resized to 299x299
bilinearly with half-pixel centres and no antialiasing (pytorch-fid), pool
features `[b, 2048]` for FID and logits `[b, 1008]` for IS.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from walt.evaluation import resize, weights

NETWORK_ID = 'inception-v3-fid (pt_inception-2015-12-05 / TF FID graph)'
RESOLUTION = 299
NUM_LOGITS = 1008
POOL_DIM = 2048
_HIGHEST = jax.lax.Precision.HIGHEST


def _pairs(v):
  return (v, v) if isinstance(v, int) else tuple(v)


class BasicConv2d(nn.Module):
  features: int
  kernel: int | Sequence[int]
  strides: int = 1
  padding: int | Sequence[int] = 0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kh, kw = _pairs(self.kernel)
    ph, pw = _pairs(self.padding)
    conv = nn.Conv(self.features, (kh, kw), _pairs(self.strides),
                   padding=((ph, ph), (pw, pw)), use_bias=False,
                   precision=_HIGHEST, name='conv')
    x = conv(x)
    c = self.features
    bn = {n: self.param(n, init, (c,)) for n, init in (
        ('scale', nn.initializers.ones), ('bias', nn.initializers.zeros),
        ('mean', nn.initializers.zeros), ('var', nn.initializers.ones))}
    x = (x - bn['mean']) * jax.lax.rsqrt(bn['var'] + 1e-3) * bn['scale']
    return nn.relu(x + bn['bias'])


def avg_pool_3x3_exclude_pad(x: jax.Array) -> jax.Array:
  """3x3 stride-1 average pool, padding 1, padded zeros not counted."""
  window, strides, pad = (1, 3, 3, 1), (1, 1, 1, 1), (
      (0, 0), (1, 1), (1, 1), (0, 0))
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pad)
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  count = jax.lax.reduce_window(ones, 0.0, jax.lax.add, window, strides, pad)
  return total / count


def max_pool(x: jax.Array, stride: int, pad: int = 0) -> jax.Array:
  return jax.lax.reduce_window(
      x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1),
      ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _cat(*xs):
  return jnp.concatenate(xs, axis=-1)


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, 1, name='branch1x1')(x)
    b5 = BasicConv2d(48, 1, name='branch5x5_1')(x)
    b5 = BasicConv2d(64, 5, padding=2, name='branch5x5_2')(b5)
    b3 = BasicConv2d(64, 1, name='branch3x3dbl_1')(x)
    b3 = BasicConv2d(96, 3, padding=1, name='branch3x3dbl_2')(b3)
    b3 = BasicConv2d(96, 3, padding=1, name='branch3x3dbl_3')(b3)
    bp = BasicConv2d(self.pool_features, 1, name='branch_pool')(
        avg_pool_3x3_exclude_pad(x))
    return _cat(b1, b5, b3, bp)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, 3, strides=2, name='branch3x3')(x)
    bd = BasicConv2d(64, 1, name='branch3x3dbl_1')(x)
    bd = BasicConv2d(96, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = BasicConv2d(96, 3, strides=2, name='branch3x3dbl_3')(bd)
    return _cat(b3, bd, max_pool(x, 2))


class InceptionC(nn.Module):
  c7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.c7
    b1 = BasicConv2d(192, 1, name='branch1x1')(x)
    b7 = BasicConv2d(c7, 1, name='branch7x7_1')(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv2d(c7, 1, name='branch7x7dbl_1')(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv2d(192, 1, name='branch_pool')(avg_pool_3x3_exclude_pad(x))
    return _cat(b1, b7, bd, bp)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, 1, name='branch3x3_1')(x)
    b3 = BasicConv2d(320, 3, strides=2, name='branch3x3_2')(b3)
    b7 = BasicConv2d(192, 1, name='branch7x7x3_1')(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv2d(192, 3, strides=2, name='branch7x7x3_4')(b7)
    return _cat(b3, b7, max_pool(x, 2))


class InceptionE(nn.Module):
  """`max_pool_branch`: the last block (FIDInceptionE_2) max-pools."""
  max_pool_branch: bool = False

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, 1, name='branch1x1')(x)
    b3 = BasicConv2d(384, 1, name='branch3x3_1')(x)
    b3 = _cat(BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
              BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3))
    bd = BasicConv2d(448, 1, name='branch3x3dbl_1')(x)
    bd = BasicConv2d(384, 3, padding=1, name='branch3x3dbl_2')(bd)
    bd = _cat(
        BasicConv2d(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        BasicConv2d(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd))
    pooled = (max_pool(x, 1, 1) if self.max_pool_branch
              else avg_pool_3x3_exclude_pad(x))
    bp = BasicConv2d(192, 1, name='branch_pool')(pooled)
    return _cat(b1, b3, bd, bp)


class InceptionV3(nn.Module):
  """`[b, 299, 299, 3]` in [-1, 1] -> (pool `[b, 2048]`, logits `[b, 1008]`)."""

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    if x.shape[1:] != (RESOLUTION, RESOLUTION, 3):
      raise ValueError(f'InceptionV3 takes [b, {RESOLUTION}, {RESOLUTION}, 3], '
                       f'got {x.shape}')
    x = x.astype(jnp.float32)
    x = BasicConv2d(32, 3, strides=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv2d(32, 3, name='Conv2d_2a_3x3')(x)
    x = BasicConv2d(64, 3, padding=1, name='Conv2d_2b_3x3')(x)
    x = max_pool(x, 2)
    x = BasicConv2d(80, 1, name='Conv2d_3b_1x1')(x)
    x = BasicConv2d(192, 3, name='Conv2d_4a_3x3')(x)
    x = max_pool(x, 2)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                     ('Mixed_6e', 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(name='Mixed_7b')(x)
    x = InceptionE(max_pool_branch=True, name='Mixed_7c')(x)
    pool = x.mean(axis=(1, 2))
    logits = nn.Dense(NUM_LOGITS, precision=_HIGHEST, name='fc')(pool)
    return pool, logits


def preprocess(images: jax.Array) -> jax.Array:
  """`[b, h, w, 3]` in [-1, 1] -> `[b, 299, 299, 3]` float32."""
  return resize.resize_frames(images, (RESOLUTION, RESOLUTION), 'half_pixel')


def features(params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(pool `[b, 2048]`, logits `[b, 1008]`) of images in [-1, 1]."""
  return InceptionV3().apply({'params': params}, preprocess(images))


def param_shapes():
  x = jax.ShapeDtypeStruct((1, RESOLUTION, RESOLUTION, 3), jnp.float32)
  return jax.eval_shape(InceptionV3().init, jax.random.key(0), x)['params']


def random_params(seed: int = 0):
  return weights.random_like(param_shapes(), seed)


def protocol() -> dict:
  return {'feature_network': NETWORK_ID,
          'features': 'pool3 (2048) for FID, logits (1008) for IS',
          'resolution': [RESOLUTION, RESOLUTION],
          'resize': resize.describe('half_pixel'), 'value_range': [-1.0, 1.0],
          'dtype': 'float32'}
