"""Window-attention denoiser: window isolation, packed images, full-window ==
full attention, parameter counts of the paper's sizes, scan == unrolled."""

import dataclasses
import functools
import importlib.util

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from walt.models import attention
from walt.models import denoiser as dn
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib
from walt.train import denoiser_trainer

GRID = (3, 4, 4)  # latent t, h, w


def _config(**kw):
  base = dict(latent_shape=(*GRID, 4), num_layers=2, width=32, num_heads=4,
              spatial_window=(0, 0), spatiotemporal_window=(0, 2, 2),
              num_classes=5, scan=False)
  base.update(kw)
  return dn.DenoiserConfig(**base)


def _randomize(params, seed=1):
  """Random values for every parameter (zero-init gates would hide mixing);
  one compiled function, not an op-by-op dispatch per leaf."""
  @jax.jit
  def draw(params):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [
        0.3 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])
  return draw(params)


def _layer_fn(cfg, window):
  """A single transformer layer with random params: x -> y."""
  layer = dn.TransformerLayer(cfg, window)
  b, d = 2, cfg.width
  x = jnp.zeros((b, *GRID, d))
  cond = jnp.zeros((b, GRID[0], d))
  mod = jnp.zeros((b, GRID[0], 6 * d))
  params = _randomize(sharding_lib.strip_boxes(
      layer.init(jax.random.key(0), x, cond, mod, None)['params']))
  cond = jax.random.normal(jax.random.key(5), cond.shape)

  def fn(x, is_image=None):
    return layer.apply({'params': params}, x, cond, mod, is_image)
  return jax.jit(fn)


def _changed(fn, x, where, **kw):
  """Boolean `[t, h, w]` map of outputs (sample 0) that change when token
  `where` of sample 0 is perturbed."""
  y0 = fn(x, **kw)
  x1 = x.at[(0, *where)].add(1.0)
  y1 = fn(x1, **kw)
  return np.asarray(jnp.abs(y1 - y0)[0].max(-1) > 0)


@pytest.fixture(scope='module')
def tokens():
  return jax.random.normal(jax.random.key(3), (2, *GRID, 32))


def test_spatial_window_isolation(tokens):
  cfg = _config(spatial_window=(2, 2))
  spatial, _ = cfg.windows()
  assert spatial == (1, 2, 2)
  changed = _changed(_layer_fn(cfg, spatial), tokens, (1, 0, 3))
  expected = np.zeros(GRID, bool)
  expected[1, 0:2, 2:4] = True  # the 1x2x2 window holding (1, 0, 3)
  np.testing.assert_array_equal(changed, expected)


def test_spatiotemporal_window_isolation(tokens):
  cfg = _config()
  _, st = cfg.windows()
  assert st == (3, 2, 2)
  changed = _changed(_layer_fn(cfg, st), tokens, (1, 2, 1))
  expected = np.zeros(GRID, bool)
  expected[:, 2:4, 0:2] = True  # all frames, the 2x2 patch holding (2, 1)
  np.testing.assert_array_equal(changed, expected)


@pytest.mark.slow
def test_packed_images_never_mix(tokens):
  cfg = _config()
  _, st = cfg.windows()
  fn = _layer_fn(cfg, st)
  is_image = jnp.asarray([True, False])
  changed = _changed(fn, tokens, (1, 2, 1), is_image=is_image)
  expected = np.zeros(GRID, bool)
  expected[1, 2:4, 0:2] = True  # only its own image (frame 1)
  np.testing.assert_array_equal(changed, expected)
  # Whole model: perturbing image 0 of a stack changes only image 0.
  model = dn.Denoiser(_config(num_layers=4))
  z = jax.random.normal(jax.random.key(0), (2, *GRID, 4))
  t = jnp.asarray([0.3, 0.6])
  params = _randomize(sharding_lib.strip_boxes(
      model.init(jax.random.key(1), z, t)['params']))
  apply = jax.jit(lambda z: model.apply({'params': params}, z, t,
                                        labels=jnp.asarray([[0, 1, 2]] * 2),
                                        is_image=is_image))
  delta = jnp.abs(apply(z.at[0, 0].add(1.0)) - apply(z))[0].max((1, 2, 3))
  assert float(delta[0]) > 1e-4
  np.testing.assert_array_equal(np.asarray(delta[1:]), 0.0)


