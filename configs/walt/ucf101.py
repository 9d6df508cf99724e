r"""W.A.L.T on UCF-101, class-conditional, 17x128x128 (latent 5x16x16x8).

    python -m walt.main --config=configs/walt/ucf101.py:variant=XL \
        --workdir=DIR --config.tokenizer.workdir=TOKENIZER_DIR \
        --config.data.data_dir=DATA_DIR

Variants: L (24 layers, 1024 wide, 313M params; the ablation model) and XL
(28 layers, 1152 wide, 460M). AdaLN-LoRA r=2, windows 1x16x16 / 5x8x8, batch
256, 60k steps, AdamW 5e-4 cosine, EMA (paper, Table 8). Paper: FVD 36 (XL),
46 (L). The UCF-101 tfds builder arrives with the evaluation issue.
"""

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='XL')
  if arg.variant not in ('L', 'XL'):
    raise ValueError(f'unknown variant {arg.variant!r}: L, XL')
  c = defaults.denoiser()
  c.data.name = 'ucf101/17x128x128'
  c.data.frames, c.data.resolution = 17, (128, 128)
  c.data.image_fraction = 0.0
  c.model.size = arg.variant
  c.model.num_classes = 101
  c.batch_size = 256
  c.total_steps = 60_000
  c.mesh.update({'data': -1, 'fsdp': 1})
  c.lock()
  return c
