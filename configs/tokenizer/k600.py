r"""The paper's Kinetics-600 video tokenizer: 17x128x128 -> 5x16x16x8.

    python -m walt.main --config=configs/tokenizer/k600.py --workdir=DIR
"""

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default', runlocal=False)
  c = defaults.tokenizer()
  c.data.name = 'kinetics600/17x128x128'
  c.data.build = False
  c.data.frames, c.data.resolution = 17, (128, 128)
  if arg.runlocal:
    c.batch_size, c.total_steps, c.log_every = 8, 10, 1
  c.lock()
  return c
