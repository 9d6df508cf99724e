"""The device mesh and the logical-axis rules that map model axes onto it.

Models name array axes by meaning (`embed`, `mlp`, `heads`, `act_batch`, ...);
only the rules below (overridable from a config) say which mesh axes
(`data`, `fsdp`, `tensor`) shard them. The batch is split over `data` and
`fsdp`; parameters are split over `fsdp` (ZeRO-3 style) and `tensor`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
from jax.experimental import mesh_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec
import numpy as np

MESH_AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Logical axis name -> mesh axes. Activations are `act_*`, parameters are not.
DEFAULT_RULES: LogicalRules = (
    ('act_batch', BATCH_AXES),
    ('act_time', None),
    ('act_height', None),
    ('act_width', None),
    ('act_tokens', None),
    ('act_embed', None),
    ('act_mlp', 'tensor'),
    ('act_heads', 'tensor'),
    ('act_kv', None),
    ('act_channels', None),
    ('embed', 'fsdp'),
    ('mlp', 'tensor'),
    ('heads', 'tensor'),
    ('kv', None),
    ('conv_in', 'fsdp'),  # conv kernels: input channels like `embed`
    ('conv_out', 'tensor'),
    ('classes', None),
    ('norm', None),
    ('channels', None),
    ('layers', None),  # the stacked axis of scanned layers
)


def resolve_mesh_shape(sizes: Mapping[str, int], num_devices: int
                       ) -> tuple[int, ...]:
  """Axis sizes in `MESH_AXES` order; one axis may be -1 (= the rest).

  Raises:
    ValueError: unknown axes, several -1, or sizes that do not multiply to the
      number of devices.
  """
  unknown = set(sizes) - set(MESH_AXES)
  if unknown:
    raise ValueError(f'unknown mesh axes {sorted(unknown)}; use {MESH_AXES}')
  shape = [int(sizes.get(name, 1)) for name in MESH_AXES]
  if shape.count(-1) > 1:
    raise ValueError(f'at most one mesh axis may be -1, got {dict(sizes)}')
  if any(s == 0 or s < -1 for s in shape):
    raise ValueError(f'mesh axis sizes must be positive or -1: {dict(sizes)}')
  fixed = math.prod(s for s in shape if s != -1)
  if -1 in shape:
    if num_devices % fixed:
      raise ValueError(
          f'{num_devices} devices are not divisible by the fixed mesh axes '
          f'{dict(sizes)} (product {fixed})')
    shape[shape.index(-1)] = num_devices // fixed
  if math.prod(shape) != num_devices:
    raise ValueError(
        f'mesh {dict(zip(MESH_AXES, shape))} needs {math.prod(shape)} devices, '
        f'{num_devices} are available')
  return tuple(shape)


def parse_mesh(text: str) -> dict[str, int]:
  """A `--mesh` flag, 'data:2,fsdp:4,tensor:1' -> {'data': 2, ...}."""
  sizes = {}
  for part in filter(None, text.split(',')):
    name, _, value = part.partition(':')
    if name not in MESH_AXES or not value.lstrip('-').isdigit():
      raise ValueError(f'--mesh={text!r}: use data:D,fsdp:F,tensor:T')
    sizes[name] = int(value)
  return sizes


def create_mesh(sizes: Mapping[str, int],
                devices: Sequence[Any] | None = None) -> Mesh:
  """A mesh with axes `MESH_AXES` over `devices` (default: all devices).

  Devices are laid out by `mesh_utils.create_device_mesh`, which follows the
  physical interconnect on TPU and keeps each process's devices contiguous, so
  per-process data lands on local devices. Axis types are `Auto`: Linen code
  shards through logical constraints, not explicit sharding types.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = resolve_mesh_shape(sizes, len(devices))
  try:
    grid = mesh_utils.create_device_mesh(shape, devices)
  except (AssertionError, NotImplementedError, ValueError):
    # Topologies without a known physical layout (e.g. CPU, some GPU
    # clusters): process-major order keeps each host's devices together.
    grid = mesh_utils.create_device_mesh(
        shape, sorted(devices, key=lambda d: (d.process_index, d.id)),
        allow_split_physical_axes=True)
  return Mesh(grid, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def rules_from_config(overrides: Mapping[str, Any] | None = None
                      ) -> LogicalRules:
  """`DEFAULT_RULES` with per-name overrides (e.g. `{'embed': None}`)."""
  overrides = dict(overrides or {})
  rules = []
  for name, axes in DEFAULT_RULES:
    axes = overrides.pop(name, axes)
    rules.append((name, tuple(axes) if isinstance(axes, list) else axes))
  rules.extend((n, tuple(a) if isinstance(a, list) else a)
               for n, a in overrides.items())
  return tuple(rules)


def logical_sharding(mesh: Mesh, logical_axes: Sequence[str | None],
                     rules: LogicalRules = DEFAULT_RULES) -> NamedSharding:
  """The `NamedSharding` of an array whose axes have these logical names."""
  spec = nn.logical_to_mesh_axes(tuple(logical_axes), rules)
  return NamedSharding(mesh, spec)


def batch_sharding(mesh: Mesh, rules: LogicalRules = DEFAULT_RULES
                   ) -> NamedSharding:
  """Sharding of a host batch: leading axis over the batch axes, rest whole."""
  return logical_sharding(mesh, ('act_batch',), rules)


def batch_parallelism(mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> int:
  """How many ways the batch axis is split (the global batch must divide)."""
  spec = batch_sharding(mesh, rules).spec
  axes = spec[0] if spec else None
  if axes is None:
    return 1
  axes = (axes,) if isinstance(axes, str) else axes
  return math.prod(mesh.shape[a] for a in axes)


def padded_batch_size(n: int, mesh: Mesh,
                      rules: LogicalRules = DEFAULT_RULES) -> int:
  """`n` rounded up to a multiple of the batch parallelism."""
  parallel = batch_parallelism(mesh, rules)
  return -(-n // parallel) * parallel


def pad_batch(x, size: int):
  """Host array (or None) `[n, ...]` -> `[size, ...]`, repeating row 0 (so
  padding rows are valid inputs; callers drop them from the outputs)."""
  if x is None or len(x) >= size:
    return x
  x = np.asarray(x)
  return np.concatenate([x, np.repeat(x[:1], size - len(x), axis=0)])


def put_global(x, sharding: NamedSharding) -> jax.Array:
  """A global array placed like `sharding` from a host array that every
  process holds in full (same values on each; e.g. seeded noise). Each process
  transfers only its own devices' shards."""
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def fetch(x: jax.Array) -> np.ndarray:
  """The whole of a global array on every process (all-gathered across
  processes when it spans several)."""
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())
