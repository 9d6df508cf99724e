"""Scale: a whole train step (loss, gradients, optimizer, EMA; the
tokenizer's discriminator too) on 8 fake devices equals the one-device step,
for a (data 2, fsdp 2, tensor 2) and an (fsdp 8) mesh; k microbatches equal
one batch; large parameters are never silently replicated; per-device bytes
without devices. The step equalities compile 8-device steps (~1 min each
here): they run in CI's slow pass."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_tokenizer import _load_config
from walt import config_lib
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib
from walt.train import denoiser_trainer
from walt.train import loop
from walt.train import state as state_lib
from walt.train import tokenizer_trainer

MESHES = {'data2_fsdp2_tensor2': {'data': 2, 'fsdp': 2, 'tensor': 2},
          'fsdp8': {'fsdp': 8}}
ONE_DEVICE = {'data': 1}


def _denoiser_config(mesh, microbatches=1):
  c = _load_config('configs/walt/sprites.py', 'quick')
  c.unlock()
  c.data.update({'frames': 5, 'resolution': (32, 32), 'image_fraction': 0.25})
  c.model.update({'num_layers': 2, 'width': 32, 'num_heads': 2,
                  'self_conditioning': True})
  c.diffusion.update({'self_cond_prob': 0.5, 'frame_cond_prob': 0.5,
                      'frame_cond_frames': 1})
  return _with_scale_fields(c, 16, microbatches, mesh, 1 << 10)


def _tokenizer_config(mesh, microbatches=1):
  c = _load_config('configs/tokenizer/sprites.py', 'quick')
  c.unlock()
  c.data.update({'frames': 5, 'resolution': (32, 32), 'crop': None})
  c.model.update({'base_channels': 16, 'num_groups': 4})
  c.discriminator.update({'base_channels': 8, 'channel_multipliers': (1, 2)})
  c.loss.update({'gan_start': 0, 'l1_weight': 1.0, 'perceptual_weight': 0.0})
  return _with_scale_fields(c, 8, microbatches, mesh, 1 << 12)


def _with_scale_fields(c, batch_size, microbatches, mesh, limit):
  """Batch, microbatches, mesh and the replicated-param limit (small, so
  the tiny models' kernels are checked too), then locks the config."""
  c.update({'batch_size': batch_size, 'microbatches': microbatches,
            'mesh': mesh, 'replicated_param_limit': limit})
  c.lock()
  return c


def _task(kind, mesh_sizes, microbatches=1, config=None):
  make = _denoiser_config if kind == 'denoiser' else _tokenizer_config
  config = config or make(mesh_sizes, microbatches)
  devices = jax.devices()[:1] if mesh_sizes == ONE_DEVICE else None
  mesh = mesh_lib.create_mesh(mesh_sizes, devices)
  config_lib.validate(config, num_devices=mesh.size)
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  if kind == 'denoiser':
    task = denoiser_trainer.DenoiserTask(config, '', mesh, rules,
                                         offline=True)
  else:
    task = tokenizer_trainer.TokenizerTask(config, '', mesh, rules,
                                           offline=True)
  return task, config


def _values(task, config):
  """A train state with every param perturbed off its init (zero-init
  modulation would hide most paths) and a random batch, as host arrays."""
  rng = np.random.default_rng(0)
  state = sharding_lib.strip_boxes(jax.eval_shape(
      task.init_state, jax.random.key(config.seed)))
  noise = lambda a: (0.2 * rng.normal(size=a.shape)).astype(a.dtype)
  params = jax.tree.map(noise, state.params)
  extra = {}
  if state.extra:
    disc = jax.tree.map(noise, state.extra['disc_params'])
    extra = {'disc_params': disc, 'disc_opt_state': task.disc_tx.init(disc),
             'lecam_real': jnp.zeros(()), 'lecam_fake': jnp.zeros(())}
  values = jax.device_get(state_lib.TrainState.create(
      params, task.tx, ema=True, extra=extra))
  # Past the warm-up (whose first step has a learning rate of 0): the
  # schedules count in the optimizer states.
  past = config.optimizer.warmup_steps + 1
  count = lambda tree: jax.tree.map(
      lambda x: np.int32(past) if np.ndim(x) == 0 and x.dtype == np.int32
      else x, tree)
  values = values.replace(step=np.int32(past),
                          opt_state=count(values.opt_state),
                          extra=count(values.extra))
  batch = {}
  for k, s in task.batch_shapes(config.batch_size).items():
    if s.dtype == jnp.int32:
      batch[k] = rng.integers(0, 12, size=s.shape).astype(np.int32)
    elif s.dtype == bool:
      batch[k] = np.arange(s.shape[0]) % 4 == 0
    else:
      batch[k] = np.clip(rng.normal(size=s.shape), -1, 1).astype(np.float32)
  return values, batch


def _step(task, config, values, batch):
  """One jitted train step as the job runs it, on the task's mesh."""
  with jax.set_mesh(task.mesh), nn.logical_axis_rules(task.rules):
    step, target, abstract_batch = loop.abstract_step(task, config)
    state = jax.device_put(values, jax.tree.map(lambda a: a.sharding, target))
    placed = jax.device_put(batch, jax.tree.map(lambda a: a.sharding,
                                                abstract_batch))
    new, metrics = step(state, placed)
    # The fraction of parameter elements in arrays split over devices.
    sizes = [(leaf.size, not leaf.sharding.is_fully_replicated)
             for leaf in jax.tree.leaves(new.params)]
    split = sum(n for n, is_split in sizes if is_split) / sum(
        n for n, _ in sizes)
    return jax.device_get((new, metrics)), split


def _assert_same_step(a, b, lr):
  """Loss and every metric; Adam's moments (mu = 0.1 x the gradient: an
  exact gradient check); the new params, EMA and extras. Adam's first steps
  move an element by ~lr g / (|g| + eps), which for the rare |g| ~ eps
  turns reduction-order noise into up to lr: all but 0.1% of the elements
  must agree to 5% of lr, and all to 2 lr."""
  (new_a, metrics_a), (new_b, metrics_b) = a, b
  assert int(metrics_a['nonfinite']) == int(metrics_b['nonfinite']) == 0
  for k in metrics_a:
    np.testing.assert_allclose(metrics_a[k], metrics_b[k], rtol=2e-5,
                               atol=1e-6, err_msg=k)
  opt = lambda s: (s.opt_state, s.extra.get('disc_opt_state'))
  scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(opt(new_b)))
  jax.tree.map(lambda x, y: np.testing.assert_allclose(
      x, y, rtol=1e-4, atol=1e-5 * scale), opt(new_a), opt(new_b))

  def updated(s):
    extra = {k: v for k, v in s.extra.items() if k != 'disc_opt_state'}
    return s.params, s.ema_params, extra
  diff = np.concatenate([np.abs(x - y).ravel() for x, y in zip(
      jax.tree.leaves(updated(new_a)), jax.tree.leaves(updated(new_b)))])
  assert np.mean(diff <= 0.05 * lr) >= 0.999, np.sort(diff)[-20:]
  assert diff.max() <= 2 * lr, diff.max()


