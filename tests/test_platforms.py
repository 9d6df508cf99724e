"""No TPU noise on machines without TPUs: with libtpu installed (the test
extra installs `jax[tpu]`), JAX on its own probes for a TPU and prints
libtpu errors before falling back to the CPU. Importing `walt` sets
JAX_PLATFORMS=cpu when it is unset and the machine has no TPU or GPU device
files, so every `python -m walt.<entry>` starts quietly; a machine with
accelerators, or an explicit JAX_PLATFORMS, is left to JAX."""

import os
import re
import subprocess
import sys

import walt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# libtpu's start-up complaints: "Failed to find host bounds for accelerator
# type: WARNING: could not determine TPU accelerator type ...", "Logging
# before InitGoogle()", "unexpected worker hostname ... TPU_WORKER_HOSTNAMES".
TPU_NOISE = re.compile(r'libtpu|TPU|InitGoogle|tpu_', re.IGNORECASE)


def _env_without_platforms():
  env = {**os.environ, 'PYTHONPATH': ROOT}
  env.pop('JAX_PLATFORMS', None)
  return env


def test_platform_choice(tmp_path):
  assert walt.default_platforms({}, ()) == 'cpu'
  # An explicit JAX_PLATFORMS wins, even empty (JAX then probes).
  assert walt.default_platforms({'JAX_PLATFORMS': ''}, ()) is None
  assert walt.default_platforms({'JAX_PLATFORMS': 'tpu'}, ()) is None
  # A TPU (or GPU) device file: JAX chooses, so TPUs are used.
  (tmp_path / 'accel0').touch()
  assert walt.default_platforms({}, (str(tmp_path / 'accel*'),)) is None
  assert walt.default_platforms({}, (str(tmp_path / 'vfio'),)) == 'cpu'
  assert '/dev/accel*' in walt._ACCELERATOR_FILES  # pylint: disable=protected-access
  assert '/dev/vfio' in walt._ACCELERATOR_FILES  # pylint: disable=protected-access


def test_an_entry_point_prints_no_tpu_errors(sprites_data_dir, tmp_path):
  """`python -m walt.main` (the data job: devices, a mesh, one batch)
  without JAX_PLATFORMS in its environment."""
  env = _env_without_platforms()
  accelerators = walt.default_platforms({}) is None
  r = subprocess.run(
      [sys.executable, '-m', 'walt.main',
       '--config=configs/data/sprites.py:quick', f'--workdir={tmp_path}',
       f'--config.data.data_dir={sprites_data_dir}',
       '--config.total_steps=1', '--config.batch_size=8',
       '--config.mesh.fsdp=2'],
      env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert (tmp_path / 'data_job.json').exists()
  if not accelerators:
    noise = [line for line in r.stderr.splitlines()
             if TPU_NOISE.search(line)]
    assert not noise, '\n'.join(noise[:10])
