r"""Entry point of every walt job.

    python -m walt.main --config=configs/<family>/<name>.py[:args] --workdir=DIR \
        [--config.<field>=value ...] \
        [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]

`config.job` names the program (see `walt/jobs.py`).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from walt import config_lib
from walt import jobs
from walt.parallel import distributed

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Config file, optionally with `:args`.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the job writes.')
_MODE = flags.DEFINE_string(
    'mode', 'train', 'What the job does: train (default), eval, or a '
    'job-specific mode (tokenizer: latent_stats).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  distributed.initialize_from_flags()
  config = _CONFIG.value
  job = jobs.load(config.job)
  mesh_shape = config_lib.validate(config, extra=getattr(job, 'VALIDATORS', ()))
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  logging.info('job %s, process %d/%d, %d devices, mesh %s, workdir %s',
               config.job, jax.process_index(), jax.process_count(),
               jax.device_count(), mesh_shape, workdir)
  if _MODE.value == 'train':
    job.run(config, workdir)
  else:
    job.run(config, workdir, mode=_MODE.value)


if __name__ == '__main__':
  app.run(main)
