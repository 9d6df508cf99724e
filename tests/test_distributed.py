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


def test_two_processes_build_the_one_process_global_batches(
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

  # The global batches are those of the 1-process pipeline: process 0 read
  # the first half of each, process 1 the second.
  spec = pipeline.DataSpec(name=TINY_DATASET, data_dir=sprites_data_dir,
                           frames=5, resolution=(32, 32), image_fraction=0.25)
  one = pipeline.make_dataset(spec, global_batch_size=8, seed=5,
                              process_index=0, process_count=1)
  for step, got in enumerate(r0['batches']):
    assert got['shape'] == [8, 5, 32, 32, 3]
    expected = one[step]
    np.testing.assert_array_equal(got['records'], expected['record'])
    assert got['video_sum'] == pytest.approx(
        float(expected['video'].sum(dtype=np.float64)), rel=1e-5)
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


@pytest.mark.slow
def test_two_process_run_logs_the_losses_of_a_one_process_run(
    sprites_data_dir, tokenizer_dir, tmp_path):
  """`launch/local_multiprocess.sh 2` (4 fake devices each) trains a tiny
  denoiser with the losses of one process with 8 devices: the same global
  batches, the same per-example noise, the same mesh."""
  flags = [
      '--config=configs/walt/sprites.py:quick',
      f'--config.data.name={TINY_DATASET}',
      f'--config.data.data_dir={sprites_data_dir}', '--config.data.frames=5',
      f'--config.tokenizer.workdir={tokenizer_dir}',
      '--config.model.num_layers=2', '--config.model.width=32',
      '--config.model.num_heads=2', '--config.model.self_conditioning=True',
      '--config.diffusion.self_cond_prob=0.5',
      '--config.diffusion.frame_cond_prob=0.5',
      '--config.diffusion.frame_cond_frames=1',
      '--config.mesh.fsdp=2', '--config.batch_size=16',
      '--config.total_steps=4', '--config.log_every=1',
      '--config.checkpoint_every=4', '--config.eval_every=0']
  env = {**os.environ, 'PYTHONPATH': ROOT}
  env.pop('XLA_FLAGS', None)
  one = str(tmp_path / 'one')
  r = subprocess.run(
      [sys.executable, '-m', 'walt.main', *flags, f'--workdir={one}'],
      cwd=ROOT, capture_output=True, text=True, timeout=900,
      env={**env, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert r.returncode == 0, r.stderr[-3000:]
  two = str(tmp_path / 'two')
  r = subprocess.run(
      ['bash', 'launch/local_multiprocess.sh', '2', *flags,
       f'--workdir={two}'], cwd=ROOT, capture_output=True, text=True,
      timeout=900, env={**env, 'WALT_COORDINATOR_PORT': str(_free_port()),
                        'WALT_DEVICES_PER_PROCESS': '4'})
  assert r.returncode == 0, r.stderr[-3000:]

  def losses(workdir):
    with open(os.path.join(workdir, 'metrics.jsonl')) as f:
      rows = [json.loads(line) for line in f]
    return {r['step']: r['loss'] for r in rows if 'loss' in r}

  got, expected = losses(two), losses(one)
  assert sorted(expected) == [1, 2, 3, 4]
  assert sorted(got) == sorted(expected)
  np.testing.assert_allclose([got[s] for s in sorted(got)],
                             [expected[s] for s in sorted(expected)],
                             rtol=1e-5)