@pytest.fixture(scope='module')
def references():
  """One-device steps, computed once: {kind: (values, batch, result)}."""
  out = {}
  for kind in ('denoiser', 'tokenizer'):
    task, config = _task(kind, ONE_DEVICE)
    values, batch = _values(task, config)
    out[kind] = (values, batch, _step(task, config, values, batch)[0])
  return out


@pytest.mark.slow
@pytest.mark.parametrize('mesh_name', sorted(MESHES))
@pytest.mark.parametrize('kind', ['denoiser', 'tokenizer'])
def test_sharded_train_step_equals_one_device(references, kind, mesh_name):
  values, batch, reference = references[kind]
  task, config = _task(kind, MESHES[mesh_name])
  result, split = _step(task, config, values, batch)
  # Params really split over the mesh, not replicated (biases and norm
  # scales may be whole).
  assert split > 0.9, split
  _assert_same_step(result, reference, config.optimizer.lr)
  # The step moved the params (by about lr for most elements).
  old = np.concatenate([x.ravel() for x in jax.tree.leaves(values.params)])
  new = np.concatenate([x.ravel() for x in
                        jax.tree.leaves(reference[0].params)])
  assert np.median(np.abs(new - old)) > 0.3 * config.optimizer.lr


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['denoiser', 'tokenizer'])
def test_microbatches_equal_one_batch(references, kind):
  """k = 4 slices of the batch (scan, mean gradient) = the one-batch step:
  the same noise, t and dropouts per example, the same update."""
  values, batch, reference = references[kind]
  task, config = _task(kind, ONE_DEVICE, microbatches=4)
  result, _ = _step(task, config, values, batch)
  _assert_same_step(result, reference, config.optimizer.lr)