def test_full_window_is_full_attention(tokens):
  cfg = _config(spatiotemporal_window=(0, 0, 0))
  window = cfg.windows()[1]
  assert window == GRID
  mod = attention.WindowAttention(cfg.num_heads, window, GRID)
  params = _randomize(sharding_lib.strip_boxes(
      mod.init(jax.random.key(0), tokens, None)['params']))
  ours = mod.apply({'params': params}, tokens, None)

  # Reference: plain multi-head attention over all t*h*w tokens, with the
  # same projections, qk-LayerNorm and relative bias.
  b, d, heads = tokens.shape[0], tokens.shape[-1], cfg.num_heads
  x = tokens.reshape(b, -1, d)
  proj = lambda name, a: a @ params[name]['kernel'] + params[name]['bias']

  def ln(a, p):
    mu = a.mean(-1, keepdims=True)
    var = ((a - mu) ** 2).mean(-1, keepdims=True)
    return (a - mu) / jnp.sqrt(var + 1e-6) * p['scale'] + p['bias']
  split = lambda a: a.reshape(b, -1, heads, d // heads)
  q = ln(split(proj('query', x)), params['query_norm'])
  k = ln(split(proj('key', x)), params['key_norm'])
  v = split(proj('value', x))
  coords = np.stack(np.meshgrid(*map(np.arange, GRID), indexing='ij'),
                    -1).reshape(-1, 3)
  rel = coords[:, None] - coords[None] + np.asarray(GRID) - 1
  sizes = 2 * np.asarray(GRID) - 1
  index = (rel[..., 0] * sizes[1] + rel[..., 1]) * sizes[2] + rel[..., 2]
  bias = params['relative_bias'][index].transpose(2, 0, 1)
  logits = jnp.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(d // heads) + bias
  out = jnp.einsum('bhqk,bkhd->bqhd', jax.nn.softmax(logits, -1), v)
  ref = proj('out', out.reshape(b, -1, d)).reshape(tokens.shape)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=2e-5)


def _attention_inputs(context=0):
  """q `[4, 3, 8, 2, 4]`; keys: 8 window tokens (+ `context` text tokens).
  Samples 0 and 2 are image stacks of 2 frames (4 tokens each), 1 and 3
  videos; sample 1's second half of the text is padding."""
  b, n, length, heads, d = 4, 3, 8, 2, 4
  keys = jax.random.split(jax.random.key(0), 4)
  q = jax.random.normal(keys[0], (b, n, length, heads, d))
  k, v = jax.random.normal(keys[1], (2, b, n, length + context, heads, d))
  bias = jax.random.normal(keys[2], (heads, length, length + context))
  frame = np.arange(length) // 4
  same = frame[:, None] == frame[None]
  own = np.stack([same, np.ones_like(same)] * 2)
  text = np.ones((b, length, context), bool)
  text[1, :, context // 2:] = False
  return q, k, v, bias, jnp.asarray(np.concatenate([own, text], -1))


def test_attend_matches_jax_attention_with_bias_and_mask():
  q, k, v, bias, mask = _attention_inputs(context=3)
  b, n, length, heads, d = q.shape
  ours = attention.attend(q, k, v, bias, mask)
  flat = lambda a: a.reshape(b * n, -1, heads, d)
  ref = jax.nn.dot_product_attention(
      flat(q), flat(k), flat(v), bias=bias[None],
      mask=jnp.repeat(mask[:, None], n, axis=0)).reshape(ours.shape)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), atol=1e-5)
  # The image sample's first frame never sees its second frame; padded
  # text is never seen.
  moved = attention.attend(q, k.at[:, :, 4:8].add(3.0),
                           v.at[:, :, 4:8].add(3.0), bias, mask)
  np.testing.assert_allclose(np.asarray(moved[0, :, :4]),
                             np.asarray(ours[0, :, :4]), atol=1e-6)
  assert float(jnp.abs(moved[1, :, :4] - ours[1, :, :4]).max()) > 1e-3
  padded = attention.attend(q, k.at[1, :, 9:].add(3.0),
                            v.at[1, :, 9:].add(3.0), bias, mask)
  np.testing.assert_allclose(np.asarray(padded), np.asarray(ours), atol=1e-6)


