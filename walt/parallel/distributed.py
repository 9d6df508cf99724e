"""Multi-process start-up: `jax.distributed.initialize` from flags or cluster.

Call `initialize` first thing in a program, before any JAX computation. It
connects the processes when the flags say so (any launcher) or when the job
runs on a multi-host Cloud TPU slice or a multi-task SLURM allocation (JAX reads
the cluster's own environment there). Failures propagate: a job that should be
distributed never silently runs as N independent single-process jobs.
"""

from __future__ import annotations

import os
from typing import Mapping

from absl import flags
from absl import logging
import jax

COORDINATOR_ADDRESS = flags.DEFINE_string(
    'coordinator_address', None,
    'host:port of process 0 for multi-process runs (with --num_processes and '
    '--process_id). Omit on Cloud TPU and SLURM: they are detected.')
NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Total number of processes of a multi-process run.')
PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'Index of this process in [0, num_processes).')
HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    'heartbeat_timeout_seconds', 100,
    'Multi-process runs: when a process has not been heard from for this '
    'long (it died or hangs), every other process exits with an error '
    'instead of waiting forever in a collective.')


def detect_cluster(environ: Mapping[str, str] | None = None) -> str | None:
  """'tpu' or 'slurm' when the environment is a multi-process job, else None."""
  env = os.environ if environ is None else environ
  hosts = env.get('TPU_WORKER_HOSTNAMES', '')
  if len([h for h in hosts.split(',') if h]) > 1 or (
      'MEGASCALE_COORDINATOR_ADDRESS' in env):
    return 'tpu'
  tasks = env.get('SLURM_NTASKS') or env.get('SLURM_NPROCS') or '1'
  if 'SLURM_JOB_ID' in env and int(tasks) > 1:
    return 'slurm'
  return None


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               environ: Mapping[str, str] | None = None,
               heartbeat_timeout_seconds: int = 100) -> bool:
  """Starts `jax.distributed` if this is a multi-process run.

  If one process dies, JAX's coordination service notices its missing
  heartbeats after `heartbeat_timeout_seconds` and terminates the others
  (with an error naming the task), so a job never hangs on a dead peer.

  Returns:
    True if `jax.distributed` was initialised.

  Raises:
    ValueError: only some of the three explicit settings are given.
  """
  given = {'coordinator_address': coordinator_address,
           'num_processes': num_processes, 'process_id': process_id}
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise ValueError(
          f'multi-process runs need all of --coordinator_address, '
          f'--num_processes and --process_id; missing {missing}')
    if not 0 <= process_id < num_processes:
      raise ValueError(f'--process_id={process_id} is outside '
                       f'[0, {num_processes})')
    if num_processes == 1:
      return False
    logging.info('jax.distributed: process %d of %d, coordinator %s',
                 process_id, num_processes, coordinator_address)
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes,
        process_id=process_id,
        heartbeat_timeout_seconds=heartbeat_timeout_seconds)
    return True
  cluster = detect_cluster(environ)
  if cluster is None:
    return False
  logging.info('jax.distributed: auto-detected %s cluster', cluster)
  jax.distributed.initialize(
      heartbeat_timeout_seconds=heartbeat_timeout_seconds)
  return True


def initialize_from_flags() -> bool:
  return initialize(COORDINATOR_ADDRESS.value, NUM_PROCESSES.value,
                    PROCESS_ID.value,
                    heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT.value)


def is_main_process() -> bool:
  return jax.process_index() == 0
