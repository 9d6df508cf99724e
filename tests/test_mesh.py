"""Mesh construction and logical-axis rules on 1 and 8 fake CPU devices."""

import jax
from jax.sharding import PartitionSpec as P
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


def test_sharded_computation_equals_unsharded():
  import numpy as np
  mesh = mesh_lib.create_mesh({'data': 2, 'fsdp': 2, 'tensor': 2})
  x = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(16, 32)).astype(np.float32)
  xs = jax.device_put(x, mesh_lib.logical_sharding(mesh, ('act_batch', None)))
  ws = jax.device_put(w, mesh_lib.logical_sharding(mesh, ('embed', 'mlp')))
  np.testing.assert_allclose(np.asarray(jax.jit(jax.numpy.dot)(xs, ws)),
                             x @ w, rtol=1e-5, atol=1e-5)
