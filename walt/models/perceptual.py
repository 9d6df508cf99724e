"""Perceptual loss: L2 between ImageNet ResNet-50 logits of real and
reconstructed frames (MAGVIT's choice), in Flax.

The weights cannot be downloaded here. Get torchvision's ResNet-50
(`ResNet50_Weights.IMAGENET1K_V1`, file `resnet50-0676ba61.pth` from
https://download.pytorch.org/models/) and convert it once:

    python -m walt.models.perceptual --torch=resnet50-0676ba61.pth \
        --out=resnet50.npz

then set `config.loss.perceptual_weights=/path/resnet50.npz`. Without a file
the loss is off (the trainer says so once). The file is read without pickle
and checked name by name and shape by shape (`walt.weight_files`).
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt import storage
from walt import weight_files

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)
_STAGES = (3, 4, 6, 3)


class Bottleneck(nn.Module):
  features: int
  stride: int

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, s, name: nn.Conv(f, (k, k), (s, s), padding=[
        ((k - 1) // 2, (k - 1) // 2)] * 2, use_bias=False, name=name)
    bn = lambda name: nn.BatchNorm(use_running_average=True, epsilon=1e-5,
                                   name=name)
    h = nn.relu(bn('bn1')(conv(self.features, 1, 1, 'conv1')(x)))
    h = nn.relu(bn('bn2')(conv(self.features, 3, self.stride, 'conv2')(h)))
    h = bn('bn3')(conv(self.features * 4, 1, 1, 'conv3')(h))
    if x.shape[-1] != self.features * 4 or self.stride != 1:
      x = bn('downsample_bn')(conv(self.features * 4, 1, self.stride,
                                   'downsample_conv')(x))
    return nn.relu(x + h)


class ResNet50(nn.Module):
  """torchvision ResNet-50 (v1.5: stride in the 3x3 conv); NHWC in [0, 1]."""
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x):
    x = (x - _MEAN) / _STD
    x = nn.Conv(64, (7, 7), (2, 2), padding=[(3, 3), (3, 3)], use_bias=False,
                name='conv1')(x)
    x = nn.relu(nn.BatchNorm(use_running_average=True, epsilon=1e-5,
                             name='bn1')(x))
    x = nn.max_pool(x, (3, 3), (2, 2), padding=[(1, 1), (1, 1)])
    for stage, blocks in enumerate(_STAGES):
      for i in range(blocks):
        x = Bottleneck(64 * 2 ** stage, 2 if i == 0 and stage > 0 else 1,
                       name=f'layer{stage + 1}_{i}')(x)
    return nn.Dense(self.num_classes, name='fc')(x.mean(axis=(1, 2)))


def load(path: str | None) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
  """The loss fn `(recon, target) -> scalar` from a converted `.npz`, or None
  when no path is given. Videos `[b, t, h, w, 3]` in [-1, 1]; frames are
  resized to 224x224."""
  if not path:
    return None
  if not storage.exists(path):
    raise FileNotFoundError(
        f'perceptual weights {path} not found; see walt/models/perceptual.py '
        'for where to get and how to convert them')
  flat = weight_files.load_npz(path)  # no pickle
  weight_files.check_shapes(flat, weight_files.flatten(variable_shapes()), path)
  variables = unflatten(flat)
  return _loss(lambda: variables)


def placeholder() -> Callable[[jax.Array, jax.Array], jax.Array]:
  """The same loss with zero weights made inside the traced function: the
  network's compute and memory without a weights file (what offline
  compilation, `walt.tools.aot`, measures; its values mean nothing)."""
  return _loss(lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype),
                                    variable_shapes()))


def _loss(get_variables):
  """`get_variables()` is called where the logits are traced."""
  net = ResNet50()

  def logits(video):
    variables = get_variables()
    b, t, h, w, c = video.shape
    frames = (video.reshape(b * t, h, w, c) + 1.0) * 0.5
    frames = jax.image.resize(frames, (b * t, 224, 224, c), 'bilinear')
    return net.apply(variables, frames)

  def loss(recon, target):
    return jnp.mean(jnp.square(logits(recon) -
                               jax.lax.stop_gradient(logits(target))))
  return loss


def variable_shapes() -> dict:
  """The ResNet-50's variables (`params`, `batch_stats`) as
  `ShapeDtypeStruct`s (none of them depends on the image size)."""
  return jax.eval_shape(ResNet50().init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))


def unflatten(flat: dict[str, np.ndarray]) -> dict:
  out: dict = {}
  for key, value in flat.items():
    node = out
    *parents, leaf = key.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = jnp.asarray(value)
  return out


def from_torch_state_dict(sd: dict[str, np.ndarray]) -> dict:
  """torchvision ResNet-50 state dict (numpy) -> Flax variables."""
  params, stats = {}, {}

  def conv(dst, src):
    params.setdefault(dst, {})['kernel'] = np.transpose(sd[f'{src}.weight'],
                                                        (2, 3, 1, 0))

  def bn(dst, src):
    params[dst] = {'scale': sd[f'{src}.weight'], 'bias': sd[f'{src}.bias']}
    stats[dst] = {'mean': sd[f'{src}.running_mean'],
                  'var': sd[f'{src}.running_var']}

  conv('conv1', 'conv1')
  bn('bn1', 'bn1')
  for stage, blocks in enumerate(_STAGES):
    for i in range(blocks):
      src, dst = f'layer{stage + 1}.{i}', f'layer{stage + 1}_{i}'
      p, s = {}, {}
      for j in (1, 2, 3):
        p[f'conv{j}'] = {'kernel': np.transpose(sd[f'{src}.conv{j}.weight'],
                                                (2, 3, 1, 0))}
        p[f'bn{j}'] = {'scale': sd[f'{src}.bn{j}.weight'],
                       'bias': sd[f'{src}.bn{j}.bias']}
        s[f'bn{j}'] = {'mean': sd[f'{src}.bn{j}.running_mean'],
                       'var': sd[f'{src}.bn{j}.running_var']}
      if f'{src}.downsample.0.weight' in sd:
        p['downsample_conv'] = {'kernel': np.transpose(
            sd[f'{src}.downsample.0.weight'], (2, 3, 1, 0))}
        p['downsample_bn'] = {'scale': sd[f'{src}.downsample.1.weight'],
                              'bias': sd[f'{src}.downsample.1.bias']}
        s['downsample_bn'] = {'mean': sd[f'{src}.downsample.1.running_mean'],
                              'var': sd[f'{src}.downsample.1.running_var']}
      params[dst], stats[dst] = p, s
  params['fc'] = {'kernel': sd['fc.weight'].T, 'bias': sd['fc.bias']}
  return {'params': params, 'batch_stats': stats}


def main(argv):
  del argv
  import torch  # only the converter needs it
  # weights_only: torch's restricted unpickler (tensors and plain
  # containers only), never arbitrary objects.
  sd = torch.load(_TORCH.value, map_location='cpu', weights_only=True)
  variables = from_torch_state_dict({k: v.numpy() for k, v in sd.items()})
  flat = {k: np.asarray(v, np.float32)
          for k, v in weight_files.flatten(variables).items()}
  weight_files.check_shapes(flat, weight_files.flatten(variable_shapes()),
                            _TORCH.value)
  with storage.open(_OUT.value, 'wb') as f:
    np.savez(f, **flat)
  print(f'wrote {_OUT.value}')


if __name__ == '__main__':
  from absl import app, flags
  _TORCH = flags.DEFINE_string('torch', None, 'torchvision .pth', required=True)
  _OUT = flags.DEFINE_string('out', 'resnet50.npz', 'output .npz')
  app.run(main)
