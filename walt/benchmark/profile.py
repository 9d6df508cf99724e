r"""Where a train step's time goes: one traced step, time per model part.

    python -m walt.benchmark.profile --model=walt --attention=full [--top=30]

Traces one step of the `peer` suite's model (`walt` or `dit`) with
`jax.profiler` (a Perfetto trace, plain JSON), maps each XLA op it timed to
the `op_name` metadata of the compiled HLO (e.g. `attention/query_norm`)
and prints milliseconds per part, forward (F) and backward (B) apart.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib
import re
import tempfile

from absl import app
from absl import flags
import jax

from walt.benchmark import models
from walt.benchmark import suites

_SKIP = ('Thunk', '$', 'Slinky', 'Pjit', 'end', 'Common', 'Parse', 'Handle',
         'Allocate', 'Wait', 'Python')


def op_names(hlo_text: str) -> dict[str, str]:
  """HLO instruction name -> its `op_name` metadata."""
  names = {}
  for line in hlo_text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%(\S+) = .*?op_name="([^"]+)"', line)
    if m:
      names.setdefault(m.group(1), m.group(2))
  return names


def part(op_name: str) -> str:
  """`jit(step)/transpose(jvp(Denoiser))/closed_call/layers/spatial/
  attention/query/dot_general` -> `B attention/query`."""
  direction = 'B' if 'transpose(' in op_name else 'F'
  path = [p for p in op_name.split('/')[1:]
          if not re.match(r'(transpose\(|jvp\(|closed_call|layers$|spatial'
                          r'$|spatiotemporal$|block_\d+$)', p)]
  if not path:
    return f'{direction} {op_name.rsplit("/", 1)[-1]}'
  return f'{direction} {"/".join(path[:-1]) or path[-1]}'


def profile(runner, steps: int = 2) -> collections.Counter:
  """Milliseconds per model part, averaged over `steps` traced steps."""
  names = op_names(runner.compiled.as_text())
  jax.block_until_ready(runner())
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(steps):
        jax.block_until_ready(runner())
    # A local temporary directory (the profiler writes nested run dirs).
    trace = next(pathlib.Path(tmp).rglob('*perfetto_trace.json.gz'))
    events = json.loads(gzip.decompress(trace.read_bytes()))
  events = events['traceEvents'] if isinstance(events, dict) else events
  ms = collections.Counter()
  for e in events:
    if e.get('ph') != 'X' or 'dur' not in e or e['name'].startswith(_SKIP):
      continue
    name = names.get(e['name'])
    ms[part(name) if name else 'unmapped'] += e['dur'] / 1e3 / steps
  return ms


def main(argv):
  del argv
  f = flags.FLAGS
  t = 1 if f.attention == 'full' else 5
  latent = (t, 16, 16, suites.LATENT_CHANNELS)
  batch = suites.BATCH if t == 1 else suites.BATCH // 2
  if f.model == 'walt':
    runner = models.denoiser_runner(models.denoiser_config(
        latent, suites.WIDTH, suites.DEPTH, suites.HEADS,
        scan_unroll=f.scan_unroll), batch)
  else:
    runner = models.dit_runner(latent, suites.WIDTH, suites.DEPTH,
                               suites.HEADS, batch)
  ms = profile(runner)
  total = sum(ms.values())
  print(f'{f.model} {f.attention} attention, latent {latent}, batch {batch}: '
        f'{total:.0f} ms of ops per step')
  for name, value in ms.most_common(f.top):
    print(f'{value:9.1f} ms {100 * value / total:5.1f}%  {name}')


if __name__ == '__main__':
  flags.DEFINE_enum('model', 'walt', ['walt', 'dit'], 'which network')
  flags.DEFINE_enum('attention', 'full', ['full', 'window'],
                    'full: 1x16x16 latent; window: 5x16x16 (peer suite)')
  flags.DEFINE_integer('scan_unroll', 0, 'walt: layer pairs per scan step')
  flags.DEFINE_integer('top', 30, 'parts to print')
  app.run(main)
