r"""Compiles a config's train step (and sampler) for a TPU slice, offline.

    pip install 'jax[tpu]'   # libtpu: the TPU compiler; no TPU is needed
    python -m walt.tools.aot --config=configs/walt/k600.py \
        --topology=v5p:4x4x4 [--mesh=data:8,fsdp:8,tensor:1] \
        [--batch_size=N] [--sampler] [--json]

JAX describes the slice's devices (`jax.experimental.topologies`), the job's
real step (`walt.train.loop.abstract_step`: the same jitted function, state
and batch shardings the trainer uses, with `ShapeDtypeStruct`s in place of
arrays; the tokenizer's perceptual network with zero weights of its real
shapes) is lowered and compiled by XLA's TPU compiler, and the report gives
per-device memory (arguments, outputs, temporaries, peak) against the chip's
HBM, the step's FLOPs and an estimated step time. The job stops with an
error (exit 1) when the step does not fit.

`estimated_step_seconds` is a lower bound: the larger of the step's FLOPs
per device at the chip's peak bf16 rate and XLA's own `optimal_seconds`
(reported as `xla_optimal_seconds`; XLA counts a scanned layer once, so
alone it underestimates). Well-sharded transformer steps reach 40-60% of
peak, i.e. about twice the bound.
FLOPs come from the step with its layers unrolled (XLA's cost analysis counts
a scanned layer once).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time

# Before JAX starts: compile for the TPU topology, run nothing on a chip.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# libtpu reads these at start-up; values for a machine that is not a TPU VM.
os.environ.setdefault('TPU_ACCELERATOR_TYPE', 'v5p-8')
os.environ.setdefault('TPU_WORKER_HOSTNAMES', 'localhost')
os.environ.setdefault('TPU_SKIP_MDS_QUERY', '1')
# Compiling opens no chip: several compiles may run at once (libtpu's lock
# file would refuse the second).
os.environ.setdefault('ALLOW_MULTIPLE_LIBTPU_LOAD', '1')

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from walt import config_lib  # noqa: E402
from walt import jobs  # noqa: E402
from walt.inference import generator as generator_lib  # noqa: E402
from walt.parallel import mesh as mesh_lib  # noqa: E402
from walt.train import loop  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The CLI's flags (defined when run as a program, so importing this
  module beside another tool defines no flag twice)."""
  config_flags.DEFINE_config_file('config', None, 'Config file.',
                                  lock_config=True)
  flags.DEFINE_string('topology', None, 'TPU slice, e.g. v5p:4x4x4, '
                      'v5e:4x4, v4:2x2x2, v6e:4x4.')
  flags.DEFINE_string('mesh', '', 'data:D,fsdp:F,tensor:T (one may be -1); '
                      'default: config.mesh.')
  flags.DEFINE_integer('batch_size', 0,
                       'Global batch; default: config.batch_size.')
  flags.DEFINE_bool('sampler', False, 'Also compile one sampling call of '
                    'the denoiser (config.eval sampler, steps and guidance) '
                    'at --sample_batch_size.')
  flags.DEFINE_integer('sample_batch_size', 0,
                       'Default: the train batch size.')
  flags.DEFINE_bool('json', False, 'Print one JSON object.')
  flags.mark_flags_as_required(['config', 'topology'])


@dataclasses.dataclass(frozen=True)
class Chip:
  """Public per-chip figures (Cloud TPU documentation)."""
  hbm_bytes: int
  bf16_flops: float  # peak per second


GIB = 1 << 30
# `device_kind` of the topology's devices -> the chip.
CHIPS = {
    'TPU v4': Chip(32 * GIB, 275e12),
    'TPU v5 lite': Chip(16 * GIB, 197e12),  # v5e
    'TPU v5': Chip(95 * GIB, 459e12),  # v5p
    'TPU v6 lite': Chip(32 * GIB, 918e12),  # v6e (Trillium)
}


def topology_devices(name: str):
  """(devices, chips) of a TPU slice named like 'v5p:4x4x4'."""
  from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
  try:
    topology = topologies.get_topology_desc(platform='tpu',
                                            topology_name=name)
  except Exception as e:  # pylint: disable=broad-except
    try:
      import libtpu  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      raise ValueError(f"--topology={name!r}: needs libtpu (pip install "
                       "'jax[tpu]'); no TPU is needed") from None
    raise ValueError(
        f'--topology={name!r}: {str(e).splitlines()[0]} (names look like '
        'v5p:4x4x4, v5e:4x4, v4:2x2x2, v6e:4x4)') from None
  chips = math.prod(int(n) for n in name.split(':')[-1].split('x'))
  return list(topology.devices), chips


