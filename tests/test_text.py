"""Text encoders: the Flax T5 encoder equals transformers' PyTorch T5 on a
tiny random checkpoint; tokenisation; the built-in encoder; clear errors."""

import json
import os

import numpy as np
import pytest

from walt import weight_files
from walt.text import encoders
from walt.text import t5



def _reference():
  """(torch, transformers): the PyTorch T5 the Flax encoder is checked
  against. Imported per test so the built-in encoder's tests run without
  them (CI fails any skip: WALT_NO_SKIPS in tests/conftest.py)."""
  return pytest.importorskip('torch'), pytest.importorskip('transformers')

CAPTIONS = ['a red circle bouncing left and right',
            'a blue triangle bouncing up and down on a textured background',
            'a green square', 'a yellow circle bouncing diagonally']


def _tiny_checkpoint(directory, feed_forward='gated-gelu', dtype=None):
  """A random T5 encoder saved the Hugging Face way: config.json and
  model.safetensors (float32, or `dtype`)."""
  torch, transformers = _reference()
  torch.manual_seed(0)
  config = transformers.T5Config(
      vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
      relative_attention_num_buckets=32, relative_attention_max_distance=128,
      feed_forward_proj=feed_forward, dropout_rate=0.0)
  model = transformers.T5EncoderModel(config).eval()
  with torch.no_grad():  # init leaves some weights tiny; make them matter
    for p in model.parameters():
      p.normal_(0.0, 0.5)
  if dtype is not None:
    model = model.to(dtype)
  model.save_pretrained(directory, safe_serialization=True)
  return model


@pytest.mark.parametrize('feed_forward', [
    'gated-gelu', pytest.param('relu', marks=pytest.mark.slow)])
def test_flax_t5_encoder_equals_pytorch(tmp_path, feed_forward):
  torch, _ = _reference()
  torch_model = _tiny_checkpoint(str(tmp_path), feed_forward)
  config, params = t5.load_checkpoint(str(tmp_path))
  assert config.gated == (feed_forward == 'gated-gelu')
  rng = np.random.default_rng(0)
  ids = rng.integers(2, 64, (3, 40)).astype(np.int32)  # offsets past 16, 32
  mask = np.ones_like(ids, bool)
  mask[1, 25:] = mask[2, 3:] = False  # padded captions
  with torch.no_grad():
    expected = torch_model(input_ids=torch.tensor(ids, dtype=torch.long),
                           attention_mask=torch.tensor(mask, dtype=torch.long)
                           ).last_hidden_state.numpy()
  got = np.asarray(t5.T5Encoder(config).apply({'params': params}, ids, mask))
  assert np.abs(expected).mean() > 0.1  # not a degenerate comparison
  np.testing.assert_allclose(got[mask], expected[mask], atol=1e-4, rtol=1e-4)
  # Padding is masked out: real tokens ignore what the padding holds.
  ids2 = ids.copy()
  ids2[~mask] = 5
  got2 = np.asarray(t5.T5Encoder(config).apply({'params': params}, ids2,
                                               mask))
  np.testing.assert_allclose(got2[mask], got[mask], atol=1e-6)


def test_relative_position_buckets_match_the_reference():
  torch, _ = _reference()
  from transformers.models.t5 import modeling_t5
  offsets = np.arange(-300, 301)
  expected = modeling_t5.T5Attention._relative_position_bucket(  # pylint: disable=protected-access
      torch.tensor(offsets), bidirectional=True, num_buckets=32,
      max_distance=128).numpy()
  np.testing.assert_array_equal(
      t5.relative_position_bucket(offsets, 32, 128), expected)


