r"""Tokenizer on moving_sprites, sized for CPUs (8x spatial / 4x temporal
compression, 8 latent channels, like the paper's).

    python -m walt.main --config=configs/tokenizer/sprites.py --workdir=/tmp/tok
    python -m walt.main --config=configs/tokenizer/sprites.py:quick --workdir=...

Default: the quality config (17x64x64 clips; trains on random 9-frame 32x32
crops, evaluated on whole 17x64x64 held-out clips; 54 min of training + ~7 min
of evaluation on 2 CPU cores; measured held-out PSNR 19.2 dB / SSIM 0.55 --
compute-bound, far from converged). `quick`: the quickstart size (17x32x32,
training done in ~3-4 min on 2 CPU cores; held-out PSNR 18.4 dB without
normalisation layers, 16.7 dB with them; its reconstructions are still
blobs: the sprite oracle recognises ~5% of them).
"""

import os

from walt import config_lib
from walt.train import tokenizer_trainer


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default')
  c = tokenizer_trainer.default_config(arg.variant)
  c.data.data_dir = os.path.expanduser('~/walt_data')
  c.model.update({'channel_multipliers': (1, 2, 4, 4), 'num_res_blocks': 1,
                  'num_mid_blocks': 1, 'num_groups': 8})
  # PSNR is the target on CPU: the GAN comes in for the last part only, and
  # Adam gets momentum (b1=0.9) to converge in the short budget.
  c.discriminator.update({'base_channels': 8})
  c.loss.gan_weight = 0.1
  c.optimizer.update({'lr': 2e-3, 'b1': 0.9, 'warmup_steps': 100,
                      'min_lr_ratio': 0.02})
  c.disc_optimizer.update({'lr': 2e-4, 'warmup_steps': 100})
  c.eval.update({'batch_size': 8, 'num_examples': 256})
  c.latent_stats.update({'num_examples': 512, 'batch_size': 8})
  if arg.variant == 'default':
    c.data.name = 'moving_sprites/17x64x64'
    c.data.resolution, c.data.frames, c.data.crop = (64, 64), 9, (32, 32)
    c.model.base_channels = 32
    c.batch_size = 4
    c.total_steps = 1_400  # ~2.35 s/step on 2 cores: < 60 min with eval
    c.loss.gan_start = 10_000_000  # set lower to add the GAN phase
    c.log_every, c.checkpoint_every = 50, 350
    c.eval_every = c.summary_every = 1_400
  elif arg.variant == 'quick':
    c.data.name = 'moving_sprites/17x32x32'
    c.data.resolution, c.data.frames = (32, 32), 9
    c.model.base_channels = 8
    # With 8-channel levels, per-frame GroupNorm (8 groups = 1 channel per
    # group) keeps the output near the data-set mean for all 120 steps.
    c.model.normalize = False
    c.batch_size = 8
    c.total_steps = 120
    c.loss.gan_start = 10_000_000
    c.log_every, c.checkpoint_every = 20, 120
    c.eval_every = c.summary_every = 120
    c.eval.num_examples = 64
    c.latent_stats.num_examples = 128
  else:
    raise ValueError(f'unknown variant {arg.variant!r}: default, quick')
  c.lock()
  return c
