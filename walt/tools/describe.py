r"""Describes the model of a config without allocating it.

    python -m walt.tools.describe --config=configs/tokenizer/ucf101.py [--json]

Prints parameter count, input and latent shapes and forward FLOPs per example,
all from `jax.eval_shape` / lowering (no weights are created).
"""

from __future__ import annotations

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from walt import jobs

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Config file.',
                                          lock_config=True)
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object.')
flags.mark_flags_as_required(['config'])


def describe(config) -> dict:
  module = jobs.load(config.job)
  if not hasattr(module, 'describe'):
    raise ValueError(f'job {config.job!r} has no model to describe')
  return module.describe(config)


def main(argv):
  del argv
  info = describe(_CONFIG.value)
  if _JSON.value:
    print(json.dumps(info))
  else:
    for k, v in info.items():
      print(f'{k:>20}: {f"{v:,}" if isinstance(v, int) else v}')


if __name__ == '__main__':
  app.run(main)
