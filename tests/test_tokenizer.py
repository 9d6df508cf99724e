"""Causal 3D tokenizer: causality, image/video consistency, shapes, chunking,
inflation."""

import dataclasses
import importlib.util
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from walt.models import tokenizer as tok
from walt.train import tokenizer_trainer

ROOT = pathlib.Path(__file__).resolve().parents[1]

# 4 levels (8x spatial), 2 temporal downsamplings (4x), tiny widths.
TINY = tok.TokenizerConfig(base_channels=8, channel_multipliers=(1, 1, 2, 2),
                           num_res_blocks=1, num_mid_blocks=1, num_groups=4,
                           latent_channels=4)


def _load_config(relpath, arg=None):
  spec = importlib.util.spec_from_file_location('cfg', ROOT / relpath)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _perturbed_init(model, example):
  """Params with every leaf nudged off its init (e.g. the zero-initialised
  adaptive-norm maps), so every path of the network is exercised."""
  @jax.jit
  def init(example):
    params = nn.unbox(model.init(jax.random.key(0), example))['params']
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    return jax.tree.unflatten(tree, [
        p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  return init(example)


# The CPU layout: a Haar patch stem (2x2x2) and one more level that
# downsamples space and time (4x spatial, 4x temporal in all).
TINY_PATCH = tok.TokenizerConfig(
    base_channels=8, channel_multipliers=(1, 2, 2), num_res_blocks=1,
    num_mid_blocks=1, num_groups=4, latent_channels=4, patch_size=(2, 2, 2),
    stem='haar', temporal_downsample=(True, False),
    spatial_downsample=(True, False))


# The paper's MAGVIT-v2 layout compiles slowly: CI runs it with `-m slow`.
@pytest.fixture(scope='module', params=[
    pytest.param('magvit', marks=pytest.mark.slow), 'patch'])
def tiny(request):
  model = tok.Tokenizer(TINY if request.param == 'magvit' else TINY_PATCH)
  video = jax.random.uniform(jax.random.key(1), (2, 9, 16, 16, 3),
                             minval=-1, maxval=1)
  params = _perturbed_init(model, video)
  encode = jax.jit(lambda p, v: model.apply({'params': p}, v,
                                            method='encode'))
  decode = jax.jit(lambda p, z: model.apply({'params': p}, z,
                                            method='decode'))
  return model, params, video, encode, decode


def test_encoder_is_exactly_causal(tiny):
  model, params, video, encode, _ = tiny
  z = encode(params, video)
  assert z.shape == (2,) + model.config.latent_shape(9, 16, 16)
  later = video.at[:, 5:].set(jax.random.uniform(jax.random.key(3),
                                                 video[:, 5:].shape))
  z2 = encode(params, later)
  # Latent frames 0 (frame 0) and 1 (frames 1-4) never see frames 5-8.
  np.testing.assert_array_equal(np.asarray(z[:, :2]), np.asarray(z2[:, :2]))
  assert not np.allclose(z[:, 2], z2[:, 2])


def test_decoder_is_exactly_causal(tiny):
  _, params, video, encode, decode = tiny
  z = encode(params, video)
  x = decode(params, z)
  assert x.shape == video.shape
  z2 = z.at[:, 2].add(1.0)
  x2 = decode(params, z2)
  np.testing.assert_array_equal(np.asarray(x[:, :5]), np.asarray(x2[:, :5]))
  assert not np.allclose(x[:, 5:], x2[:, 5:])


def test_image_latent_is_first_latent_frame_of_any_video_starting_with_it(
    tiny):
  model, params, video, encode, _ = tiny
  image_latent = encode(params, video[:, :1])
  assert image_latent.shape == (2,) + model.config.latent_shape(1, 16, 16)
  other = video.at[:, 1:].set(-video[:, 1:])
  for v in (video, other):
    np.testing.assert_allclose(np.asarray(encode(params, v)[:, :1]),
                               np.asarray(image_latent), atol=1e-5)


@pytest.mark.slow
def test_chunked_encode_and_decode_equal_whole(tiny):
  model, params, _, encode, decode = tiny
  video = jax.random.uniform(jax.random.key(4), (1, 13, 16, 16, 3),
                             minval=-1, maxval=1)
  z = encode(params, video)
  np.testing.assert_allclose(
      np.asarray(tok.encode_chunked(model, params, video)), np.asarray(z),
      atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(tok.encode_chunked(model, params, video,
                                    chunk_latent_frames=2)),
      np.asarray(z), atol=1e-5)
  np.testing.assert_allclose(
      np.asarray(tok.decode_chunked(model, params, z)),
      np.asarray(decode(params, z)), atol=1e-5)


@pytest.mark.slow
def test_inflated_video_tokenizer_reproduces_the_image_tokenizer():
  image_cfg = tok.TokenizerConfig(**{**TINY.__dict__, 'temporal_kernel': 1})
  image_model, video_model = tok.Tokenizer(image_cfg), tok.Tokenizer(TINY)
  image = jax.random.uniform(jax.random.key(5), (2, 1, 16, 16, 3),
                             minval=-1, maxval=1)
  image_params = _perturbed_init(image_model, image)
  shapes = jax.eval_shape(lambda: nn.unbox(video_model.init(
      jax.random.key(0), jnp.zeros((1, 9, 16, 16, 3))))['params'])
  video_params = tok.inflate_image_params(image_params, shapes)
  assert jax.tree.map(lambda a: a.shape, video_params) == jax.tree.map(
      lambda a: a.shape, shapes)
  def run(model, params):
    z = model.apply({'params': params}, image, method='encode')
    return z, model.apply({'params': params}, z, method='decode')
  want_z, want = jax.jit(lambda p: run(image_model, p))(image_params)
  got_z, got = jax.jit(lambda p: run(video_model, p))(video_params)
  np.testing.assert_allclose(np.asarray(got_z), np.asarray(want_z), atol=1e-5)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


@pytest.mark.parametrize('config,arg,latent', [
    ('configs/tokenizer/ucf101.py', None, [5, 16, 16, 8]),
    ('configs/tokenizer/k600.py', None, [5, 16, 16, 8]),
    ('configs/tokenizer/t2v.py', 'stage=sr1', [5, 32, 56, 8]),
    ('configs/tokenizer/imagenet.py', None, [1, 32, 32, 8]),
    ('configs/tokenizer/sprites.py', None, [5, 16, 16, 16]),
    ('configs/tokenizer/sprites.py', 'quick', [5, 8, 8, 16]),
])
def test_paper_shapes_without_allocation(config, arg, latent):
  info = tokenizer_trainer.describe(_load_config(config, arg), flops=False)
  assert info['latent_shape'] == latent
  assert info['params'] > 0


def test_latent_shape_rules():
  c = tok.TokenizerConfig()
  assert c.latent_shape(17, 128, 128) == (5, 16, 16, 8)
  assert c.latent_shape(1, 256, 256) == (1, 32, 32, 8)
  with pytest.raises(ValueError, match='1 \\+ 4k'):
    c.latent_shape(16, 128, 128)
  with pytest.raises(ValueError, match='divisible'):
    c.latent_shape(17, 100, 128)


@pytest.mark.parametrize('normalize', [True, False])
def test_latent_shape_matches_the_network_for_any_depth(normalize):
  """`latent_shape` counts only the temporal downsamplings the encoder runs
  (3 levels use the first 2 entries of `temporal_downsample`)."""
  for mults in ((1, 2), (1, 2, 4), (1, 2, 4, 4)):
    c = tok.TokenizerConfig(base_channels=8, channel_multipliers=mults,
                            num_res_blocks=1, num_mid_blocks=1, num_groups=4,
                            normalize=normalize)
    video = jax.ShapeDtypeStruct((1, 9, 32, 32, 3), jnp.float32)
    variables = jax.eval_shape(tok.Tokenizer(c).init, jax.random.key(0), video)
    z = jax.eval_shape(
        lambda v, x: tok.Tokenizer(c).apply(v, x, method='encode'),
        variables, video)
    assert z.shape[1:] == c.latent_shape(9, 32, 32), mults
    has_adanorm = any('adanorm' in k for k in variables['params']['decoder'])
    assert has_adanorm == normalize


def test_patchify_inverts_and_the_haar_stem_is_orthonormal():
  for n in (1, 2, 4, 8):
    h = tok.haar_matrix(n)
    np.testing.assert_allclose(h @ h.T, np.eye(n), atol=1e-6)
  video = jax.random.normal(jax.random.key(7), (2, 9, 8, 8, 3))
  for stem in tok.STEMS:
    c = tok.TokenizerConfig(patch_size=(4, 2, 2), stem=stem)
    folded = tok.patchify(video, c, first_chunk=True)
    assert folded.shape == (2, 3, 4, 4, 48)
    # An orthonormal fold keeps the energy (the padding frames are zeros).
    np.testing.assert_allclose(float(jnp.sum(folded ** 2)),
                               float(jnp.sum(video ** 2)), rtol=1e-5)
    np.testing.assert_allclose(
        np.asarray(tok.unpatchify(folded, c, first_chunk=True)),
        np.asarray(video), atol=1e-5)


def test_patch_config_validation():
  with pytest.raises(ValueError, match='powers of 2'):
    tok.TokenizerConfig(patch_size=(3, 4, 4), stem='haar')
  with pytest.raises(ValueError, match='image tokenizer'):
    tok.TokenizerConfig(patch_size=(4, 4, 4), temporal_kernel=1)
  with pytest.raises(ValueError, match='conv_impl'):
    tok.TokenizerConfig(conv_impl='winograd')
  c = tok.TokenizerConfig(patch_size=(4, 4, 4), channel_multipliers=(1, 2),
                          temporal_downsample=(False,),
                          spatial_downsample=(False,))
  assert (c.spatial_factor, c.temporal_factor) == (4, 4)
  assert c.latent_shape(17, 64, 64) == (5, 16, 16, 8)


@pytest.mark.parametrize('kernel,strides,causal', [
    ((3, 3, 3), (1, 1, 1), True), ((3, 3, 3), (2, 2, 2), True),
    ((1, 1, 1), (1, 1, 1), True), ((3, 3, 3), (1, 2, 2), False)])
def test_conv_implementations_agree_in_outputs_and_gradients(
    kernel, strides, causal):
  from walt.models.layers import CausalConv3D
  x = jax.random.normal(jax.random.key(8), (2, 5, 8, 8, 6))
  convs = {impl: CausalConv3D(7, kernel, strides, causal=causal, impl=impl)
           for impl in ('xla', 'im2col')}
  params = convs['xla'].init(jax.random.key(9), x)

  def loss(impl, p, x):
    y = convs[impl].apply(p, x)
    return jnp.sum(jnp.sin(y)), y
  outs = {impl: jax.jit(jax.grad(lambda p, x, i=impl: loss(i, p, x),
                                 argnums=(0, 1), has_aux=True))(params, x)
          for impl in convs}
  (g_xla, y_xla), (g_col, y_col) = outs['xla'], outs['im2col']
  np.testing.assert_allclose(np.asarray(y_col), np.asarray(y_xla),
                             rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(g_col), jax.tree.leaves(g_xla)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4,
                               atol=1e-4)


@pytest.mark.slow
def test_whole_tokenizer_is_the_same_function_with_im2col_convs(tiny):
  model, params, video, _, _ = tiny
  other = tok.Tokenizer(dataclasses.replace(model.config,
                                            conv_impl='im2col'))
  want = model.apply({'params': params}, video)[0]
  got = jax.jit(lambda p, v: other.apply({'params': p}, v)[0])(params, video)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-4)


def test_rms_norm_makes_the_encoder_independent_of_the_frame_size():
  """With per-position RMSNorm (`norm='rms'`) a latent position whose
  receptive field lies inside a crop is the same whether the crop or the
  whole frame is encoded (so training on crops transfers to whole frames);
  per-frame GroupNorm statistics change with the frame size."""
  import dataclasses
  video = jax.random.uniform(jax.random.key(4), (1, 5, 128, 128, 3),
                             minval=-1, maxval=1)
  crop = video[:, :, 16:112, 16:112]  # latent offset 4 (4x spatial)
  gaps = {}
  for norm in ('rms', 'group'):
    model = tok.Tokenizer(dataclasses.replace(TINY_PATCH, norm=norm))
    params = _perturbed_init(model, crop)
    encode = jax.jit(lambda v, model=model, params=params: model.apply(
        {'params': params}, v, method='encode'))
    whole, part = encode(video), encode(crop)
    assert part.shape[2:4] == (24, 24)
    # The centre 4x4 of the crop's latent: receptive fields inside the crop.
    gaps[norm] = float(jnp.abs(part[:, :, 10:14, 10:14]
                               - whole[:, :, 14:18, 14:18]).max())
  assert gaps['rms'] < 1e-4, gaps
  assert gaps['group'] > 1e-3, gaps
  with pytest.raises(ValueError, match='norm'):
    dataclasses.replace(TINY_PATCH, norm='batch').validate()
