"""`python -m walt.benchmark` end to end at `--tiny` sizes: the JSON-lines
contract of its output (one object per measurement on stdout and appended
to `--out`; `suite`, positive `seconds`, the suite's figures; ratios formed
from figures measured in the same run). Only the form is checked: tiny
timings mean nothing and tests never judge speed."""

import json
import os
import subprocess
import sys

from absl import app
import pytest

from walt.benchmark import __main__ as bench_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(*args, timeout=600):
  env = {**os.environ, 'PYTHONPATH': ROOT}
  r = subprocess.run([sys.executable, '-m', 'walt.benchmark', '--tiny',
                      '--repeats=1', *args], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=timeout)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


def _json_rows(stdout):
  return [json.loads(line) for line in stdout.splitlines()
          if line.startswith('{')]


def _positive(row, *keys):
  for key in keys:
    assert isinstance(row[key], (int, float)) and row[key] > 0, (key, row)


def test_matmul_peak_rows_and_table(tmp_path):
  out = tmp_path / 'bench.jsonl'
  out.write_text('{"earlier": "run"}\n')
  stdout = _bench('--suite=matmul_peak', f'--out={out}')
  rows = _json_rows(stdout)
  assert [(r['suite'], r['dtype']) for r in rows] == [
      ('matmul_peak', 'float32'), ('matmul_peak', 'bfloat16')]
  for r in rows:
    assert set(r) == {'suite', 'dtype', 'n', 'seconds', 'flops_per_sec',
                      'tiny'}
    assert r['n'] == 256 and r['tiny'] is True
    _positive(r, 'seconds', 'flops_per_sec')
    assert r['flops_per_sec'] == pytest.approx(2 * 256 ** 3 / r['seconds'])
  # --out appends the same lines after what the file held.
  lines = out.read_text().splitlines()
  assert lines[0] == '{"earlier": "run"}'
  assert [json.loads(line) for line in lines[1:]] == rows
  # Without --json: the table follows, one line per measurement.
  assert '\n2 measurements in ' in stdout
  assert 'suite=matmul_peak  dtype=float32  n=256' in stdout


def test_tiny_covers_only_the_suites_that_have_tiny_sizes():
  assert bench_main.selected('all', tiny=True) == ['matmul_peak', 'peer']
  assert bench_main.selected('peer', tiny=True) == ['peer']
  with pytest.raises(app.UsageError, match='sampler has no tiny size'):
    bench_main.selected('peer,sampler', tiny=True)


@pytest.mark.slow
def test_peer_rows_are_formed_from_this_runs_figures(tmp_path):
  rows = _json_rows(_bench('--suite=matmul_peak,peer', '--json'))
  peak = next(r['flops_per_sec'] for r in rows
              if r['suite'] == 'matmul_peak' and r['dtype'] == 'float32')
  peer = [r for r in rows if r['suite'] == 'peer']
  assert [(r['attention'], r['latent']) for r in peer] == [
      ('full', '1x16x16'), ('window', '5x16x16')]
  for r in peer:
    assert {'width': r['width'], 'depth': r['depth']} == {'width': 32,
                                                          'depth': 2}
    assert r['tokens'] == r['batch'] * int(r['latent'][0]) * 256
    _positive(r, 'seconds', 'dit_seconds', 'scanned_seconds', 'model_flops',
              'dit_model_flops')
    assert r['per_token_vs_dit'] == pytest.approx(r['seconds'] /
                                                  r['dit_seconds'])
    assert r['scanned_vs_dit'] == pytest.approx(r['scanned_seconds'] /
                                                r['dit_seconds'])
    # Utilisation against the matmul peak measured by this run.
    assert r['flops_utilization'] == pytest.approx(
        r['model_flops'] / r['seconds'] / peak)
    assert r['dit_flops_utilization'] == pytest.approx(
        r['dit_model_flops'] / r['dit_seconds'] / peak)
