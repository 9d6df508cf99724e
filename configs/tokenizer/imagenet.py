r"""The paper's ImageNet image tokenizer: 1x256x256 -> 1x32x32x8, channel
multipliers (1, 1, 2, 4), 2D kernels (an image is a 1-frame video). Its
weights can initialise a video tokenizer by inflation
(`walt.models.tokenizer.inflate_image_params`).

    python -m walt.main --config=configs/tokenizer/imagenet.py --workdir=DIR
"""

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default', runlocal=False)
  c = defaults.tokenizer()
  c.data.name = 'imagenet_folder/1x256x256'
  c.data.build = False
  c.data.frames, c.data.resolution = 1, (256, 256)
  c.eval.frames = 1
  c.model.channel_multipliers = (1, 1, 2, 4)
  c.model.temporal_kernel = 1
  if arg.runlocal:
    c.batch_size, c.total_steps, c.log_every = 8, 10, 1
  c.lock()
  return c
