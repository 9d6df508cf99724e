"""Sampling from a trained W.A.L.T denoiser: the Python API.

    from walt import sampler
    gen = sampler.Generator.load('/path/to/denoiser_workdir')
    videos = gen.sample(labels=[0, 1, 2], seed=0, steps=50)  # [3, T, H, W, 3]

`Generator` holds the denoiser (EMA params by default), the tokenizer it was
trained with and the diffusion schedule; each (steps, eta, guidance, batch)
combination compiles one jitted function running the whole DDIM loop and the
decoder. Samples are spread over all devices (batch axis on the mesh's data
axes); the CLI is `python -m walt.sample`.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt.diffusion import sampling
from walt.diffusion import schedule as sched_lib
from walt.models import denoiser as denoiser_lib
from walt.parallel import mesh as mesh_lib


class Generator:
  """Class- (and frame-) conditional sampling of latents and videos."""

  def __init__(self, model: denoiser_lib.Denoiser, params,
               schedule: sched_lib.Schedule, tokenizer, mesh=None,
               rules=mesh_lib.DEFAULT_RULES):
    self.model = model
    self.config = model.config
    self.params = params
    self.schedule = schedule
    self.tokenizer = tokenizer
    self.mesh = mesh or mesh_lib.create_mesh({'data': -1})
    self.rules = rules
    self._compiled = {}
    self.data_config = None  # the training data config (set by `load`)

  @classmethod
  def load(cls, workdir: str, mesh=None, use_ema: bool = True,
           step: int | None = None) -> 'Generator':
    """A checkpoint of a denoiser workdir (default: the latest; config read
    from it). `data_config` keeps the training data's frames/resolution."""
    import os
    from walt.train import checkpoint as ckpt_lib
    from walt.train import denoiser_trainer
    if step:
      workdir = os.path.join(ckpt_lib.split_path(workdir)[0], str(step))
    config = ckpt_lib.read_config(workdir)
    mesh = mesh or mesh_lib.create_mesh(config.mesh.to_dict())
    task = denoiser_trainer.DenoiserTask.from_workdir(config, workdir, mesh)
    state = task.restore_latest()
    gen = task.generator(state, use_ema=use_ema)
    gen.data_config = config.data
    return gen

  @property
  def num_classes(self) -> int:
    return self.config.num_classes

  def _denoise(self, params, labels, cond_latent, cond_mask):
    null = jnp.full_like(labels, self.num_classes) if labels is not None \
        else None

    def denoise(z, t, x0_sc, conditional):
      # The unconditional branch drops every condition (class and frames).
      return self.model.apply(
          {'params': params}, z, self.schedule.time_input(t),
          labels=labels if conditional else null,
          self_cond=x0_sc,
          cond_latent=cond_latent if conditional else None,
          cond_mask=cond_mask if conditional else None)
    return denoise

  def _fn(self, steps: int, eta: float, guidance: float, decode: bool,
          frame_cond: bool):
    key = (steps, eta, guidance, decode, frame_cond)
    if key not in self._compiled:
      def run(params, tok_params, noise, rng, labels, cond_latent, cond_mask):
        denoise = self._denoise(params, labels, cond_latent, cond_mask)
        z = sampling.ddim_sample(
            denoise, noise, rng, self.schedule, steps, eta, guidance,
            self_condition=self.config.self_conditioning)
        if frame_cond:  # given frames are kept exactly
          m = cond_mask[:, :, None, None, None]
          z = m * cond_latent + (1 - m) * z
        if not decode:
          return z
        return self.tokenizer.decode_with(tok_params, z)
      self._compiled[key] = jax.jit(run)
    return self._compiled[key]

  def sample_latents(self, labels: Sequence[int] | None = None, *,
                     num_samples: int | None = None, seed: int = 0,
                     steps: int = 50, eta: float = 0.0,
                     guidance: float = 1.0, frames: int | None = None,
                     cond_latent=None, cond_mask=None,
                     decode: bool = False) -> np.ndarray:
    """Normalised latents `[n, t, h, w, c]` (or videos if `decode`).

    labels: one class per sample (class-conditional models); `num_samples`
      otherwise. cond_latent/cond_mask: frame conditioning (`[n, t, h, w, c]`
      normalised latents, `[n, t]` 1 = given).
    """
    if labels is not None:
      labels = np.asarray(labels, np.int32).reshape(-1)
      if self.num_classes == 0:
        raise ValueError('this model is not class-conditional')
      if np.any(labels < 0) or np.any(labels > self.num_classes):
        raise ValueError(f'labels must be in [0, {self.num_classes}] '
                         f'({self.num_classes} = null class)')
      n = len(labels)
    else:
      if num_samples is None:
        raise ValueError('give labels or num_samples')
      n = num_samples
      if self.num_classes:
        labels = np.full((n,), self.num_classes, np.int32)  # unconditional
    t, h, w, c = self.config.latent_shape
    t = frames or t
    # Pad the batch to a multiple of the devices sharing it.
    parallel = mesh_lib.batch_parallelism(self.mesh, self.rules)
    padded = -(-n // parallel) * parallel
    pad = lambda a: (None if a is None else np.concatenate(
        [a, np.repeat(a[:1], padded - n, axis=0)]) if padded > n else a)
    rng = jax.random.key(seed)
    noise = np.asarray(jax.random.normal(jax.random.fold_in(rng, 0),
                                         (padded, t, h, w, c)))
    frame_cond = cond_latent is not None
    if frame_cond:
      cond_latent = np.asarray(cond_latent, np.float32)[:, :t]
      cond_mask = np.asarray(cond_mask, np.float32)[:, :t]
    sharding = mesh_lib.batch_sharding(self.mesh, self.rules)
    put = lambda a: None if a is None else mesh_lib.put_global(a, sharding)
    fn = self._fn(steps, float(eta), float(guidance), decode, frame_cond)
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      out = fn(self.params, self.tokenizer.params if decode else None,
               put(noise), jax.random.fold_in(rng, 1),
               put(pad(labels)), put(pad(cond_latent)), put(pad(cond_mask)))
    return mesh_lib.fetch(out)[:n]

  def sample(self, labels: Sequence[int] | None = None, **kwargs
             ) -> np.ndarray:
    """Videos float32 `[n, T, H, W, 3]` in [-1, 1] (see `sample_latents`)."""
    return self.sample_latents(labels, decode=True, **kwargs)
