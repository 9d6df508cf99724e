"""A trained tokenizer for downstream models: frozen params, latent
statistics, and jitted normalised encode/decode.

    tokenizer = load_tokenizer(workdir, mesh)
    z = tokenizer.encode(video)      # [b, 1+T, H, W, 3] -> normalised latent
    video = tokenizer.decode(z)      # normalised latent -> [b, 1+T, H, W, 3]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from walt import checkpoint as ckpt_lib
from walt import storage
from walt.models import tokenizer as tok
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib

LATENT_STATS = 'latent_stats.json'


def read_latent_stats(workdir: str) -> dict:
  """`latent_stats.json` of a tokenizer workdir (mean, std, step, ...)."""
  path = storage.join(workdir, LATENT_STATS)
  if not storage.exists(path):
    raise FileNotFoundError(
        f'{path} is missing: run python -m walt.main --config=<tokenizer '
        f'config> --workdir={workdir} --mode=latent_stats')
  return storage.read_json(path)


def load_latent_stats(workdir: str) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel latent (mean, std) `[c]` of a tokenizer workdir."""
  stats = read_latent_stats(workdir)
  return np.asarray(stats['mean'], np.float32), np.asarray(stats['std'],
                                                           np.float32)


def abstract_params(model: tok.Tokenizer, frames: int, height: int,
                    width: int, sharding=None):
  """The tokenizer's params as `jax.ShapeDtypeStruct`s (nothing computed)."""
  video = jax.ShapeDtypeStruct((1, frames, height, width, 3), jnp.float32)
  variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v),
                             video)
  params = sharding_lib.strip_boxes(variables['params'])
  return jax.tree.map(
      lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding),
      params)


class TrainedTokenizer:
  """Frozen params (replicated on the mesh), latent statistics, and jitted
  encode/decode compiled once per input shape for the object's lifetime."""

  def __init__(self, config, params, mean=None, std=None, workdir: str = '',
               stats_step: int | None = None):
    """`mean`/`std` None: no normalisation (raw latents, e.g. while the
    tokenizer trains and has no statistics yet)."""
    self.config = config
    self.workdir = workdir
    self.model_config = tok.TokenizerConfig.from_config(config.model)
    self.model = tok.Tokenizer(self.model_config)
    self.params = params
    c = self.model_config.latent_channels
    self.mean = np.zeros((c,), np.float32) if mean is None else mean
    self.std = np.ones((c,), np.float32) if std is None else std
    self.stats_step = stats_step  # the step `latent_stats.json` is from
    self._encode = jax.jit(self.encode_with)
    self._decode = jax.jit(self.decode_with)
    self._reconstruct = jax.jit(
        lambda p, v: self.model.apply({'params': p}, v)[0])

  @classmethod
  def load(cls, workdir: str, mesh=None, use_ema: bool = True,
           with_stats: bool = True) -> 'TrainedTokenizer':
    """The latest checkpoint of a tokenizer workdir (its saved config).
    `with_stats=False` allows a run without `latent_stats.json` (raw
    reconstruction only; `encode`/`decode` then do not normalise)."""
    if not storage.isdir(storage.join(workdir, 'checkpoints')):
      raise FileNotFoundError(
          f'no tokenizer checkpoints under {workdir}: train one with python '
          f'-m walt.main --config=configs/tokenizer/<name>.py '
          f'--workdir={workdir}')
    config = ckpt_lib.read_config(workdir)
    mean = std = stats_step = None
    if with_stats:
      mean, std = load_latent_stats(workdir)
      stats_step = read_latent_stats(workdir).get('step')
    mesh = mesh or mesh_lib.create_mesh({'data': -1})
    model = tok.Tokenizer(tok.TokenizerConfig.from_config(config.model))
    frames = config.data.frames
    height, width = config.data.get('crop') or config.data.resolution
    target = abstract_params(model, frames, height, width,
                             mesh_lib.replicated(mesh))
    params, _ = ckpt_lib.restore_params(workdir, target, use_ema=use_ema)
    return cls(config, params, mean, std, workdir, stats_step)

  def latent_shape(self, frames: int, height: int, width: int):
    return self.model_config.latent_shape(frames, height, width)

  def encode_with(self, params, video: jax.Array) -> jax.Array:
    """Pure (jit-able): `[b, 1+T, H, W, 3]` -> normalised latent."""
    return tok.normalize(self.model.apply({'params': params}, video,
                                          method='encode'),
                         self.mean, self.std)

  def decode_with(self, params, latent: jax.Array) -> jax.Array:
    """Pure (jit-able): normalised latent -> video in [-1, 1]."""
    return jnp.clip(self.model.apply(
        {'params': params}, tok.denormalize(latent, self.mean, self.std),
        method='decode'), -1.0, 1.0)

  def encode(self, video: jax.Array, params=None) -> jax.Array:
    return self._encode(self.params if params is None else params, video)

  def decode(self, latent: jax.Array, params=None) -> jax.Array:
    return self._decode(self.params if params is None else params, latent)

  def reconstruct(self, video: jax.Array, params=None) -> jax.Array:
    """Encoder -> decoder round trip (no normalisation, no clipping)."""
    return self._reconstruct(self.params if params is None else params,
                             video)

  def encode_images(self, images: jax.Array) -> jax.Array:
    """Stacks of independent images `[b, n, H, W, 3]` -> `[b, n, h, w, c]`
    (each image encoded as its own 1-frame video)."""
    b, n = images.shape[:2]
    z = self.encode(images.reshape(b * n, 1, *images.shape[2:]))
    return z.reshape(b, n, *z.shape[2:])

  def decode_images(self, latents: jax.Array) -> jax.Array:
    b, n = latents.shape[:2]
    x = self.decode(latents.reshape(b * n, 1, *latents.shape[2:]))
    return x.reshape(b, n, *x.shape[2:])


def load_tokenizer(workdir: str, mesh=None, use_ema: bool = True
                   ) -> TrainedTokenizer:
  """`TrainedTokenizer.load`: params only, no optimizer or discriminator."""
  return TrainedTokenizer.load(workdir, mesh, use_ema)