@pytest.mark.slow
def test_bfloat16_and_sharded_safetensors_load(tmp_path):
  """bfloat16 tensors are widened to float32; a sharded checkpoint (index
  + shards) reads like a single file."""
  torch, _ = _reference()
  model = _tiny_checkpoint(str(tmp_path / 'bf16'), dtype=torch.bfloat16)
  tensors = weight_files.load_safetensors(
      str(tmp_path / 'bf16' / 'model.safetensors'))
  ref = model.state_dict()['encoder.final_layer_norm.weight'].float().numpy()
  got = tensors['encoder.final_layer_norm.weight']
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, ref)
  model = _tiny_checkpoint(str(tmp_path / 'one'))
  model.save_pretrained(str(tmp_path / 'sharded'), safe_serialization=True,
                        max_shard_size='20KB')
  assert os.path.exists(tmp_path / 'sharded' / t5.WEIGHTS_INDEX)
  _, one = t5.load_checkpoint(str(tmp_path / 'one'))
  _, sharded = t5.load_checkpoint(str(tmp_path / 'sharded'))
  for key, value in weight_files.flatten(one).items():
    np.testing.assert_array_equal(weight_files.flatten(sharded)[key], value)


def _spiece(directory):
  import sentencepiece
  sentencepiece.SentencePieceTrainer.train(
      sentence_iterator=iter(CAPTIONS * 20), model_prefix=str(
          directory / 'spiece'), vocab_size=40, pad_id=0, eos_id=1,
      unk_id=2, bos_id=-1, model_type='unigram', minloglevel=2)
  return str(directory / 'spiece.model')


def test_t5_text_encoder_tokenises_and_embeds(tmp_path):
  _tiny_checkpoint(str(tmp_path))
  _spiece(tmp_path)
  encoder = encoders.load_encoder(f't5:{tmp_path}', max_length=12)
  texts = [' '.join(CAPTIONS), 'a', CAPTIONS[2]]  # too long, short, any
  emb, mask = encoder(texts)
  assert emb.shape == (3, 12, 32) and mask.shape == (3, 12)
  ids, tok_mask = encoder.tokenizer(texts, 12)
  np.testing.assert_array_equal(mask, tok_mask)
  # EOS ends every caption (also a truncated one), padding is id 0.
  for row, m in zip(ids, mask):
    assert row[m.sum() - 1] == 1 and np.all(row[~m] == 0)
  assert mask[0].all() and 2 <= mask[1].sum() < 12
  # The embeddings are the encoder's on those ids.
  config, params = t5.load_checkpoint(str(tmp_path))
  ref = np.asarray(t5.T5Encoder(config).apply({'params': params}, ids, mask))
  np.testing.assert_allclose(emb[mask], ref[mask], atol=1e-5)


def test_missing_checkpoint_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match=(
      r'needs config.json, model.safetensors \(or model.safetensors.index.json'
      r' and its shards\), spiece.model. walt does not download.*t5-v1_1')):
    encoders.load_encoder(f't5:{tmp_path}')
  _tiny_checkpoint(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='needs spiece.model'):
    encoders.load_encoder(f't5:{tmp_path}')
  os.remove(tmp_path / 'model.safetensors')
  with pytest.raises(FileNotFoundError, match='model.safetensors'):
    t5.load_checkpoint(str(tmp_path))
  config = json.loads((tmp_path / 'config.json').read_text())
  (tmp_path / 'config.json').write_text(json.dumps(
      {**config, 'feed_forward_proj': 'gated-silu'}))
  with pytest.raises(ValueError, match='feed_forward_proj'):
    t5.read_config(str(tmp_path))
  with pytest.raises(ValueError, match='builtin'):
    encoders.load_encoder('clip:x')


def test_builtin_encoder_is_deterministic_and_tells_words_apart():
  encoder = encoders.load_encoder('builtin:32', max_length=8)
  emb, mask = encoder(CAPTIONS)
  assert emb.shape == (4, 8, 32) and mask.sum(1).tolist() == [7, 8, 3, 5]
  again, _ = encoders.BuiltinTextEncoder(32, 8)(CAPTIONS)
  np.testing.assert_array_equal(emb, again)
  # 'a' at position 0 is the same vector in every caption; colours differ.
  np.testing.assert_array_equal(emb[0, 0], emb[1, 0])
  assert np.abs(emb[0, 1] - emb[1, 1]).max() > 0.1
  assert np.all(emb[~mask] == 0)
