r"""The text-to-video cascade's denoisers (DESIGN.md sections 3 and 5):

    --config=configs/walt/t2v.py:stage=base   17x128x128 (then 128x224)
    --config=configs/walt/t2v.py:stage=sr1    2x: 17x128x224 -> 17x256x448
    --config=configs/walt/t2v.py:stage=sr2    2x: 17x256x448 -> 17x512x896

Each stage has its own tokenizer (`configs/tokenizer/t2v.py:stage=...`,
8 latent channels, 8x spatial / 4x temporal) and reads `webvideo/<stage>`.
Text: frozen T5-XL v1.1 token embeddings (2048 wide) in cross-attention.

| stage | latent | patch | layers x width | params (paper) |
|---|---|---|---|---|
| base | 5x16x16 | 1 | 52 x 2048 | 3B |
| sr1 | 5x32x56 | 2 | 40 x 1408 | 1.3B |
| sr2 | 5x64x112 | 4 | 24 x 1024 | 419M |

Each stage trains from a latent cache (`--mode=cache_latents` first) that
holds its clips' latents, the T5 embeddings of their captions and, for the
SR stages, the latents of the same clips at the lower stage's size under
the lower stage's tokenizer (`cascade.low_res_tokenizer`). T5: a user-held
Hugging Face checkpoint directory of `google/t5-v1_1-xl` (config.json,
model.safetensors, spiece.model) at `cascade.text_encoder='t5:DIR'`.
`python -m walt.cascade --workdirs=BASE,SR1,SR2 --caption=...` runs the
three.
"""

import os


from walt import config_lib
from walt import defaults

_STAGES = {
    # stage: (resolution, patch, layers, width, heads, low-res channels,
    # spatiotemporal window in tokens; the SR stages' token grid is
    # 5x16x28)
    'base': ((128, 128), 1, 52, 2048, 16, 0, (0, 8, 8)),
    'sr1': ((256, 448), 2, 40, 1408, 16, 8, (0, 8, 14)),
    'sr2': ((512, 896), 4, 24, 1024, 16, 8, (0, 8, 14)),
}
# The clip size each SR stage takes (the base model's wide clips, then
# SR-1's output) and the workdirs of the stages' tokenizers.
_LOW_RES = {'sr1': ((128, 224), 'base'), 'sr2': ((256, 448), 'sr1')}
T5_DIR = os.path.expanduser('~/checkpoints/t5-v1_1-xl')
T5_XL_DIM = 2048


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, stage='base')
  if arg.stage not in _STAGES:
    raise ValueError(f'stage={arg.stage!r}: one of {sorted(_STAGES)}')
  resolution, patch, layers, width, heads, low_res, window = _STAGES[
      arg.stage]
  c = defaults.denoiser()
  c.data.name = f'webvideo/{arg.stage}'
  c.data.build = False
  c.data.frames, c.data.resolution = 17, resolution
  c.data.image_fraction = 0.0
  c.model.update({'size': '', 'num_layers': layers, 'width': width,
                  'num_heads': heads, 'patch_size': patch,
                  'spatiotemporal_window': window,
                  'text_dim': T5_XL_DIM, 'low_res_channels': low_res})
  c.cascade.text_encoder = f't5:{T5_DIR}'
  c.cascade.text_length = 64
  if arg.stage in _LOW_RES:
    size, tokenizer = _LOW_RES[arg.stage]
    c.cascade.low_res_resolution = size
    c.cascade.low_res_tokenizer.update(
        {'workdir': os.path.expanduser(f'~/walt_runs/tokenizer_t2v_{tokenizer}'),
         'temporal_factor': 4, 'spatial_factor': 8, 'latent_channels': 8})
  c.tokenizer.workdir = os.path.expanduser(
      f'~/walt_runs/tokenizer_t2v_{arg.stage}')
  c.batch_size = 256
  # The paper's text models keep no EMA (Table 8); it trains them with
  # Adafactor, which walt does not offer yet (AdamW here).
  c.ema_decay = 0.0
  c.lock()
  return c
