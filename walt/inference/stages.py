"""A cascade stage's extra inputs (DESIGN.md section 5), loaded from its
training config: an SR stage's low-resolution tokenizer and a text model's
text encoder. Shared by the trainer (latent cache), the generator's pixel
API (`Generator.super_resolve`, `Generator.sample_text`) and `walt.cascade`.
"""

from __future__ import annotations

from walt.inference import tokenizer as tokenizer_lib


def clip_latent_shape(tok, frames: int, resolution, where: str
                      ) -> tuple[int, int, int, int]:
  """Latent `(t, h, w, c)` of `frames` x `resolution` clips under the
  compression factors of a config's tokenizer section `tok`."""
  height, width = resolution
  if tok.temporal_factor > 1 and (frames - 1) % tok.temporal_factor:
    raise ValueError(f'data.frames={frames} is not 1 + '
                     f'{tok.temporal_factor}k')
  if height % tok.spatial_factor or width % tok.spatial_factor:
    raise ValueError(f'{where}={tuple(resolution)} is not divisible by '
                     f'{tok.spatial_factor}')
  return (1 + (frames - 1) // tok.temporal_factor,
          height // tok.spatial_factor, width // tok.spatial_factor,
          tok.latent_channels)


def low_res_latent_shape(config) -> tuple[int, int, int, int] | None:
  """An SR stage's conditioning latent `(t, h, w, c)`: the clip at
  `cascade.low_res_resolution` under `cascade.low_res_tokenizer` (None for
  other models)."""
  if not config.model.get('low_res_channels'):
    return None
  c = config.cascade
  return clip_latent_shape(c.low_res_tokenizer, config.data.frames,
                           c.low_res_resolution, 'cascade.low_res_resolution')


def load_low_res_tokenizer(config, mesh=None):
  """An SR stage's low-resolution tokenizer, checked against the config."""
  c = config.cascade
  if not c.low_res_tokenizer.workdir:
    raise ValueError('set cascade.low_res_tokenizer.workdir: the trained '
                     'tokenizer of the low-resolution stage')
  tokenizer = tokenizer_lib.load_tokenizer(c.low_res_tokenizer.workdir, mesh)
  got = tokenizer.latent_shape(config.data.frames, *c.low_res_resolution)
  want = low_res_latent_shape(config)
  if tuple(got) != tuple(want):
    raise ValueError(f'the tokenizer in {c.low_res_tokenizer.workdir} gives '
                     f'low-res latents {tuple(got)}, cascade.low_res_tokenizer'
                     f' factors give {tuple(want)}')
  return tokenizer


def load_text_encoder(config):
  """A text model's encoder (`cascade.text_encoder`), checked against
  `model.text_dim`."""
  from walt.text import encoders  # pylint: disable=g-import-not-at-top
  encoder = encoders.load_encoder(config.cascade.text_encoder,
                                  config.cascade.text_length)
  if encoder.dim != config.model.text_dim:
    raise ValueError(f'cascade.text_encoder={config.cascade.text_encoder!r} '
                     f'gives {encoder.dim}-wide embeddings, model.text_dim='
                     f'{config.model.text_dim}')
  return encoder
