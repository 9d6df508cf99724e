"""`WORKDIR/eval/<step>/results.json`: what every evaluation writes
(headline metrics at the top level, the protocol that produced them) and
reads back."""

from __future__ import annotations

import json
import os
from typing import Any

import jax


def write_results(workdir: str, step: int, metrics: dict[str, float],
                  num_samples: int, protocol: dict[str, Any]) -> str:
  """`WORKDIR/eval/<step>/results.json` = {metrics, num_samples, protocol},
  with the headline metrics also at the top level."""
  directory = os.path.join(workdir, 'eval', str(step))
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, 'results.json')
  record = {**metrics, 'metrics': metrics, 'num_samples': num_samples,
            'step': step, 'protocol': protocol}
  if jax.process_index() == 0:
    with open(path, 'w') as f:
      json.dump(record, f, indent=2, default=str)
  return path


def read_results(workdir: str, step: int | None = None) -> dict:
  """The results of `step` (default: the latest evaluated step)."""
  eval_dir = os.path.join(workdir, 'eval')
  if step is None:
    steps = [int(s) for s in os.listdir(eval_dir) if s.isdigit()] \
        if os.path.isdir(eval_dir) else []
    if not steps:
      raise FileNotFoundError(f'no evaluation results under {eval_dir}')
    step = max(steps)
  with open(os.path.join(eval_dir, str(step), 'results.json')) as f:
    return json.load(f)