def _value_and_grads(fn, context=0):
  q, k, v, bias, mask = _attention_inputs(context)
  cot = jax.random.normal(jax.random.key(2), q.shape)
  out, vjp = jax.vjp(lambda *a: fn(*a, mask), q, k, v, bias)
  return (out,) + vjp(cot)


def _assert_same_attention(got, expected):
  for name, g, e in zip(('out', 'dq', 'dk', 'dv', 'dbias'), got, expected):
    np.testing.assert_allclose(np.asarray(g), np.asarray(e), atol=2e-5,
                               err_msg=name)


@pytest.mark.parametrize('context', [0, 3])
def test_cudnn_attention_path_gives_the_same_outputs_and_gradients(context):
  """`model.attention=cudnn`: its reshapes and masks, run with jax.nn's XLA
  reference here (no GPU), equal the XLA path forward and backward."""
  _assert_same_attention(
      _value_and_grads(lambda *a: attention.dot_product_attention(
          *a, implementation=None), context),
      _value_and_grads(attention.attend, context))
  q, k, v, bias, mask = _attention_inputs()
  with pytest.raises(ValueError, match="model.attention='flash'"):
    attention.attend(q, k, v, bias, mask, kernel='flash')


@pytest.mark.slow
@pytest.mark.parametrize('context', [0, 3])
def test_pallas_tpu_attention_gives_the_same_outputs_and_gradients(context):
  """`model.attention=pallas`: the TPU flash-attention kernel, run in
  Pallas' TPU interpreter, with queries and keys padded to its 128-token
  tiles, equals the XLA path forward and backward (bias gradient
  included)."""
  from jax.experimental.pallas import tpu as pltpu
  expected = _value_and_grads(attention.attend, context)
  with pltpu.force_tpu_interpret_mode():
    _assert_same_attention(_value_and_grads(
        lambda *a: attention.attend(*a, kernel='pallas'), context), expected)


def test_per_device_attention_blocks_on_a_mesh_equal_the_whole():
  """On a mesh the Pallas kernel runs per device block (shard_map: XLA
  cannot partition a Mosaic kernel): batch over data x fsdp, heads over
  tensor; the bias gradient sums over the batch shards. Checked with the
  XLA attention inside the same wrapper (the kernel itself: above, and
  compiled for TPU in test_scale.py)."""
  expected = _value_and_grads(attention.attend, 3)
  per_shard = lambda *a: attention._per_shard(attention._attend_xla, *a)  # pylint: disable=protected-access
  mesh = mesh_lib.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  with jax.set_mesh(mesh), nn.logical_axis_rules(mesh_lib.DEFAULT_RULES):
    got = jax.jit(lambda: _value_and_grads(per_shard, 3))()
  _assert_same_attention(got, expected)


@functools.lru_cache(maxsize=None)
def _cascade_model():
  """A tiny SR + text denoiser with random params: (apply, inputs, model,
  params), built and compiled once for the tests that share it."""
  cfg = _config(low_res_channels=3, text_dim=6, scan=True)
  model = dn.Denoiser(cfg)
  b = 2
  inputs = dict(
      z=jax.random.normal(jax.random.key(1), (b, *GRID, 4)),
      t=jnp.asarray([0.3, 0.7]), labels=jnp.asarray([0, 1]),
      low_res=jax.random.normal(jax.random.key(2), (b, GRID[0], 2, 2, 3)),
      t_sr=jnp.asarray([0.1, 0.2]),
      text=jax.random.normal(jax.random.key(3), (b, 5, 6)),
      text_mask=jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool))
  params = _randomize(sharding_lib.strip_boxes(jax.jit(model.init)(
      jax.random.key(0), inputs.pop('z'), inputs.pop('t'), **inputs
  )['params']))
  inputs = dict(z=jax.random.normal(jax.random.key(1), (b, *GRID, 4)),
                t=jnp.asarray([0.3, 0.7]), **inputs)

  @jax.jit
  def apply(z, t, **kw):
    return model.apply({'params': params}, z, t, **kw)
  return apply, inputs, model, params


