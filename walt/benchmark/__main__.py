r"""Runs benchmark suites and prints one JSON object per measurement.

    python -m walt.benchmark --suite=all [--json] [--repeats=5] \
        [--out=bench.jsonl]
    # the suites' rows in seconds at test sizes (figures meaningless):
    python -m walt.benchmark --suite=matmul_peak,peer --tiny --repeats=1

Suites: matmul_peak, train_step, peer, window_scaling, sampler, remat,
tokenizer (comma-separated, or `all`). Without --json a table is printed as
well. Timings are medians after a warm-up; ratios come from figures
measured in this process (see walt/benchmark/suites.py).
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags
from etils import epath

from walt.benchmark import job_suites
from walt.benchmark import suites

ALL = {**suites.SUITES, 'train_step': job_suites.train_step,
       'sampler': job_suites.sampler, 'tokenizer': job_suites.tokenizer}
ORDER = ('matmul_peak', 'train_step', 'peer', 'window_scaling', 'sampler',
         'remat', 'tokenizer')


def define_flags():
  flags.DEFINE_string('suite', 'all', f'comma-separated: {", ".join(ORDER)} '
                      'or all')
  flags.DEFINE_bool('json', False, 'JSON lines only (no table)')
  flags.DEFINE_integer('repeats', 5, 'timed repeats per measurement')
  flags.DEFINE_string('out', '', 'also append the JSON lines to this file')
  flags.DEFINE_bool('tiny', False, f'{", ".join(suites.TINY_SUITES)} at '
                    'test sizes (rows marked "tiny": true): checks that the '
                    'suites run, measures nothing')


def selected(spec: str, tiny: bool = False) -> list[str]:
  names = list(ORDER) if spec == 'all' else [s.strip() for s in
                                              spec.split(',') if s.strip()]
  unknown = [n for n in names if n not in ALL]
  if unknown or not names:
    raise app.UsageError(f'--suite={spec!r}: unknown {unknown}; one of '
                         f'{", ".join(ORDER)} or all')
  if tiny and spec == 'all':
    return list(suites.TINY_SUITES)
  if tiny:
    full = [n for n in names if n not in suites.TINY_SUITES]
    if full:
      raise app.UsageError(f'--tiny: {", ".join(full)} has no tiny size; '
                           f'--tiny runs {", ".join(suites.TINY_SUITES)}')
  return names


def _short(value):
  if isinstance(value, float):
    return f'{value:.4g}'
  return str(value)


def main(argv):
  del argv
  f = flags.FLAGS
  names = selected(f.suite, f.tiny)
  cache: dict = {'sizes': suites.TINY} if f.tiny else {}
  rows = []
  started = time.perf_counter()
  for name in names:
    for row in ALL[name](f.repeats, cache):
      if f.tiny:
        row['tiny'] = True  # never to be read as a measurement
      rows.append(row)
      line = json.dumps(row)
      print(line, flush=True)
      if f.out:
        path = epath.Path(f.out)
        previous = path.read_text() if path.exists() else ''
        path.write_text(previous + line + '\n')
  if not f.json:
    print(f'\n{len(rows)} measurements in '
          f'{time.perf_counter() - started:.0f} s')
    for row in rows:
      print('  '.join(f'{k}={_short(v)}' for k, v in row.items()))


if __name__ == '__main__':
  define_flags()
  app.run(main)
