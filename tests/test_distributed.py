"""Multi-process start-up and the input pipeline across 2 real processes."""

import json
import os
import socket
import subprocess
import select
import signal
import sys
import time

import numpy as np
import pytest

from tests.conftest import TINY_DATASET
from walt.data import pipeline
from walt.parallel import distributed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_partial_flags_are_an_error_not_a_silent_single_process_run():
  with pytest.raises(ValueError, match='missing'):
    distributed.initialize(coordinator_address='localhost:1234')
  with pytest.raises(ValueError, match='outside'):
    distributed.initialize('localhost:1234', 2, 2)
  assert distributed.initialize(environ={}) is False


@pytest.mark.parametrize('environ,expected', [
    ({}, None),
    ({'TPU_WORKER_HOSTNAMES': 'a,b'}, 'tpu'),
    ({'TPU_WORKER_HOSTNAMES': 'a'}, None),
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '4'}, 'slurm'),
    ({'SLURM_JOB_ID': '7', 'SLURM_NTASKS': '1'}, None),
])
def test_cluster_detection(environ, expected):
  assert distributed.detect_cluster(environ) == expected


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def test_two_processes_build_one_global_batch_from_disjoint_slices(
    sprites_data_dir, tmp_path):
  port = _free_port()
  env = {**os.environ, 'PYTHONPATH': ROOT}
  env.pop('XLA_FLAGS', None)
  outs = [str(tmp_path / f'p{i}.json') for i in range(2)]
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'tests', 'multiprocess_worker.py'),
       str(i), '2', str(port), sprites_data_dir, outs[i]],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  for p in procs:
    log, _ = p.communicate(timeout=240)
    assert p.returncode == 0, log[-3000:]
  r0, r1 = (json.load(open(o)) for o in outs)
  assert r0['device_count'] == 8 and r0['local_device_count'] == 4
  assert r0['process_count'] == 2
  assert r0['batches'] == r1['batches']  # one global view on both processes

  # The global batch is process 0's host batch followed by process 1's, each
  # from its own slice of the records, equal to the single-process pipeline
  # told to play that process.
  spec = pipeline.DataSpec(name=TINY_DATASET, data_dir=sprites_data_dir,
                           frames=5, resolution=(32, 32), image_fraction=0.25)
  hosts = [pipeline.make_dataset(spec, global_batch_size=8, seed=5,
                                 process_index=i, process_count=2)
           for i in range(2)]
  for step, got in enumerate(r0['batches']):
    assert got['shape'] == [8, 5, 32, 32, 3]
    records = np.asarray(got['records'])
    assert np.all(records[:4] % 2 == 0) and np.all(records[4:] % 2 == 1)
    expected = [hosts[i][step] for i in range(2)]
    np.testing.assert_array_equal(
        records, np.concatenate([e['record'] for e in expected]))
    video_sum = sum(float(e['video'].sum(dtype=np.float64)) for e in expected)
    assert got['video_sum'] == pytest.approx(video_sum, rel=1e-5)
  assert r0['state'] == r1['state'] == {'next_index': 3}


def _wait_for_line(proc, expected: str, timeout: float) -> None:
  """Reads `proc`'s output until a line equal to `expected` (other log lines
  may come first); fails after `timeout` seconds instead of hanging."""
  deadline = time.time() + timeout
  seen = []
  while time.time() < deadline:
    ready, _, _ = select.select([proc.stdout], [], [], 1.0)
    if not ready:
      continue
    line = proc.stdout.readline()
    if not line:
      break
    if line.strip() == expected:
      return
    seen.append(line)
  raise AssertionError(f'no {expected!r} line: {"".join(seen)[-3000:]}')


@pytest.mark.parametrize('hung', [0, 1], ids=['coordinator', 'worker'])
def test_a_hung_process_stops_the_others_after_the_heartbeat_timeout(hung):
  """A peer frozen mid-collective (SIGSTOP: no exit, no closed sockets, so
  only missing heartbeats can tell) makes the other process exit with an
  error instead of waiting forever (JAX's default timeout is 100 s; the test
  sets 5 s and gives it 90)."""
  port, timeout = _free_port(), 5
  env = {**os.environ, 'PYTHONPATH': ROOT}
  env.pop('XLA_FLAGS', None)
  procs = [subprocess.Popen(
      [sys.executable, '-u', os.path.join(ROOT, 'tests',
                                          'heartbeat_worker.py'),
       str(i), str(port), str(timeout)],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    for p in procs:  # both connected and exchanging data
      _wait_for_line(p, 'up', 240)
    procs[hung].send_signal(signal.SIGSTOP)
    survivor = procs[1 - hung]
    log, _ = survivor.communicate(timeout=90)
  finally:
    for p in procs:
      p.kill()
      p.wait()
      p.stdout.close()
  assert survivor.returncode != 0, log[-3000:]
  assert 'heartbeat' in log.lower() or 'coordination' in log.lower(), (
      log[-3000:])
