r"""W.A.L.T-L on Kinetics-600 frame prediction, 17x128x128 (latent 5x16x16x8).

    python -m walt.main --config=configs/walt/k600.py --workdir=DIR \
        --config.tokenizer.workdir=TOKENIZER_DIR --config.data.data_dir=DIR

The first 5 frames (2 latent frames) are given clean through the masked-latent
channels with probability `diffusion.frame_cond_prob`; classifier-free
guidance on that signal at sampling. Batch 512, AdamW 5e-4 cosine (the paper
trains 360 epochs), EMA. Paper: FVD 3.3 (64x64 protocol, 50k samples). The
Kinetics-600 builder arrives with the evaluation issue.
"""

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='L')
  c = defaults.denoiser()
  c.data.name = 'kinetics600/17x128x128'
  c.data.frames, c.data.resolution = 17, (128, 128)
  c.model.size = 'L'
  c.model.num_classes = 0
  c.diffusion.frame_cond_prob = 0.9
  c.diffusion.frame_cond_frames = 2
  c.batch_size = 512
  c.total_steps = 500_000
  c.mesh.update({'data': -1, 'fsdp': 1})
  c.lock()
  return c