def compile_report(compiled, lowered_for_flops, num_devices: int,
                   chip: Chip | None, device_share: float) -> dict:
  """Per-device memory and cost of a compiled step; `device_share` = the
  fraction of a chip one device is (cores vs chips)."""
  mem = compiled.memory_analysis()
  peak = (mem.argument_size_in_bytes + mem.output_size_in_bytes
          - mem.alias_size_in_bytes + mem.temp_size_in_bytes
          + mem.generated_code_size_in_bytes)
  out = {
      'per_device_argument_bytes': int(mem.argument_size_in_bytes),
      'per_device_output_bytes': int(mem.output_size_in_bytes),
      'per_device_alias_bytes': int(mem.alias_size_in_bytes),
      'per_device_temp_bytes': int(mem.temp_size_in_bytes),
      'per_device_peak_bytes': int(peak),
  }
  if chip is not None:
    out['hbm_bytes'] = int(chip.hbm_bytes * device_share)
    out['fits'] = peak <= out['hbm_bytes']
  if lowered_for_flops is None:
    return out
  cost = _cost(compiled)
  flops = float(_cost(lowered_for_flops).get('flops', 0.0))
  out['flops_per_step'] = flops
  out['flops_per_device'] = flops / num_devices
  # XLA's `optimal_seconds` counts a scanned layer (and any loop body) once:
  # it is only a floor. The compute floor at the chip's peak uses the
  # unrolled FLOPs; the estimate is the larger of the two.
  xla_seconds = float(cost.get('optimal_seconds', -1.0))
  if xla_seconds > 0:
    out['xla_optimal_seconds'] = xla_seconds
  if chip is not None:
    compute = out['flops_per_device'] / (chip.bf16_flops * device_share)
    out['estimated_step_seconds'] = max(compute, xla_seconds)
    out['estimate'] = ('lower bound: max(unrolled flops / peak bf16 flop/s, '
                       'XLA optimal_seconds) per device')
  elif xla_seconds > 0:
    out['estimated_step_seconds'] = xla_seconds
    out['estimate'] = 'XLA optimal_seconds'
  return out


def _cost(compiled_or_lowered) -> dict:
  cost = compiled_or_lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0] if cost else {}
  return dict(cost or {})


def _unrolled(config):
  """The config with its layer scan off (for FLOP counting)."""
  c = config.copy_and_resolve_references()
  if 'model' in c and 'scan' in c.model:
    with c.unlocked():
      c.model.scan = False
  return c


def build_task(config, mesh):
  module = jobs.load(config.job)
  if not hasattr(module, 'offline_task'):
    raise ValueError(f'job {config.job!r} has no train step to compile')
  return module.offline_task(config, mesh)


def compile_train_step(config, devices, batch_size: int | None = None):
  """(compiled step, the lowered step whose FLOPs count, mesh, task) for
  `devices` (abstract TPU devices, or real ones).

  Raises:
    DoesNotFit: XLA refused the step for lack of HBM.
  """
  sizes = config.mesh.to_dict()
  mesh = mesh_lib.create_mesh(sizes, devices)
  config_lib.validate(config, num_devices=len(devices), num_processes=1,
                      extra=getattr(jobs.load(config.job), 'VALIDATORS', ()))

  def lower(cfg, mesh):
    task = build_task(cfg, mesh)
    rng = jax.random.key(cfg.seed)  # on the host, not the abstract mesh
    with jax.set_mesh(mesh), nn.logical_axis_rules(task.rules):
      step, state, batch = loop.abstract_step(task, cfg, batch_size, rng)
      loop.check_param_sharding(cfg, state,
                                jax.tree.map(lambda a: a.sharding, state),
                                mesh)
      return step.lower(state, batch), task

  lowered, task = lower(config, mesh)
  compiled = _compile(lowered)
  # The global FLOPs do not depend on the backend, the mesh or microbatches:
  # count them on the host's CPU (lowered, not compiled) with the layers
  # unrolled and one batch (XLA counts a scan's body once), and XLA's
  # attention (a Pallas kernel neither lowers for CPUs nor shows its FLOPs).
  host = config.copy_and_resolve_references()
  with host.unlocked():
    host.mesh = {'data': 1}
    host.microbatches = 1
    if 'attention' in host.model:
      host.model.attention = 'xla'
  flops_lowered, _ = lower(_unrolled(host), mesh_lib.create_mesh(
      {'data': 1}, jax.devices('cpu')[:1]))
  return compiled, flops_lowered, mesh, task


class DoesNotFit(Exception):
  """XLA refused to compile: the step needs more HBM than a device has."""


