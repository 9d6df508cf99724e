r"""A caption-conditioned three-stage cascade on moving_sprites, CPU-sized:
32x32 -> 64x64 -> 128x128, 9 frames.

    # per stage S in base, sr1, sr2 (the SR stages need no base model):
    python -m walt.main --config=configs/walt/sprites_cascade.py:stage=S \
        --workdir=RUNS/S --config.latents.cache=CACHES/S --mode=cache_latents
    python -m walt.main --config=configs/walt/sprites_cascade.py:stage=S \
        --workdir=RUNS/S --config.latents.cache=CACHES/S
    # a caption through all three:
    python -m walt.cascade --workdirs=RUNS/base,RUNS/sr1,RUNS/sr2 \
        --caption="a red circle bouncing left and right on a plain background" \
        --out=OUT

Every stage reads `moving_sprites/17x64x64` and re-renders each clip at its
own size from the stored render parameters, so a stage's low-resolution
input and its target are the same clip rendered at two sizes (exact, no
resampling). One tokenizer serves the three sizes: the default
`configs/tokenizer/sprites.py` (per-position RMSNorm, so nothing in it
depends on the frame size; 4x spatial, 4x temporal, 16 channels): latents
3x8x8, 3x16x16 and 3x32x32 (x16), patches 2, 2 and 4, so every stage sees
3x4x4 (base) or 3x8x8 tokens. Captions (`a red circle bouncing left and
right past one small shape on a plain background`) go through the built-in
64-wide text encoder (`walt.text.encoders.BuiltinTextEncoder`) into
cross-attention in every layer; 10% text dropout for guidance. The SR
stages are also caption-conditioned; their low-res latent is noised to
t_sr ~ U(0, 0.3) in training and given clean (`eval.sr_noise=0`) at eval.

Stage eval (`results.json`): `sr_psnr` / `bicubic_psnr` (SR stages) and
`caption_accuracy` (oracle class vs the caption's class) on 96 held-out clips.
"""

import os

from walt import config_lib
from walt import defaults

# stage: (resolution, low-res resolution, patch, layers, width, heads,
# spatiotemporal window, steps, batch)
_STAGES = {
    'base': ((32, 32), (0, 0), 2, 4, 128, 4, (0, 2, 2), 1_500, 32),
    'sr1': ((64, 64), (32, 32), 2, 4, 128, 4, (0, 4, 4), 1_500, 16),
    'sr2': ((128, 128), (64, 64), 4, 4, 128, 4, (0, 4, 4), 1_500, 16),
}
TOKENIZER = '~/walt_runs/tokenizer_sprites'


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, stage='base')
  if arg.stage not in _STAGES:
    raise ValueError(f'stage={arg.stage!r}: one of {sorted(_STAGES)}')
  (resolution, low_res, patch, layers, width, heads, window, steps,
   batch) = _STAGES[arg.stage]
  c = defaults.denoiser()
  c.data.data_dir = os.path.expanduser('~/walt_data')
  c.data.name = 'moving_sprites/17x64x64'
  c.data.frames, c.data.resolution = 9, resolution
  c.data.image_fraction = 0.0
  tokenizer = {'workdir': os.path.expanduser(TOKENIZER), 'spatial_factor': 4,
               'temporal_factor': 4, 'latent_channels': 16}
  c.tokenizer.update(tokenizer)
  c.cascade.text_encoder = 'builtin:64'
  c.cascade.text_length = 16
  c.model.update({'size': '', 'num_layers': layers, 'width': width,
                  'num_heads': heads, 'patch_size': patch,
                  'spatial_window': (0, 0), 'spatiotemporal_window': window,
                  'num_classes': 0, 'text_dim': 64, 'lora_rank': 2,
                  'scan_unroll': 0, 'dtype': 'float32',
                  # No self-conditioning or frame channels: cheaper steps.
                  'self_conditioning': False, 'frame_conditioning': False})
  c.diffusion.self_cond_prob = 0.0
  if low_res[0]:
    c.cascade.low_res_tokenizer.update(tokenizer)
    c.cascade.low_res_resolution = low_res
    c.model.update({'low_res_channels': 16, 'sr_factor': 2})
  c.optimizer.update({'lr': 2e-3, 'warmup_steps': 100, 'weight_decay': 0.0,
                      'b2': 0.99, 'min_lr_ratio': 0.05})
  c.ema_decay = 0.99
  c.batch_size = batch
  c.total_steps = steps
  c.latents.update({'batch_size': 16, 'num_examples': 3_000})
  c.log_every, c.checkpoint_every = 50, steps
  c.eval_every, c.summary_every = steps, 0
  c.eval.update({'sampler': 'dpmpp', 'steps': 15, 'guidance': 3.0,
                 'batch_size': 48, 'num_summary_videos': 8,
                 'cascade_examples': 96, 'sr_noise': 0.0})
  c.lock()
  return c
