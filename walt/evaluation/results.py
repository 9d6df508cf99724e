"""`WORKDIR/eval/<step>/results.json`: what every evaluation writes
(headline metrics at the top level, the protocol that produced them) and
reads back."""

from __future__ import annotations

from typing import Any

import jax

from walt import storage


def write_results(workdir: str, step: int, metrics: dict[str, float],
                  num_samples: int, protocol: dict[str, Any]) -> str:
  """`WORKDIR/eval/<step>/results.json` = {metrics, num_samples, protocol},
  with the headline metrics also at the top level."""
  path = storage.join(workdir, 'eval', str(step), 'results.json')
  record = {**metrics, 'metrics': metrics, 'num_samples': num_samples,
            'step': step, 'protocol': protocol}
  if jax.process_index() == 0:
    storage.write_json(path, record, default=str)
  return path


def read_results(workdir: str, step: int | None = None) -> dict:
  """The results of `step` (default: the latest evaluated step)."""
  eval_dir = storage.join(workdir, 'eval')
  if step is None:
    steps = [int(s) for s in storage.listdir(eval_dir) if s.isdigit()]
    if not steps:
      raise FileNotFoundError(f'no evaluation results under {eval_dir}')
    step = max(steps)
  return storage.read_json(storage.join(eval_dir, str(step), 'results.json'))