def test_sr_stage_sees_the_low_res_latent_and_its_noise_level():
  apply, inputs, _, _ = _cascade_model()
  base = apply(**inputs)
  differs = lambda **kw: float(jnp.abs(apply(**{**inputs, **kw}) - base).max())
  # t_sr reaches the modulation; the low-res latent reaches the tokens, each
  # low-res position through the upsampling conv to its neighbourhood only.
  assert differs(t_sr=jnp.asarray([0.5, 0.2])) > 1e-3
  assert differs(low_res=inputs['low_res'] * 0.5) > 1e-3
  one = apply(**{**inputs, 't_sr': jnp.asarray([0.5, 0.2])})
  np.testing.assert_allclose(np.asarray(one[1]), np.asarray(base[1]),
                             atol=1e-6)  # per example


def test_text_tokens_are_attended_and_padding_is_not():
  apply, inputs, _, _ = _cascade_model()
  base = apply(**inputs)
  # Real text tokens matter; padded ones never do.
  text = inputs['text']
  changed = apply(**{**inputs, 'text': text.at[0, 1].add(2.0)})
  assert float(jnp.abs(changed[0] - base[0]).max()) > 1e-3
  np.testing.assert_allclose(np.asarray(changed[1]), np.asarray(base[1]),
                             atol=1e-6)
  padded = apply(**{**inputs, 'text': text.at[0, 3:].add(5.0)})
  np.testing.assert_allclose(np.asarray(padded), np.asarray(base), atol=1e-5)
  # No text at all = every text token masked (the guidance's unconditional
  # pass).
  none = apply(**{k: v for k, v in inputs.items()
                  if k not in ('text', 'text_mask')})
  masked = apply(**{**inputs, 'text_mask': jnp.zeros((2, 5), bool)})
  np.testing.assert_allclose(np.asarray(masked), np.asarray(none), atol=1e-5)


def test_text_guidance_scale_one_is_the_conditional_prediction():
  """Text is part of the content condition: the unconditional pass masks
  every text token (and nulls the class), the low-res latent and t_sr go
  to every pass, and w = 1 is the single conditional forward."""
  from walt import defaults
  from walt.diffusion import sampling
  from walt.diffusion import schedule as sched_lib
  from walt.inference import generator as generator_lib
  _, inputs, model, params = _cascade_model()
  cfg = model.config
  b = 2
  z = inputs['z']
  x0_sc = jax.random.normal(jax.random.key(5), z.shape)
  labels = inputs['labels']
  cascade = {k: inputs[k] for k in ('low_res', 't_sr', 'text', 'text_mask')}
  schedule = sched_lib.Schedule.from_config(defaults.denoiser().diffusion)
  gen = generator_lib.Generator(model, params, schedule, None)
  denoise = gen._denoise(params, labels, None, None, cascade)  # pylint: disable=protected-access
  steps = jnp.asarray([300, 700])
  t_in = schedule.time_input(steps)
  apply = jax.jit(lambda **kw: model.apply({'params': params}, z, t_in,
                                           self_cond=x0_sc, **kw))
  cond = apply(labels=labels, **cascade)
  uncond = apply(labels=jnp.full_like(labels, cfg.num_classes),
                 **{**cascade, 'text_mask': jnp.zeros((b, 5), bool)})
  # (Tolerances: random 0.3-std weights amplify float32 reordering of the
  # batched 2b forward to ~5e-4; the passes differ by far more.)
  assert float(jnp.abs(cond - uncond).max()) > 0.1
  vs = jax.jit(lambda z: denoise(z, steps, x0_sc, (
      sampling.ALL, sampling.NONE_GIVEN)))(z)
  np.testing.assert_allclose(vs[0], cond, atol=2e-3)
  np.testing.assert_allclose(vs[1], uncond, atol=2e-3)
  guided = jax.jit(lambda z, w: sampling.guided_v(denoise, z, steps, x0_sc,
                                                  w), static_argnums=1)
  np.testing.assert_allclose(guided(z, 1.0), cond, atol=2e-3)
  three = guided(z, 3.0)
  np.testing.assert_allclose(three, uncond + 3.0 * (cond - uncond),
                             atol=5e-3)
  # Sampling at t_sr > 0 noises the low-res latent to that step first.
  aug = gen._augment_low_res(np.ones((64, 2, 4, 4, 3), np.float32), 0.5, 0)  # pylint: disable=protected-access
  np.testing.assert_allclose(aug['t_sr'], 0.5)
  alpha, sigma = schedule.alpha_sigma(jnp.asarray([500]))
  eps = (aug['low_res'] - float(alpha[0])) / float(sigma[0])
  assert abs(float(eps.mean())) < 0.05 and abs(float(eps.std()) - 1) < 0.05


