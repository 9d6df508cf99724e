"""The T5 encoder in Flax (v1.1 and the original T5), with weights converted
from a user-held Hugging Face checkpoint directory.

W.A.L.T conditions its text-to-video models on frozen T5 token embeddings
(DESIGN.md section 5). Hugging Face's transformers 5 removed its Flax
models, so the encoder is ours; it matches transformers' PyTorch
`T5EncoderModel` (tests/test_text.py).

    config, params = load_checkpoint('/data/t5-v1_1-xl')   # no download
    emb = T5Encoder(config).apply({'params': params}, ids, mask)  # [b, n, d]

A checkpoint directory holds `config.json`, `model.safetensors` (or
`model.safetensors.index.json` and its shards) and `spiece.model` (the
SentencePiece vocabulary, read by `walt.text.encoders`).

Architecture (per layer, pre-norm): RMS LayerNorm -> self-attention (no
1/sqrt(d) scaling; one bucketed relative position bias, owned by the first
layer and shared by all) -> residual; RMS LayerNorm -> feed-forward (v1.1:
gated GELU, `gelu(x wi_0) * (x wi_1) wo`; T5: ReLU) -> residual; a final
RMS LayerNorm. Norms, softmax and the bias run in float32.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt import storage
from walt import weight_files
from walt.models.attention import partitioned
from walt.parallel import sharding as sharding_lib

CONFIG = 'config.json'
WEIGHTS = 'model.safetensors'
WEIGHTS_INDEX = 'model.safetensors.index.json'
VOCAB = 'spiece.model'


@dataclasses.dataclass(frozen=True)
class T5Config:
  """The fields of a Hugging Face T5 `config.json` the encoder uses."""
  vocab_size: int = 32128
  d_model: int = 2048
  d_kv: int = 64
  d_ff: int = 5120
  num_layers: int = 24
  num_heads: int = 32
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  layer_norm_epsilon: float = 1e-6
  feed_forward_proj: str = 'gated-gelu'  # v1.1; 'relu' for the original T5
  dtype: str = 'float32'

  @classmethod
  def from_json(cls, values: dict[str, Any]) -> 'T5Config':
    fields = {f.name for f in dataclasses.fields(cls)} - {'dtype'}
    config = cls(**{k: v for k, v in values.items() if k in fields})
    if config.feed_forward_proj not in ('gated-gelu', 'relu'):
      raise ValueError(f'feed_forward_proj={config.feed_forward_proj!r}: '
                       'gated-gelu (T5 v1.1) or relu (T5)')
    return config

  @property
  def gated(self) -> bool:
    return self.feed_forward_proj.startswith('gated')


def relative_position_bucket(relative: np.ndarray, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """T5's bidirectional buckets of `key - query` offsets: half the buckets
  per direction, exact below a quarter of them, log-spaced up to
  `max_distance`, the last bucket beyond."""
  half = num_buckets // 2
  bucket = (relative > 0).astype(np.int32) * half
  distance = np.abs(relative)
  exact = half // 2
  # float32 like the reference, so offsets on a bucket edge (16, 32, 64)
  # truncate the same way.
  ratio = np.maximum(distance, 1).astype(np.float32) / np.float32(exact)
  log_part = exact + (np.log(ratio) / np.float32(math.log(max_distance / exact))
                      * np.float32(half - exact)).astype(np.int32)
  log_part = np.minimum(log_part, half - 1)
  return bucket + np.where(distance < exact, distance, log_part)


class RMSNorm(nn.Module):
  """T5's LayerNorm: scale only, no mean subtraction, float32 statistics."""
  epsilon: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param('scale', partitioned(nn.initializers.ones, ('embed',)),
                       (x.shape[-1],))
    x32 = x.astype(jnp.float32)
    x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 ** 2, -1, keepdims=True)
                              + self.epsilon)
    return (x32 * scale).astype(self.dtype)


def _dense(features: int, axes, name: str, dtype) -> nn.Dense:
  return nn.Dense(features, use_bias=False, dtype=dtype, name=name,
                  kernel_init=partitioned(nn.initializers.lecun_normal(),
                                          axes))


class T5Layer(nn.Module):
  config: T5Config

  @nn.compact
  def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
    """x `[b, n, d]`, bias float32 `[b|1, heads, n, n]` (positions + padding
    mask) -> `[b, n, d]`."""
    cfg = self.config
    dtype = jnp.dtype(cfg.dtype)
    b, n, _ = x.shape
    inner = cfg.num_heads * cfg.d_kv
    h = RMSNorm(cfg.layer_norm_epsilon, dtype, name='attention_norm')(x)
    heads = lambda a: a.reshape(b, n, cfg.num_heads, cfg.d_kv)
    q, k, v = (heads(_dense(inner, ('embed', 'heads'), name, dtype)(h))
               for name in ('q', 'k', 'v'))
    logits = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) + bias
    weights = jax.nn.softmax(logits, -1).astype(dtype)
    h = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(b, n, inner)
    x = x + _dense(cfg.d_model, ('heads', 'embed'), 'o', dtype)(h)
    h = RMSNorm(cfg.layer_norm_epsilon, dtype, name='mlp_norm')(x)
    if cfg.gated:
      h = (jax.nn.gelu(_dense(cfg.d_ff, ('embed', 'mlp'), 'wi_0', dtype)(h),
                       approximate=True)
           * _dense(cfg.d_ff, ('embed', 'mlp'), 'wi_1', dtype)(h))
    else:
      h = jax.nn.relu(_dense(cfg.d_ff, ('embed', 'mlp'), 'wi', dtype)(h))
    return x + _dense(cfg.d_model, ('mlp', 'embed'), 'wo', dtype)(h)