def test_microbatches_must_split_over_the_batch_sharding():
  config = _denoiser_config({'data': 4, 'fsdp': 2}, microbatches=4)
  with pytest.raises(ValueError, match='microbatches=4'):
    config_lib.validate(config, num_devices=8)


def test_large_replicated_param_is_refused():
  """A rule that leaves a big kernel whole on an fsdp mesh is caught before
  anything compiles, naming the parameter and the fix."""
  task, config = _task('denoiser', MESHES['fsdp8'])
  rules = mesh_lib.rules_from_config({'embed': None, 'mlp': None})
  abstract = jax.eval_shape(task.init_state, jax.random.key(0))
  shardings = sharding_lib.tree_shardings(abstract, task.mesh, rules)
  target = sharding_lib.strip_boxes(abstract)
  with pytest.raises(ValueError, match=r"mlp_in.*logical_rules"):
    loop.check_param_sharding(config, target, shardings, task.mesh)
  # The default rules pass, for the denoiser and the tokenizer (whose convs
  # split their input channels over fsdp).
  for kind in ('denoiser', 'tokenizer'):
    task, config = _task(kind, MESHES['fsdp8'])
    abstract = jax.eval_shape(task.init_state, jax.random.key(0))
    shardings = sharding_lib.tree_shardings(abstract, task.mesh, task.rules)
    loop.check_param_sharding(config, sharding_lib.strip_boxes(abstract),
                              shardings, task.mesh)


def test_indivisible_dimension_stays_whole():
  """A dimension its mesh axes do not divide (3 RGB channels over fsdp 4)
  is kept whole instead of failing to compile; the others stay split."""
  mesh = jax.sharding.AbstractMesh((1, 4, 2), mesh_lib.MESH_AXES)
  boxed = {'k': nn.Partitioned(jax.ShapeDtypeStruct((3, 3, 3, 64), 'float32'),
                               (None, None, 'conv_in', 'conv_out'))}
  s = sharding_lib.tree_shardings(boxed, mesh, mesh_lib.DEFAULT_RULES)['k']
  assert tuple(s.spec) == (None, None, None, 'tensor')
  boxed = {'k': nn.Partitioned(jax.ShapeDtypeStruct((3, 3, 8, 64), 'float32'),
                               (None, None, 'conv_in', 'conv_out'))}
  s = sharding_lib.tree_shardings(boxed, mesh, mesh_lib.DEFAULT_RULES)['k']
  assert s.shard_shape((3, 3, 8, 64)) == (3, 3, 2, 32)


