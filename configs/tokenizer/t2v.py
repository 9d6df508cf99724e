r"""The text-to-video cascade's tokenizers, one per stage (each stage has its
own tokenizer at its resolution):

    --config=configs/tokenizer/t2v.py:stage=base   17x128x128 (then 128x224)
    --config=configs/tokenizer/t2v.py:stage=sr1    17x256x448 -> 5x32x56x8
    --config=configs/tokenizer/t2v.py:stage=sr2    17x512x896 -> 5x64x112x8
"""

from walt import config_lib
from walt import defaults

_RESOLUTION = {'base': (128, 128), 'sr1': (256, 448), 'sr2': (512, 896)}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, stage='base', runlocal=False)
  if arg.stage not in _RESOLUTION:
    raise ValueError(f'stage={arg.stage!r}: one of {sorted(_RESOLUTION)}')
  c = defaults.tokenizer()
  c.data.name = f'webvideo/{arg.stage}'
  c.data.build = False
  c.data.frames, c.data.resolution = 17, _RESOLUTION[arg.stage]
  if arg.runlocal:
    c.batch_size, c.total_steps, c.log_every = 8, 10, 1
  c.lock()
  return c