def _compile(lowered):
  try:
    return lowered.compile()
  except jax.errors.JaxRuntimeError as e:
    if 'RESOURCE_EXHAUSTED' not in str(e):
      raise
    raise DoesNotFit(str(e).split('RESOURCE_EXHAUSTED:', 1)[-1].strip()
                     ) from None


def compile_sampler(task, config, batch_size: int):
  """One call of the job's own sampling function (`Generator.latent_sampler`:
  eval sampler, steps and guidance; conditional and unconditional passes as
  one forward) on abstract EMA params, compiled (its memory; no FLOP count:
  XLA counts the sampling loop's body once)."""
  e = config.eval
  generator = generator_lib.Generator(task.model, None, task.schedule, None,
                                      task.mesh, task.rules)
  run = generator.latent_sampler(e.sampler, e.steps, e.eta, e.guidance)
  rng = jax.random.key(config.seed)
  with jax.set_mesh(task.mesh), nn.logical_axis_rules(task.rules):
    _, state, _ = loop.abstract_step(task, config, batch_size, rng)
    params = state.ema_params if state.ema_params is not None else state.params
    batch_sharding = mesh_lib.batch_sharding(task.mesh, task.rules)
    noise = jax.ShapeDtypeStruct((batch_size, *task.model_config.latent_shape),
                                 jnp.float32, sharding=batch_sharding)
    labels = (jax.ShapeDtypeStruct((batch_size,), jnp.int32,
                                   sharding=batch_sharding)
              if task.model_config.num_classes else None)
    key = jax.ShapeDtypeStruct(rng.shape, rng.dtype)
    return _compile(run.lower(params, None, noise, key, labels, None, None))


def run(config, topology: str, mesh_text: str = '', batch_size: int = 0,
        sampler: bool = False, sample_batch_size: int = 0) -> dict:
  """The report (see the module doc) as a dict."""
  batch_size = batch_size or config.batch_size
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.batch_size = batch_size
    if mesh_text:
      config.mesh = mesh_lib.parse_mesh(mesh_text)
  devices, chips = topology_devices(topology)
  kind = devices[0].device_kind
  chip = CHIPS.get(kind)
  share = chips / len(devices)
  started = time.time()
  report = {'job': config.job, 'topology': topology, 'device_kind': kind,
            'devices': len(devices), 'chips': chips,
            'batch_size': batch_size,
            'microbatches': config.get('microbatches', 1),
            'dtype': str(config.model.get('dtype', 'float32'))}
  if chip is not None:
    report['hbm_bytes'] = int(chip.hbm_bytes * share)
  try:
    compiled, flops_lowered, mesh, task = compile_train_step(
        config, devices, batch_size)
  except DoesNotFit as e:
    # XLA stops before a memory analysis exists: its message has the sizes.
    report.update({'fits': False, 'error': str(e),
                   'compile_seconds': round(time.time() - started, 1)})
    return report
  report['mesh'] = dict(zip(mesh_lib.MESH_AXES, map(int, mesh.devices.shape)))
  report.update(compile_report(compiled, flops_lowered, len(devices), chip,
                               share))
  report['compile_seconds'] = round(time.time() - started, 1)
  if chip is None:
    report['note'] = f'unknown chip {kind!r}: no HBM or step-time estimate'
  if sampler:
    if config.job != 'walt':
      raise ValueError('--sampler: only the denoiser (job walt) samples')
    n = sample_batch_size or batch_size
    try:
      s_report = compile_report(compile_sampler(task, config, n), None,
                                len(devices), chip, share)
    except DoesNotFit as e:
      s_report = {'fits': False, 'error': str(e)}
    report['sampler'] = {'batch_size': n, 'sampler': config.eval.sampler,
                         'steps': config.eval.steps, **s_report}
  return report


def _gib(n) -> str:
  return f'{n / GIB:.2f} GiB'


def main(argv):
  del argv
  report = run(FLAGS.config, FLAGS.topology, FLAGS.mesh, FLAGS.batch_size,
               FLAGS.sampler, FLAGS.sample_batch_size)
  if FLAGS.json:
    print(json.dumps(report))
  else:
    for k, v in report.items():
      if k.endswith('_bytes'):
        v = _gib(v)
      print(f'{k:>28}: {v}')
  if report.get('fits') is False:
    if 'per_device_peak_bytes' in report:
      why = (f'{_gib(report["per_device_peak_bytes"])} per device > '
             f'{_gib(report["hbm_bytes"])} HBM')
    else:
      why = f'XLA: {report.get("error")}'
    remat = ('turn on model.remat' if report.get('job') == 'walt' else
             'a bigger slice (the tokenizer has no activation remat yet)')
    print(f'does not fit on {report["topology"]}: {why} (raise fsdp/tensor, '
          f'add --config.microbatches, use bf16, or {remat})',
          file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