def test_cross_attention_keys_include_the_window_tokens():
  """Cross-attention's keys are the window's tokens and the text tokens: a
  token moves the other outputs of its window, not of other windows."""
  cfg = _config(text_dim=6, spatial_window=(2, 2))
  layer = attention.WindowAttention(cfg.num_heads, (1, 2, 2), GRID)
  x = jax.random.normal(jax.random.key(0), (2, *GRID, cfg.width))
  ctx = jax.random.normal(jax.random.key(1), (2, 5, cfg.width))
  ctx_mask = jnp.ones((2, 5), bool)
  params = _randomize(sharding_lib.strip_boxes(
      layer.init(jax.random.key(0), x, None, ctx, ctx_mask)['params']))
  fn = jax.jit(lambda x: layer.apply({'params': params}, x, None, ctx,
                                     ctx_mask))
  changed = _changed(fn, x, (1, 0, 0))
  expected = np.zeros(GRID, bool)
  expected[1, :2, :2] = True
  np.testing.assert_array_equal(changed, expected)


def test_windows_are_reshapes_that_invert():
  x = jnp.arange(2 * 4 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 4, 6, 3)
  w = (2, 2, 3)
  windows = attention.to_windows(x, w)
  assert windows.shape == (2, 2, 2, 2, 12, 3)
  np.testing.assert_array_equal(attention.from_windows(windows, w, (4, 4, 6)),
                                x)
  # The first window holds exactly the first 2x2x3 block.
  np.testing.assert_array_equal(windows[0, 0, 0, 0],
                                x[0, :2, :2, :3].reshape(12, 3))


