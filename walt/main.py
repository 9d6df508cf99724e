r"""Entry point of every walt job.

    python -m walt.main --config=configs/<family>/<name>.py[:args] --workdir=DIR \
        [--config.<field>=value ...] \
        [--coordinator_address=HOST:PORT --num_processes=N --process_id=I]

`config.job` names the program (see `walt/jobs.py`). Before anything is
built, compiled or waited for, the config is validated (`config_lib.validate`
and the job's `VALIDATORS`) and every input the job reads is checked
(`walt.preflight`): a bad field or a missing file stops the job at once,
named, with the fix.
"""

from __future__ import annotations

import re
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from walt import config_lib
from walt import jobs
from walt import preflight
from walt import storage
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
  try:
    workdir = storage.resolve(_WORKDIR.value)
    job = jobs.load(config.job)
    mesh_shape = config_lib.validate(config,
                                     extra=getattr(job, 'VALIDATORS', ()))
    preflight.check(config, workdir, _MODE.value)
  except (ValueError, preflight.MissingInputs) as e:
    # A bad field or a missing input: the message is the whole story.
    sys.exit(f'walt.main: {e}')
  logging.info('job %s, process %d/%d, %d devices, mesh %s, workdir %s',
               config.job, jax.process_index(), jax.process_count(),
               jax.device_count(), mesh_shape, workdir)
  if _MODE.value == 'train':
    job.run(config, workdir)
  else:
    job.run(config, workdir, mode=_MODE.value)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; an override of a field the (locked) config lacks
  fails naming the whole `--config.<path>` instead of a traceback that
  names only its last part."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError) as e:
    # ml_collections: "'<missing key>'" [+ "Did you mean "<field>" ..."].
    text = str(e).replace('\\n', '\n').replace("\\'", "'")
    key = re.search(r'[\w-]+', text)
    overrides = [a.split('=', 1)[0].lstrip('-') for a in argv[1:]
                 if re.match(r'--?config\.', a)]
    bad = [o for o in overrides if key and key.group(0) in o.split('.')[1:]]
    if not bad:
      raise
    hint = re.search(r'Did you mean (.*?)\?', text)
    sys.stderr.write(
        f'FATAL Flags parsing error: --{bad[0]}: the config has no field '
        f'{bad[0].split(".", 1)[1]!r}'
        + (f'; did you mean {hint.group(1)}?' if hint else '') + '\n')
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
