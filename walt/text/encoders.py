"""Text encoders behind one interface: strings -> token embeddings + mask.

    encoder = load_encoder('t5:/data/t5-v1_1-xl')   # or 'builtin'
    emb, mask = encoder(['a red circle bouncing'])   # [b, n, dim], [b, n]

- `T5TextEncoder`: the Flax T5 encoder (`walt.text.t5`) on a user-held
  Hugging Face checkpoint directory, tokenised with its SentencePiece
  vocabulary (`spiece.model`). What the paper's text models use.
- `BuiltinTextEncoder`: needs no weights. Each word is a fixed random
  vector (seeded by the word) plus sin-cos position features: for tests and
  the closed vocabulary of moving_sprites captions, where the denoiser's
  cross-attention learns what the words mean.

Embeddings are float32 `[b, max_length, dim]`; `mask` is True on real tokens
(padding positions hold values the mask must hide).
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from walt import storage
from walt.text import t5


class TextEncoder:
  """strings -> (embeddings float32 `[b, max_length, dim]`, mask bool
  `[b, max_length]`)."""
  dim: int
  max_length: int

  def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    raise NotImplementedError


class SentencePieceTokenizer:
  """T5's tokenisation: SentencePiece pieces, then EOS; truncated to leave
  room for the EOS, padded with the pad id."""

  def __init__(self, path: str):
    import sentencepiece  # pylint: disable=g-import-not-at-top
    if not storage.exists(path):
      raise FileNotFoundError(f'SentencePiece vocabulary {path} not found')
    self._sp = sentencepiece.SentencePieceProcessor()
    self._sp.LoadFromSerializedProto(storage.read_bytes(path))
    self.eos_id, self.pad_id = self._sp.eos_id(), max(self._sp.pad_id(), 0)

  def __call__(self, texts: Sequence[str], max_length: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """-> ids int32 `[b, max_length]`, mask bool `[b, max_length]`."""
    ids = np.full((len(texts), max_length), self.pad_id, np.int32)
    mask = np.zeros_like(ids, bool)
    for i, text in enumerate(texts):
      pieces = self._sp.encode(text)[:max_length - 1] + [self.eos_id]
      ids[i, :len(pieces)] = pieces
      mask[i, :len(pieces)] = True
    return ids, mask


class T5TextEncoder(TextEncoder):
  """The frozen T5 encoder of a Hugging Face checkpoint directory."""

  def __init__(self, directory: str, max_length: int = 64,
               dtype: str = 'float32'):
    t5.check_files(directory)
    vocab = storage.join(directory, t5.VOCAB)
    self.config, self._params = t5.load_checkpoint(directory, dtype)
    self.tokenizer = SentencePieceTokenizer(vocab)
    self.dim, self.max_length = self.config.d_model, max_length
    model = t5.T5Encoder(self.config)
    self._apply = jax.jit(
        lambda params, ids, mask: model.apply({'params': params}, ids, mask))

  def __call__(self, texts):
    ids, mask = self.tokenizer(texts, self.max_length)
    emb = self._apply(self._params, jnp.asarray(ids), jnp.asarray(mask))
    return np.asarray(emb, np.float32), mask


def _words(text: str) -> list[str]:
  return re.findall(r'[a-z0-9]+', text.lower())


class BuiltinTextEncoder(TextEncoder):
  """Word vectors N(0, 1/dim) seeded by the word (crc32) and `seed`, plus
  sin-cos features of the word's position; no weights, no vocabulary."""

  def __init__(self, dim: int = 64, max_length: int = 16, seed: int = 0):
    if dim % 4:
      raise ValueError(f'dim={dim}: a multiple of 4')
    self.dim, self.max_length, self.seed = dim, max_length, seed
    half = dim // 4
    angles = np.arange(max_length)[:, None] / (
        10000.0 ** (np.arange(half) / half))[None]
    self._positions = np.concatenate([np.sin(angles), np.cos(angles)], -1)

  def _vector(self, word: str) -> np.ndarray:
    rng = np.random.default_rng([zlib.crc32(word.encode()), self.seed])
    return rng.normal(0.0, self.dim ** -0.5, self.dim // 2)

  def __call__(self, texts):
    emb = np.zeros((len(texts), self.max_length, self.dim), np.float32)
    mask = np.zeros((len(texts), self.max_length), bool)
    for i, text in enumerate(texts):
      words = _words(text)[:self.max_length]
      for j, word in enumerate(words):
        emb[i, j] = np.concatenate([self._vector(word), self._positions[j]])
      mask[i, :len(words)] = True
    return emb, mask


def load_encoder(spec: str, max_length: int | None = None) -> TextEncoder:
  """'builtin[:DIM]' or 't5:CHECKPOINT_DIR' -> a text encoder."""
  kind, _, arg = spec.partition(':')
  kwargs = {} if max_length is None else {'max_length': max_length}
  if kind == 'builtin':
    return BuiltinTextEncoder(int(arg) if arg else 64, **kwargs)
  if kind == 't5':
    if not arg:
      raise ValueError("text encoder 't5:DIR': give the checkpoint directory")
    return T5TextEncoder(arg, **kwargs)
  raise ValueError(f'text encoder {spec!r}: builtin[:DIM] or t5:DIR')
