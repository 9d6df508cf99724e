r"""W.A.L.T frame prediction (and interpolation) on moving_sprites, CPU-sized.

    python -m walt.main --config=configs/walt/sprites_prediction.py \
        --workdir=DIR --config.tokenizer.workdir=TOKENIZER_DIR \
        --config.latents.cache=CACHE_DIR --mode=cache_latents
    python -m walt.main --config=configs/walt/sprites_prediction.py \
        --workdir=DIR --config.tokenizer.workdir=TOKENIZER_DIR \
        --config.latents.cache=CACHE_DIR
    python -m walt.main --config=configs/eval/sprites.py:prediction \
        --workdir=EVAL_DIR --config.generator_workdir=DIR

Whole 17-frame 64x64 clips (latent 5x16x16x16 on the default sprites
tokenizer, tokens 5x8x8), class-conditional. 90% of the clips are given
clean latent frames through the masked-latent channels: the first 2 (5
pixel frames, frame prediction of the other 12) for 80% of those, the first
and the last (interpolation) for 10%, the first (image-to-video) for 10%;
the other 10% train the frames-dropped model that `guidance_frames` needs.
The model is the default sprites denoiser without self-conditioning (its
second forward does not pay off at this budget; `configs/walt/sprites.py`).

Measured at step 2000 on the 30.8 dB default tokenizer (63 min on 2 cores;
`configs/eval/sprites.py:prediction`, DPM-Solver++ 15 steps): prediction
PSNR 19.2 dB vs copy-last-frame 17.6 dB, interpolation 19.1 dB vs linear
blend 19.4 dB (WORKSPACE.md, "Frame prediction"): short of the 25 dB / +3 dB
target (on the 28.4 dB tokenizer, step 1500: 18.8 and 18.8 dB).
"""

from walt import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='default')
  if arg.variant != 'default':
    raise ValueError(f'unknown variant {arg.variant!r}: default')
  c = config_lib.load_file('walt/sprites.py', 'default')
  c.unlock()
  c.data.frames = 17
  c.data.image_fraction = 0.0
  c.model.self_conditioning = False
  c.diffusion.self_cond_prob = 0.0
  c.diffusion.frame_cond_prob = 0.9
  c.diffusion.frame_cond_frames = 2
  c.diffusion.frame_cond_modes = {'predict': 0.8, 'image': 0.1,
                                  'interpolate': 0.1}
  c.total_steps = 2_000
  c.log_every, c.checkpoint_every = 50, 500
  c.eval_every, c.summary_every = 2_000, 0
  c.eval.samples_per_class = 4
  c.lock()
  return c
