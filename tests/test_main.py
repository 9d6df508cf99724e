"""`python -m walt.main` end to end with the input-pipeline job."""

import json
import os
import subprocess
import sys

import mediapy
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, **kw):
  env = {**os.environ, 'PYTHONPATH': ROOT}
  return subprocess.run([sys.executable, '-m', 'walt.main', *args], env=env,
                        cwd=ROOT, capture_output=True, text=True, timeout=300,
                        **kw)


def test_data_job_streams_batches_and_writes_preview(sprites_data_dir,
                                                     tmp_path):
  workdir = tmp_path / 'work'
  r = _run(['--config=configs/data/sprites.py:quick', f'--workdir={workdir}',
            f'--config.data.data_dir={sprites_data_dir}',
            '--config.total_steps=5', '--config.batch_size=8',
            '--config.mesh.fsdp=2'])
  assert r.returncode == 0, r.stderr[-3000:]
  summary = json.loads((workdir / 'data_job.json').read_text())
  assert summary['batches'] == 5 and summary['examples_per_sec'] > 0
  assert summary['mesh'] == {'data': 4, 'fsdp': 2, 'tensor': 1}
  assert summary['iterator_state'] == {'next_index': 5}
  preview = mediapy.read_image(str(workdir / 'data_preview.png'))
  assert preview.shape == (8 * 32, 5 * 32, 3)  # a row of 5 frames per sample


@pytest.mark.parametrize('override,message', [
    ('--config.data.frames=4', '1\\+4k'),
    ('--config.batch_size=7', 'not divisible'),
    ('--config.no_such_field=1', 'no_such_field'),
])
def test_bad_configs_fail_before_anything_runs(tmp_path, override, message):
  r = _run(['--config=configs/data/sprites.py:quick',
            f'--workdir={tmp_path}', override])
  assert r.returncode != 0
  assert __import__('re').search(message, r.stderr), r.stderr[-2000:]
  assert not (tmp_path / 'data_job.json').exists()
