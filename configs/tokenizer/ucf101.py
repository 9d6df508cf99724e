r"""The paper's UCF-101 video tokenizer (MAGVIT-v2 architecture): 17x128x128
-> 5x16x16x8.

    python -m walt.main --config=configs/tokenizer/ucf101.py --workdir=DIR

Needs a UCF-101 tfds build (`data.name`); batch 256, Adam(0, 0.99) at 1e-4.
"""

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default', runlocal=False)
  c = defaults.tokenizer()
  c.data.name = 'ucf101/17x128x128'
  c.data.build = False
  c.data.frames, c.data.resolution = 17, (128, 128)
  c.mesh.update({'data': -1, 'fsdp': 1, 'tensor': 1})
  if arg.runlocal:  # a smoke test of the full architecture on one host
    c.batch_size, c.total_steps, c.log_every = 8, 10, 1
  c.lock()
  return c
