r"""Tokenizer on moving_sprites, sized for CPUs: a patchify stem and every
convolution at the latent grid.

    python -m walt.main --config=configs/tokenizer/sprites.py --workdir=/tmp/tok
    python -m walt.main --config=configs/tokenizer/sprites.py:quick --workdir=...

CPU layout (not the paper's): the stem folds 4 frames (the first alone) and
4x4 pixel tiles onto channels (`patch_size=(4, 4, 4)`), so the encoder and
decoder run entirely at 1/4 of the resolution and frame rate, and the
decoder's last conv predicts the 4x4x4 pixel block of each latent position.
Compression: **4x spatial** (not the paper's 8x) and 4x temporal, **16
latent channels** (not 8): 17x64x64 -> 5x16x16x16. The paper configs
(ucf101, k600, imagenet, t2v) keep the MAGVIT-v2 layout. `python -m walt.tools.tokenizer_study`
compares the layouts; WORKSPACE.md has its table.

Default: per-position RMSNorm (`model.norm='rms'`: no statistic depends
on the frame size) trained on 17x32x32 random crops of 4 clips per step
(64 wide, 7k steps), evaluated on whole 17x64x64 held-out clips (256):
**30.8 dB PSNR, SSIM 0.940** (EMA). Whole job: 55 min 53 s on 2 idle
cores (7k steps at 1.8-2.4 steps/s + 52 s of evaluation). The
same network on one clip's whole 64x64 frames per step with per-frame
GroupNorm (`whole`, the default before): 28.4 dB, SSIM 0.911; with
GroupNorm, crops do not transfer (28.7 dB on crops, 20.7 dB on whole
frames). Being size-independent, the default serves any frame size (the
sprites cascade uses it at 32, 64 and 128 pixels). `quick`: the quickstart
size (17x32x32, 32 wide, batch 2, 4k steps, ~6 min: 26.4 dB).
"""

import os

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default')
  c = defaults.tokenizer()
  c.data.data_dir = os.path.expanduser('~/walt_data')
  c.model.update({'patch_size': (4, 4, 4), 'channel_multipliers': (1,),
                  'temporal_downsample': (), 'num_res_blocks': 2,
                  'num_mid_blocks': 2, 'num_groups': 32,
                  'latent_channels': 8,
                  # float32: bfloat16 matmuls are slower on CPUs.
                  'dtype': 'float32'})
  # PSNR is the target on CPU: no GAN unless asked for (set gan_start), and
  # Adam gets momentum (b1=0.9) to converge in the short budget.
  c.discriminator.update({'base_channels': 8})
  c.loss.gan_weight = 0.1
  c.loss.gan_start = 10_000_000
  # L1 beside the L2 term: same PSNR in the study, sharper edges (SSIM).
  c.loss.l1_weight = 1.0
  c.optimizer.update({'lr': 1e-3, 'b1': 0.9, 'warmup_steps': 100,
                      'min_lr_ratio': 0.02})
  c.disc_optimizer.update({'lr': 2e-4, 'warmup_steps': 100})
  c.eval.update({'batch_size': 8, 'num_examples': 256})
  c.latent_stats.update({'num_examples': 512, 'batch_size': 8})
  if arg.variant in ('default', 'whole'):
    c.data.name = 'moving_sprites/17x64x64'
    # `whole`: one clip's whole frames per step, per-frame GroupNorm (whose
    # statistics depend on the frame size, so with it a tokenizer trained on
    # 32x32 crops does not transfer to 64x64 frames: 20.7 dB vs 28.7 dB).
    c.data.resolution, c.data.frames = (64, 64), 17
    # 16 latent channels (the paper's tokenizers have 8): 12x compression.
    c.model.update({'base_channels': 64, 'latent_channels': 16})
    c.batch_size = 1
    c.optimizer.lr = 2e-3
    c.total_steps = 7_000
    c.log_every, c.checkpoint_every = 250, 2_000
    c.eval_every = c.summary_every = 7_000
    if arg.variant == 'default':
      # Per-position RMSNorm: no statistic depends on the frame size, so
      # 32x32 crops of 4 clips per step train a tokenizer for whole frames
      # (30.8 dB on whole frames vs 28.4 dB for `whole`).
      c.model.norm = 'rms'
      c.data.crop = (32, 32)
      c.batch_size = 4
  elif arg.variant == 'quick':
    c.data.name = 'moving_sprites/17x32x32'
    c.data.resolution, c.data.frames = (32, 32), 17
    # Narrow and small batches: at a fixed CPU budget the number of steps
    # decides (study: 32 wide 24.3 dB, 64 wide 22.0, 128 wide 17.7 in 3 min;
    # batch 2 > 4 > 8).
    c.model.update({'base_channels': 32, 'latent_channels': 16})
    c.batch_size = 2
    c.optimizer.lr = 2e-3
    c.ema_decay = 0.99
    # 4000 steps: 26.4 dB (3400 steps: 25.8 dB).
    c.total_steps = 4_000
    c.log_every, c.checkpoint_every = 250, 4_000
    c.eval_every = c.summary_every = 4_000
    c.eval.num_examples = 64
    c.latent_stats.num_examples = 128
  else:
    raise ValueError(f'unknown variant {arg.variant!r}: default, whole, quick')
  c.lock()
  return c