class T5Encoder(nn.Module):
  """Token ids int `[b, n]`, mask bool `[b, n]` (False = padding) -> token
  embeddings `[b, n, d_model]` (padding positions included: use the mask)."""
  config: T5Config

  @nn.compact
  def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
    cfg = self.config
    n = ids.shape[1]
    embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=jnp.dtype(cfg.dtype),
                     name='shared',
                     embedding_init=partitioned(nn.initializers.normal(1.0),
                                                ('vocab', 'embed')))
    x = embed(ids)
    table = self.param(
        'relative_attention_bias',
        partitioned(nn.initializers.normal(0.02), (None, 'heads')),
        (cfg.relative_attention_num_buckets, cfg.num_heads))
    positions = np.arange(n)
    buckets = relative_position_bucket(
        positions[None, :] - positions[:, None],
        cfg.relative_attention_num_buckets,
        cfg.relative_attention_max_distance)
    bias = jnp.transpose(table[buckets], (2, 0, 1))[None].astype(jnp.float32)
    bias = bias + jnp.where(mask[:, None, None, :], 0.0,
                            jnp.finfo(jnp.float32).min)
    for i in range(cfg.num_layers):
      x = T5Layer(cfg, name=f'layer_{i}')(x, bias)
    return RMSNorm(cfg.layer_norm_epsilon, jnp.float32, name='final_norm')(x)


# ------------------------------------------------------------- checkpoints


def _missing(directory: str, names: str) -> FileNotFoundError:
  return FileNotFoundError(
      f'no T5 checkpoint in {directory}: it needs {names}. walt does not '
      'download weights: get a T5 (v1.1) checkpoint directory from the '
      'Hugging Face Hub yourself (e.g. google/t5-v1_1-xl: config.json, '
      'model.safetensors or model.safetensors.index.json with its shards, '
      'spiece.model) and give its path.')


def check_files(directory: str, vocabulary: bool = True) -> None:
  """Raises FileNotFoundError naming every file the directory lacks."""
  missing = [name for name in (CONFIG,) + ((VOCAB,) if vocabulary else ())
             if not storage.exists(storage.join(directory, name))]
  if not (storage.exists(storage.join(directory, WEIGHTS)) or
          storage.exists(storage.join(directory, WEIGHTS_INDEX))):
    missing.insert(1, f'{WEIGHTS} (or {WEIGHTS_INDEX} and its shards)')
  if missing:
    raise _missing(directory, ', '.join(missing))


def read_config(directory: str) -> T5Config:
  path = storage.join(directory, CONFIG)
  if not storage.exists(path):
    raise _missing(directory, CONFIG)
  return T5Config.from_json(storage.read_json(path))


def _read_tensors(directory: str) -> dict[str, np.ndarray]:
  single = storage.join(directory, WEIGHTS)
  if storage.exists(single):
    return weight_files.load_safetensors(single)
  index = storage.join(directory, WEIGHTS_INDEX)
  if not storage.exists(index):
    raise _missing(directory, f'{WEIGHTS} or {WEIGHTS_INDEX}')
  shards = sorted(set(storage.read_json(index)['weight_map'].values()))
  tensors = {}
  for shard in shards:
    tensors.update(weight_files.load_safetensors(
        storage.join(directory, shard)))
  return tensors


def convert(tensors: dict[str, np.ndarray], config: T5Config) -> dict:
  """Hugging Face T5 tensor names -> this encoder's params (torch Linear
  weights `[out, in]` become kernels `[in, out]`). Decoder tensors of a
  full T5 checkpoint are ignored."""
  get = lambda name: np.asarray(tensors[name], np.float32)
  kernel = lambda name: get(name).T
  embedding = 'shared.weight' if 'shared.weight' in tensors \
      else 'encoder.embed_tokens.weight'
  params = {
      'shared': {'embedding': get(embedding)},
      'relative_attention_bias': get(
          'encoder.block.0.layer.0.SelfAttention.relative_attention_bias'
          '.weight'),
      'final_norm': {'scale': get('encoder.final_layer_norm.weight')},
  }
  mlp = ('wi_0', 'wi_1', 'wo') if config.gated else ('wi', 'wo')
  for i in range(config.num_layers):
    block = f'encoder.block.{i}.layer'
    layer = {n: {'kernel': kernel(f'{block}.0.SelfAttention.{n}.weight')}
             for n in ('q', 'k', 'v', 'o')}
    layer['attention_norm'] = {'scale': get(f'{block}.0.layer_norm.weight')}
    layer.update({n: {'kernel': kernel(f'{block}.1.DenseReluDense.{n}.weight')}
                  for n in mlp})
    layer['mlp_norm'] = {'scale': get(f'{block}.1.layer_norm.weight')}
    params[f'layer_{i}'] = layer
  return params


def load_checkpoint(directory: str, dtype: str = 'float32'
                    ) -> tuple[T5Config, dict]:
  """(config, params) of a Hugging Face T5 checkpoint directory, checked
  name by name and shape by shape against the encoder."""
  config = dataclasses.replace(read_config(directory), dtype=dtype)
  tensors = _read_tensors(directory)
  try:
    params = convert(tensors, config)
  except KeyError as e:
    raise ValueError(f'{directory}: the checkpoint has no tensor {e} (is it '
                     'a T5 checkpoint of this config.json?)') from None
  shapes = jax.eval_shape(
      lambda: T5Encoder(config).init(
          jax.random.key(0), jnp.zeros((1, 2), jnp.int32),
          jnp.ones((1, 2), bool)))['params']
  weight_files.check_shapes(weight_files.flatten(params),
                            weight_files.flatten(
                                sharding_lib.strip_boxes(shapes)),
                            directory)
  return config, params
