"""Mesh construction and logical-axis rules on 1 and 8 fake CPU devices."""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest

from walt.parallel import mesh as mesh_lib


def test_eight_fake_devices_are_present():
  assert jax.device_count() == 8


@pytest.mark.parametrize('sizes,expected', [
    ({'data': -1}, (8, 1, 1)),
    ({'data': -1, 'fsdp': 2}, (4, 2, 1)),
    ({'data': 2, 'fsdp': -1, 'tensor': 2}, (2, 2, 2)),
    ({'data': 1, 'fsdp': 1, 'tensor': -1}, (1, 1, 8)),
    ({'fsdp': 8}, (1, 8, 1)),
])
def test_mesh_shapes_on_eight_devices(sizes, expected):
  mesh = mesh_lib.create_mesh(sizes)
  assert mesh.axis_names == ('data', 'fsdp', 'tensor')
  assert tuple(mesh.shape.values()) == expected
  assert sorted(d.id for d in mesh.devices.flat) == list(range(8))
  assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_mesh_on_one_device():
  mesh = mesh_lib.create_mesh({'data': -1, 'fsdp': 1, 'tensor': 1},
                              devices=jax.devices()[:1])
  assert tuple(mesh.shape.values()) == (1, 1, 1)


@pytest.mark.parametrize('sizes,message', [
    ({'data': -1, 'fsdp': -1}, 'at most one'),
    ({'data': 3, 'fsdp': -1}, 'not divisible'),
    ({'data': 2, 'fsdp': 2}, 'needs 4 devices'),
    ({'data': 0}, 'positive'),
    ({'model': 2}, 'unknown mesh axes'),
])
def test_bad_mesh_sizes_raise(sizes, message):
  with pytest.raises(ValueError, match=message):
    mesh_lib.create_mesh(sizes)


def test_logical_axes_map_to_mesh_axes():
  mesh = mesh_lib.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  assert mesh_lib.logical_sharding(mesh, ('embed', 'mlp')).spec == P(
      'fsdp', 'tensor')
  assert mesh_lib.logical_sharding(mesh, ('act_batch', 'act_tokens',
                                          'act_embed')).spec == P(
                                              ('data', 'fsdp'), None, None)
  assert mesh_lib.batch_parallelism(mesh) == 4


def test_rule_overrides_from_config():
  rules = mesh_lib.rules_from_config({'embed': None, 'act_batch': ['data'],
                                      'codebook': 'tensor'})
  mesh = mesh_lib.create_mesh({'data': 4, 'fsdp': 2})
  assert mesh_lib.logical_sharding(mesh, ('embed',), rules).spec == P(None)
  assert mesh_lib.batch_parallelism(mesh, rules) == 4
  assert dict(rules)['codebook'] == 'tensor'


def _denoiser_setup():
  """A tiny scanned denoiser with every input (class, self-conditioning,
  given frames), a batch of 8, its init and its loss + gradient."""
  from walt.models import denoiser as dn
  cfg = dn.DenoiserConfig(latent_shape=(3, 4, 4, 8), num_layers=2, width=32,
                          num_heads=4, spatial_window=(0, 0),
                          spatiotemporal_window=(0, 2, 2), num_classes=5)
  model = dn.Denoiser(cfg)
  rng = np.random.default_rng(0)
  b = 8
  batch = {
      'z': rng.normal(size=(b, *cfg.latent_shape)).astype(np.float32),
      't': rng.uniform(0, 1, b).astype(np.float32),
      'labels': (np.arange(b) % 6).astype(np.int32),  # 5 = the null class
      'self_cond': rng.normal(size=(b, *cfg.latent_shape)).astype(np.float32),
      'cond_mask': (rng.uniform(size=(b, 3)) < 0.5).astype(np.float32),
      'v': rng.normal(size=(b, *cfg.latent_shape)).astype(np.float32),
  }
  batch['cond_latent'] = batch['z'] * batch['cond_mask'][:, :, None, None,
                                                         None]

  def init(key):
    return model.init(key, jnp.asarray(batch['z']), jnp.asarray(batch['t']),
                      labels=jnp.asarray(batch['labels']))['params']

  def loss_and_grad(params, batch):
    def loss(p):
      v = model.apply({'params': p}, batch['z'], batch['t'],
                      labels=batch['labels'], self_cond=batch['self_cond'],
                      cond_latent=batch['cond_latent'],
                      cond_mask=batch['cond_mask'])
      return jnp.mean(jnp.square(v - batch['v'])), v
    (l, v), g = jax.value_and_grad(loss, has_aux=True)(params)
    return l, v, g
  return init, loss_and_grad, batch


def test_sharded_denoiser_step_equals_one_device():
  """One denoiser forward + gradient on a (data 2, fsdp 2, tensor 2) mesh
  with the default logical rules (params placed as `init_sharded` places
  them, activations constrained by the model) equals the one-device
  computation up to reduction order, with parameters and batch really
  split."""
  from walt import defaults
  from walt.parallel import sharding as sharding_lib
  rules = mesh_lib.rules_from_config(
      defaults.denoiser().logical_rules.to_dict())
  init, loss_and_grad, batch = _denoiser_setup()
  mesh = mesh_lib.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  # The parameter shardings `init_sharded` gives (from the model's logical
  # axes and the rules), holding random values for every parameter.
  abstract = jax.eval_shape(init, jax.random.key(0))
  shardings = sharding_lib.tree_shardings(abstract, mesh, rules)
  rng = np.random.default_rng(1)
  values = jax.tree.map(
      lambda x: (0.3 * rng.normal(size=x.shape)).astype(np.float32),
      sharding_lib.strip_boxes(abstract))
  # The reference: one device, no mesh, no rules.
  loss1, v1, grad1 = jax.device_get(jax.jit(loss_and_grad)(
      jax.device_put(values, jax.devices()[0]),
      jax.device_put(batch, jax.devices()[0])))
  params = jax.device_put(values, shardings)
  batch_sharding = mesh_lib.batch_sharding(mesh, rules)
  placed = jax.device_put(batch, batch_sharding)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    out = jax.jit(loss_and_grad)(params, placed)
  loss8, v8, grad8 = jax.device_get(out)
  # Not trivially replicated: most parameters split, over fsdp and tensor,
  # each device holding part of them; the batch split 4 ways.
  flat = {jax.tree_util.keystr(k): s for k, s in
          jax.tree_util.tree_leaves_with_path(shardings)}
  split = {k: s.spec for k, s in flat.items() if not s.is_fully_replicated}
  assert len(split) >= len(flat) // 2, split
  axes = {a for spec in split.values() for entry in spec if entry
          for a in ((entry,) if isinstance(entry, str) else entry)}
  assert axes == {'fsdp', 'tensor'}, axes
  for leaf in jax.tree.leaves(params):
    if not leaf.sharding.is_fully_replicated:
      assert leaf.addressable_shards[0].data.size < leaf.size
  assert placed['z'].addressable_shards[0].data.shape[0] == 2
  # A non-trivial computation: outputs of order 1, no zero gradient.
  assert np.abs(v1).max() > 0.1
  zero = [jax.tree_util.keystr(k) for k, g in
          jax.tree_util.tree_leaves_with_path(grad1) if not np.any(g)]
  assert not zero, zero
  # Equal up to float32 reduction order: 1e-5 of each array's scale.
  close = lambda a, b: np.testing.assert_allclose(
      a, b, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(b).max())))
  close(loss8, loss1)
  close(v8, v1)
  jax.tree.map(close, grad8, grad1)
