r"""W.A.L.T-L on ImageNet 256x256, class-conditional (latent 1x32x32x8).

    python -m walt.main --config=configs/walt/imagenet.py --workdir=DIR \
        --config.tokenizer.workdir=TOKENIZER_DIR --config.data.data_dir=DIR

L (24 layers, 1024 wide) with a separate AdaLN per layer instead of
AdaLN-LoRA: 460M params. Spatial windows 1x32x32 (whole image), "spatio-
temporal" windows 1x8x8. Batch 1024, AdamW 5e-4 cosine, 350 epochs, EMA.
Paper: FID 2.56, IS 215.1 (50k samples, 50 DDIM steps, no guidance).
"""

from walt import config_lib
from walt import defaults


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant='L')
  c = defaults.denoiser()
  c.data.name = 'imagenet_folder/1x256x256'
  c.data.frames, c.data.resolution = 1, (256, 256)
  c.model.size = 'L'
  c.model.adaln = 'separate'
  c.model.num_classes = 1000
  c.model.frame_conditioning = False
  c.tokenizer.temporal_factor = 1
  c.batch_size = 1024
  c.total_steps = 437_500  # 350 epochs of 1.28M images at batch 1024
  c.mesh.update({'data': -1, 'fsdp': 1})
  c.lock()
  return c