def _eqns(jaxpr):
  """Every equation of a closed jaxpr, sub-jaxprs (scan, cond, ...) too."""
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax.core.jaxprs_in_params(eqn.params):
      yield from _eqns(sub)


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['denoiser', 'tokenizer'])
def test_bfloat16_matmuls_float32_params_norms_softmax_loss(kind):
  """With `model.dtype=bfloat16` every matmul (denoiser) and conv
  (tokenizer; its adaptive norms' small dense maps of latent statistics and
  the discriminator stay float32) takes bfloat16 operands, while params,
  gradients, norm statistics, the softmax and the loss stay float32; the
  loss is the float32 model's to bfloat16 precision."""
  from walt.diffusion import objectives
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = (_denoiser_config if kind == 'denoiser' else _tokenizer_config)(
        ONE_DEVICE)
    config.unlock()
    config.model.dtype = dtype
    config.lock()
    task, _ = _task(kind, ONE_DEVICE, config=config)
    values, batch = _values(task, config)
    if kind == 'denoiser':
      loss_fn = lambda p, b: objectives.diffusion_loss(
          task.apply, p, jax.random.key(0), task.schedule, task.objective,
          b['latent'], b['label'], b['is_image'])[0]
      ops = ('dot_general',)
    else:
      loss_fn = lambda p, b: jnp.mean(jnp.square(
          task.model.apply({'params': p}, b['video'])[0] - b['video']))
      ops = ('conv_general_dilated',)
    grad = jax.value_and_grad(loss_fn)
    eqns = list(_eqns(jax.make_jaxpr(grad)(values.params, batch).jaxpr))
    products = [e for e in eqns if e.primitive.name in ops]
    assert len(products) > 10
    in_dtypes = {str(v.aval.dtype) for e in products for v in e.invars}
    assert in_dtypes == {dtype}, in_dtypes
    # Softmax (exp) and norm statistics (rsqrt) in float32.
    for name in ('exp', 'rsqrt'):
      found = {str(v.aval.dtype) for e in eqns if e.primitive.name == name
               for v in e.invars}
      assert found <= {'float32'}, (name, found)
    loss, grads = jax.jit(grad)(values.params, batch)
    assert {str(g.dtype) for g in jax.tree.leaves(grads)} == {'float32'}
    assert loss.dtype == jnp.float32
    losses[dtype] = float(loss)
  assert abs(losses['bfloat16'] - losses['float32']) < 0.03 * abs(
      losses['float32']), losses


def _walt_param_count(layers, width, heads, latent, classes, windows,
                      lora_rank=2, mlp_ratio=4, time_dim=256):
  """Parameters of a W.A.L.T denoiser in closed form, from the paper's
  architecture (section 3 / Table 8; walt.models.denoiser's module doc):
  inputs z_t, self-conditioning x0 and the masked latent + mask on
  channels, patch size 1; learned spatial and temporal positions; per
  layer AdaLN-LoRA (rank r, 6 modulations), q/k/v/o, qk-LayerNorm per
  head (scale + bias), a Swin relative-bias table per head over the
  window, an MLP of ratio 4; time MLP, class table with a null class,
  shared AdaLN projection, final AdaLN (shift, scale) and linear layer.
  `windows`: (spatial, spatiotemporal) windows (t, h, w) in tokens."""
  t, h, w, c = latent
  d, hd = width, width // heads
  dense = lambda i, o: i * o + o

  def layer(window):
    table = int(np.prod([2 * n - 1 for n in window]))
    return (dense(d, lora_rank) + dense(lora_rank, 6 * d) + 4 * dense(d, d)
            + 2 * 2 * hd + table * heads + dense(d, mlp_ratio * d)
            + dense(mlp_ratio * d, d))
  stem = (dense(c + c + (c + 1), d) + h * w * d + t * d
          + dense(time_dim, d) + dense(d, d) + (classes + 1) * d
          + dense(d, 6 * d))
  head = dense(d, 2 * d) + dense(d, c)
  return stem + layers // 2 * sum(layer(wi) for wi in windows) + head


