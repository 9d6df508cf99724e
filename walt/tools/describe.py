r"""Describes the model of a config without allocating it.

    python -m walt.tools.describe --config=configs/tokenizer/ucf101.py [--json]
        [--mesh=data:D,fsdp:F,tensor:T]

Prints parameter count, input and latent shapes and forward FLOPs per example,
all from `jax.eval_shape` / lowering (no weights are created). With `--mesh`
(any size: no devices are needed) it adds what one device holds of the train
state under the config's logical rules: `per_device_param_bytes` (params
and EMA) and `per_device_optimizer_bytes` (optimizer state, and a
discriminator with its optimizer).
"""

from __future__ import annotations

import json

from absl import app
from absl import flags
from ml_collections import config_flags

import jax

from walt import jobs
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags (defined when run as a program, so importing this
  module beside another tool defines no flag twice)."""
  config_flags.DEFINE_config_file('config', None, 'Config file.',
                                  lock_config=True)
  flags.DEFINE_bool('json', False, 'Print one JSON object.')
  flags.DEFINE_string('mesh', '', 'data:D,fsdp:F,tensor:T: add the '
                      'per-device bytes of the train state.')
  flags.mark_flags_as_required(['config'])


def describe(config, mesh: str = '') -> dict:
  module = jobs.load(config.job)
  if not hasattr(module, 'describe'):
    raise ValueError(f'job {config.job!r} has no model to describe')
  info = module.describe(config)
  if mesh:
    info.update(state_bytes(config, mesh_lib.parse_mesh(mesh)))
  return info


def state_bytes(config, sizes: dict[str, int]) -> dict:
  """Per-device bytes of the train state on a mesh of these axis sizes
  (no -1: there are no devices to count), from shapes and the config's
  logical rules only."""
  if any(v < 1 for v in sizes.values()):
    raise ValueError(f'--mesh {sizes}: give every axis a size (no -1)')
  shape = tuple(sizes.get(a, 1) for a in mesh_lib.MESH_AXES)
  mesh = jax.sharding.AbstractMesh(shape, mesh_lib.MESH_AXES)
  task = jobs.load(config.job).offline_task(config, mesh)
  abstract = jax.eval_shape(task.init_state, jax.random.key(0))
  shardings = sharding_lib.tree_shardings(abstract, mesh, task.rules)
  state = sharding_lib.strip_boxes(abstract)
  nbytes = sharding_lib.shard_bytes  # (tree, shardings or None = whole)
  params = lambda t: (t.params, t.ema_params)
  optimizer = lambda t: (t.opt_state, t.extra)
  return {'mesh': dict(zip(mesh_lib.MESH_AXES, shape)),
          'per_device_param_bytes': nbytes(params(state), params(shardings)),
          'per_device_optimizer_bytes': nbytes(optimizer(state),
                                               optimizer(shardings)),
          'total_param_bytes': nbytes(params(state)),
          'total_optimizer_bytes': nbytes(optimizer(state))}


def main(argv):
  del argv
  info = describe(FLAGS.config, FLAGS.mesh)
  if FLAGS.json:
    print(json.dumps(info))
  else:
    for k, v in info.items():
      print(f'{k:>20}: {f"{v:,}" if isinstance(v, int) else v}')


if __name__ == '__main__':
  define_flags()
  app.run(main)