def test_output_conv_adds_a_3x3_conv_across_token_boundaries():
  cfg = _config(patch_size=2)
  z = jax.random.normal(jax.random.key(0), (2, *GRID, 4))
  t = jnp.asarray([0.1, 0.9])
  plain = dn.Denoiser(cfg)
  conv = dn.Denoiser(dataclasses.replace(cfg, output_conv=True))
  params = _randomize(sharding_lib.strip_boxes(
      plain.init(jax.random.key(1), z, t)['params']))
  init = sharding_lib.strip_boxes(conv.init(jax.random.key(1), z, t)['params'])
  # Zero-initialised: the model starts as the one without it.
  with_conv = dict(params, output_conv=init['output_conv'])
  y = plain.apply({'params': params}, z, t)
  np.testing.assert_array_equal(conv.apply({'params': with_conv}, z, t), y)
  # Trained: y + conv3x3(y) per frame, so each latent position sees the
  # positions of the neighbouring tokens.
  kernel = jax.random.normal(jax.random.key(2), (1, 3, 3, 4, 4))
  bias = jax.random.normal(jax.random.key(3), (4,))
  with_conv['output_conv'] = {'kernel': kernel, 'bias': bias}
  expected = y + jax.lax.conv_general_dilated(
      y, kernel, (1, 1, 1), 'SAME',
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC')) + bias
  np.testing.assert_allclose(conv.apply({'params': with_conv}, z, t),
                             expected, atol=1e-4)


@pytest.mark.slow
def test_starts_as_zero_and_scan_matches_unrolled():
  cfg = _config(num_layers=4, scan=True)
  z = jax.random.normal(jax.random.key(0), (2, *GRID, 4))
  t = jnp.asarray([0.1, 0.9])
  labels = jnp.asarray([1, 5])
  scanned = dn.Denoiser(cfg)
  params = sharding_lib.strip_boxes(scanned.init(jax.random.key(1), z,
                                              t)['params'])
  # Zero-init modulation and output layer: the untrained model predicts 0.
  np.testing.assert_array_equal(
      scanned.apply({'params': params}, z, t, labels=labels), 0.0)
  params = _randomize(params)
  unrolled = dn.Denoiser(dataclasses.replace(cfg, scan=False))
  # Same weights laid out per layer instead of stacked.
  per_layer = {k: v for k, v in params.items() if k != 'layers'}
  for i in range(cfg.num_layers // 2):
    per_layer[f'layers_{i}'] = jax.tree.map(lambda a: a[i],
                                            params['layers'])
  a = scanned.apply({'params': params}, z, t, labels=labels)
  b = unrolled.apply({'params': per_layer}, z, t, labels=labels)
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
  # An unrolled scan keeps the stacked params (same checkpoints).
  flat = dn.Denoiser(dataclasses.replace(cfg, scan_unroll=0))
  np.testing.assert_allclose(
      np.asarray(flat.apply({'params': params}, z, t, labels=labels)),
      np.asarray(a), atol=1e-5)
  remat = dn.Denoiser(dataclasses.replace(cfg, remat='full'))
  grad = lambda m: jax.grad(lambda p: jnp.sum(m.apply(
      {'params': p}, z, t, labels=labels) ** 2))(params)
  jax.tree.map(lambda g1, g2: np.testing.assert_allclose(g1, g2, rtol=1e-4,
                                                       atol=1e-4),
               grad(scanned), grad(remat))


def _load(path, arg):
  spec = importlib.util.spec_from_file_location('cfg', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize('path,arg,paper', [
    ('configs/walt/ucf101.py', 'variant=L', 313e6),
    ('configs/walt/ucf101.py', 'variant=XL', 460e6),
    ('configs/walt/imagenet.py', None, 460e6),
    ('configs/walt/t2v.py', 'stage=sr1', 1.3e9),
    ('configs/walt/t2v.py', 'stage=sr2', 419e6),
])
def test_paper_parameter_counts(path, arg, paper):
  info = denoiser_trainer.describe(_load(path, arg), flops=False)
  assert abs(info['params'] - paper) / paper < 0.02, info['params']


def test_config_validation_rejects_bad_windows():
  c = _load('configs/walt/sprites.py', 'quick')
  c.unlock()
  c.model.spatiotemporal_window = (0, 3, 3)  # 3 does not divide 4
  with pytest.raises(ValueError, match='does not divide'):
    denoiser_trainer.check_config(c, {})
  c.model.spatiotemporal_window = (0, 2, 2)
  c.model.num_layers = 5
  with pytest.raises(ValueError, match='even'):
    denoiser_trainer.check_config(c, {})
  c.model.num_layers = 4
  c.diffusion.self_cond_prob = 0.5  # the quick model has no such input
  with pytest.raises(ValueError, match='self_conditioning'):
    denoiser_trainer.check_config(c, {})
  c.diffusion.self_cond_prob = 0.0
  c.model.remat = 'full'  # the sprites configs unroll their scan
  with pytest.raises(ValueError, match='scan_unroll=1'):
    denoiser_trainer.check_config(c, {})
  c.model.scan_unroll = 1
  denoiser_trainer.check_config(c, {})
  c.model.remat = 'none'
  c.diffusion.t_sampling = 'cosine'
  with pytest.raises(ValueError, match='t_sampling'):
    denoiser_trainer.check_config(c, {})
  c.diffusion.t_sampling = 'uniform'
  c.eval.sampler = 'euler'
  with pytest.raises(ValueError, match='eval.sampler'):
    denoiser_trainer.check_config(c, {})
  c.eval.sampler = 'dpmpp'
  denoiser_trainer.check_config(c, {})
  c.diffusion.frame_cond_prob = 0.5
  c.diffusion.frame_cond_modes = {'predict': 1.0, 'rewind': 1.0}
  with pytest.raises(ValueError, match='rewind'):
    denoiser_trainer.check_config(c, {})
  c.diffusion.frame_cond_modes = {'predict': 0.0, 'interpolate': 1.0}
  denoiser_trainer.check_config(c, {})  # 3 latent frames
  c.data.frames, c.diffusion.frame_cond_frames = 5, 1
  with pytest.raises(ValueError, match='interpolation'):
    denoiser_trainer.check_config(c, {})
  # The shipped prediction config passes (and trains on 17-frame clips).
  p = _load('configs/walt/sprites_prediction.py', None)
  denoiser_trainer.check_config(p, {})
  assert p.data.frames == 17 and p.diffusion.frame_cond_prob == 0.9