def test_describe_mesh_bytes_split_evenly_for_the_xl_config():
  """`describe --mesh=fsdp:8` on the paper's UCF-101 XL config: total
  param bytes = 2 (params + EMA) x 4 bytes x the closed-form parameter
  count of XL (28 layers, 1152 wide, 16 heads, AdaLN-LoRA r=2; latent
  5x16x16x8, windows 1x16x16 / 5x8x8, 101 classes), within 0.1% of the
  paper's 460M; per-device params and optimizer state within 5% of total
  / 8, without devices or allocation. Catches a parameter the
  architecture does not have or one missing (e.g. no null-class row)."""
  from walt.tools import describe
  config = _load_config('configs/walt/ucf101.py')
  count = _walt_param_count(28, 1152, 16, (5, 16, 16, 8), 101,
                            ((1, 16, 16), (5, 8, 8)))
  assert abs(count / 460e6 - 1) < 1e-3, count
  info = describe.state_bytes(config, {'fsdp': 8})
  assert info['total_param_bytes'] == 2 * 4 * count, (
      info['total_param_bytes'] // 8, count)
  for kind in ('param', 'optimizer'):
    ratio = info[f'per_device_{kind}_bytes'] / (
        info[f'total_{kind}_bytes'] / 8)
    assert 1.0 <= ratio < 1.05, (kind, ratio)
  info = describe.state_bytes(config, {'data': 8})
  assert info['per_device_param_bytes'] == info['total_param_bytes']


@pytest.mark.slow
def test_aot_compiles_for_a_tpu_slice():
  """`walt.tools.aot` compiles the real denoiser train step and sampler of a
  tiny config for a v5e 2x2 slice (libtpu, no TPU) and reports memory
  against HBM, FLOPs and a step-time estimate; a step that does not fit
  stops the CLI with exit 1 and the levers to pull."""
  pytest.importorskip('libtpu', reason="needs pip install 'jax[tpu]'")
  from walt.tools import aot
  # Microbatches too: the FLOPs must still be the whole batch's.
  config = _denoiser_config({'data': 2, 'fsdp': 2}, microbatches=2)
  report = aot.run(config, 'v5e:2x2', sampler=True, sample_batch_size=8)
  assert report['microbatches'] == 2
  assert report['devices'] == 4 and report['device_kind'] == 'TPU v5 lite'
  assert report['mesh'] == {'data': 2, 'fsdp': 2, 'tensor': 1}
  assert report['hbm_bytes'] == 16 << 30 and report['fits']
  # The state is donated: arguments alias the outputs.
  assert 0 < report['per_device_alias_bytes'] <= report[
      'per_device_argument_bytes'] < report['per_device_peak_bytes']
  # FLOPs of the unrolled step: ~3x the forward (+ self-conditioning).
  from walt.train import denoiser_trainer
  forward = denoiser_trainer.describe(config)['flops_per_example']
  assert 2.5 * forward * 16 < report['flops_per_step'] < 6 * forward * 16
  assert report['estimated_step_seconds'] > 0
  assert report['sampler']['batch_size'] == 8
  assert report['sampler']['per_device_peak_bytes'] > 0


@pytest.mark.slow
def test_aot_compiles_the_pallas_attention_kernel_for_a_tpu_slice():
  """`model.attention=pallas`: the train step with the TPU flash-attention
  kernel (Mosaic) compiles for a v5e 2x2 slice."""
  pytest.importorskip('libtpu', reason="needs pip install 'jax[tpu]'")
  from walt.tools import aot
  config = _denoiser_config({'data': 2, 'fsdp': 2})
  config.unlock()
  config.model.attention = 'pallas'
  config.lock()
  report = aot.run(config, 'v5e:2x2')
  assert report['fits'] and report['flops_per_step'] > 0


def test_aot_cli_stops_when_the_step_does_not_fit(monkeypatch, capsys):
  """A real compile that does not fit: a tiny denoiser's train step at a
  global batch of 2^20 clips for a v5e 2x2 slice (libtpu; XLA refuses,
  32 GiB of temporaries against 15.75 GiB of HBM, in ~10 s): the CLI exits
  1 with XLA's message and the levers to pull. Catches an out-of-memory
  refusal the tool does not recognise (a traceback instead of the
  report), or a report of a step that fits. The other message (compiled,
  but arguments + temporaries over HBM) is checked on a given report."""
  pytest.importorskip('libtpu', reason="needs pip install 'jax[tpu]'")
  from walt.tools import aot
  c = _load_config('configs/walt/sprites.py', 'quick')
  c.unlock()
  c.data.update({'frames': 5, 'resolution': (32, 32), 'image_fraction': 0.0})
  c.model.update({'num_layers': 2, 'width': 16, 'num_heads': 1,
                  'self_conditioning': False, 'frame_conditioning': False,
                  'scan': False})
  c.diffusion.update({'self_cond_prob': 0.0, 'frame_cond_prob': 0.0})
  c.update({'mesh': {'data': 4}})
  c.lock()
  flags = dict(config=c, topology='v5e:2x2', mesh='', batch_size=1 << 20,
               sampler=False, sample_batch_size=0, json=False)
  monkeypatch.setattr(aot, 'FLAGS', type('F', (), flags))
  with pytest.raises(SystemExit) as e:
    aot.main([])
  assert e.value.code == 1
  out, err = capsys.readouterr()
  assert 'fits: False' in out, out
  assert 'does not fit on v5e:2x2: XLA: Ran out of memory on HBM' in err, err
  assert 'microbatches' in err
  # Compiled, but the per-device peak is over HBM: its message.
  report = {'fits': False, 'per_device_peak_bytes': 40 << 30,
            'hbm_bytes': 16 << 30, 'topology': 'v5e:4x4'}
  monkeypatch.setattr(aot, 'run', lambda *a, **k: report)
  with pytest.raises(SystemExit) as e:
    aot.main([])
  assert e.value.code == 1
  err = capsys.readouterr().err
  assert 'does not fit on v5e:4x4: 40.00 GiB per device > 16.00 GiB' in err


def tokenizer_task(mesh_sizes, devices=None):
  """The tiny tokenizer task (discriminator on) on a mesh of `devices`
  (default: all, across processes): for the multi-host worker too."""
  config = _tokenizer_config(mesh_sizes)
  mesh = mesh_lib.create_mesh(mesh_sizes, devices)
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  return tokenizer_trainer.TokenizerTask(config, '', mesh, rules,
                                         offline=True), config


def seeded_batch(task, config, i):
  """Global batch `i`: the same host arrays on every process."""
  rng = np.random.default_rng(100 + i)
  return {k: np.clip(rng.normal(size=s.shape), -1, 1).astype(np.float32)
          for k, s in task.batch_shapes(config.batch_size).items()}


@pytest.mark.slow
def test_multihost_checkpoint_restores_on_another_mesh_and_continues(
    tmp_path):
  """2 processes x 4 devices save collectively ((data 2, fsdp 4) mesh); one
  process restores onto 2 devices with an (fsdp 2) mesh: the same state,
  bit for bit, and its next train step equals that step computed from the
  gathered state placed directly on the new mesh."""
  import os
  import subprocess
  import sys
  from tests.test_distributed import _free_port
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, 'PYTHONPATH': root}
  env.pop('XLA_FLAGS', None)
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(root, 'tests', 'checkpoint_worker.py'),
       str(i), '2', str(port), str(tmp_path)], env=env,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  for p in procs:
    log, _ = p.communicate(timeout=600)
    assert p.returncode == 0, log[-3000:]
  saved = dict(np.load(tmp_path / 'state.npz'))

  task, config = tokenizer_task({'fsdp': 2}, jax.devices()[:2])
  state = loop.restore_latest(task, config, str(tmp_path), task.mesh,
                              task.rules)
  flat = {jax.tree_util.keystr(k): v for k, v in
          jax.tree_util.tree_leaves_with_path(state)}
  assert set(flat) == set(saved)
  for k, v in flat.items():
    assert v.sharding.mesh.devices.size == 2, k
    np.testing.assert_array_equal(np.asarray(v), saved[k], err_msg=k)
  assert int(state.step) == 2

  # Training continues: the restored (sharded) state's next step equals the
  # step from the gathered values placed on this mesh.
  batch = seeded_batch(task, config, 2)
  direct_values = jax.tree_util.tree_unflatten(
      jax.tree_util.tree_structure(state), [saved[k] for k in flat])
  direct = _step(task, config, direct_values, batch)[0]
  with jax.set_mesh(task.mesh), nn.logical_axis_rules(task.rules):
    step, _, abstract_batch = loop.abstract_step(task, config)
    placed = jax.device_put(batch, jax.tree.map(lambda a: a.sharding,
                                                abstract_batch))
    restored = jax.device_get(step(state, placed))
  assert int(restored[1]['nonfinite']) == 0 and int(restored[0].step) == 3
  jax.tree.map(np.testing.assert_array_equal, restored, direct)
