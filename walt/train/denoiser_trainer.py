"""W.A.L.T denoiser training job (`config.job = 'walt'`), on the shared loop.

Trains the window-attention denoiser on normalised latents of a trained
tokenizer (`config.tokenizer.workdir`), class-conditional, with joint
image-video batches (`config.data.image_fraction`: stacks of independent
images, each frame encoded as its own image latent).

Modes (`python -m walt.main --mode=...`):
  train          train; every `eval_every` steps sample and score
  eval           sample from the latest checkpoint and score
  cache_latents  encode the training split once into `config.latents.cache`
                 (array_record); training then reads latents from there
                 instead of encoding on the fly
"""

from __future__ import annotations

import dataclasses
import time

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from walt.data import latent_cache
from walt.data import pipeline
from walt.data import video_ops
from walt import defaults
from walt.diffusion import objectives
from walt.diffusion import sampling
from walt.diffusion import schedule as sched_lib
from walt.evaluation import oracle
from walt.evaluation import results as results_lib
from walt.inference import generator as generator_lib
from walt.inference import stages
from walt.inference import tokenizer as tokenizer_lib
from walt import media
from walt import storage
from walt.models import denoiser as denoiser_lib
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib
from walt.train import accumulate
from walt.train import loop
from walt.train import state as state_lib


latent_shape = generator_lib.latent_shape
model_config = generator_lib.model_config


def check_config(config, mesh_shape) -> None:
  """Denoiser-specific validation (windows vs latent grid, ...)."""
  del mesh_shape
  try:
    model_config(config).validate()
  except ValueError as e:
    raise ValueError(
        f'config.model: {e} (latent {latent_shape(config)} from data.frames,'
        ' data.resolution and config.tokenizer)') from None
  d = config.diffusion
  for name in ('self_cond_prob', 'class_dropout', 'frame_cond_prob'):
    if not 0.0 <= d[name] <= 1.0:
      raise ValueError(f'diffusion.{name}={d[name]} not in [0, 1]')
  if d.frame_cond_frames >= latent_shape(config)[0] and d.frame_cond_prob:
    raise ValueError('diffusion.frame_cond_frames leaves no frame to predict')
  if (d.frame_cond_prob and latent_shape(config)[0] < 3
      and (d.get('frame_cond_modes') or {}).get('interpolate')):
    raise ValueError('diffusion.frame_cond_modes: interpolation gives the '
                     'first and the last latent frame, so it needs >= 3 '
                     f'(data.frames={config.data.frames} gives '
                     f'{latent_shape(config)[0]})')
  if d.self_cond_prob > 0 and not config.model.self_conditioning:
    raise ValueError('diffusion.self_cond_prob > 0 needs '
                     'model.self_conditioning=True (or set the prob to 0)')
  objectives.ObjectiveConfig.from_config(d, 0)  # t sampling, loss weighting
  if not 1 <= config.eval.steps <= d.num_steps:
    raise ValueError(f'eval.steps={config.eval.steps} not in [1, '
                     f'{d.num_steps}]')
  if config.eval.sampler not in sampling.SAMPLERS:
    raise ValueError(f'eval.sampler={config.eval.sampler!r}: one of '
                     f'{sampling.SAMPLERS}')
  check_cascade(config)


def check_cascade(config) -> None:
  """An SR stage's low-res latent fits its upsampling; text has an encoder;
  cascade inputs come from a latent cache of videos."""
  m = config.model
  hi = latent_shape(config)
  low = generator_lib.low_res_latent_shape(config)
  if low is not None:
    f = m.sr_factor
    if (low[3] != m.low_res_channels or low[0] != hi[0]
        or (low[1] * f, low[2] * f) != tuple(hi[1:3])):
      raise ValueError(
          f'the low-res latent {low} (cascade.low_res_resolution, '
          f'cascade.low_res_tokenizer) does not map to the latent {hi} by '
          f'model.sr_factor={f} with model.low_res_channels='
          f'{m.low_res_channels}')
  if m.text_dim and not config.cascade.text_encoder:
    raise ValueError('model.text_dim > 0 needs cascade.text_encoder '
                     "('builtin[:DIM]' or 't5:DIR')")
  if (low is not None or m.text_dim) and config.data.image_fraction:
    raise ValueError('SR and text stages train on videos only: set '
                     'data.image_fraction=0 (image stacks would need a '
                     'low-res latent and a caption per frame)')
  if not 0.0 <= config.eval.get('sr_noise', 0.0) < 1.0:
    raise ValueError(f'eval.sr_noise={config.eval.sr_noise} not in [0, 1)')


def cascade_keys(config) -> tuple[str, ...]:
  """The batch keys of a cascade stage's conditioning inputs."""
  keys = ()
  if config.model.get('low_res_channels'):
    keys += ('low_res',)
  if config.model.get('text_dim'):
    keys += ('text', 'text_mask')
  return keys


VALIDATORS = (check_config,)


def offline_task(config, mesh) -> 'DenoiserTask':
  """The job's task with nothing read from disk, on `mesh` (whose devices
  may be abstract): what `walt.tools.aot` and `describe --mesh` use."""
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  return DenoiserTask(config, '', mesh, rules, offline=True)


class DenoiserTask:
  """Denoiser + frozen tokenizer; see `loop.Task`."""

  def __init__(self, config, workdir: str, mesh, rules, tokenizer=None,
               offline: bool = False):
    """`offline`: no tokenizer (nothing read from disk), the step trains on
    cached latents: what `walt.tools.aot` compiles."""
    self.config = config
    self.workdir = workdir
    self.mesh, self.rules = mesh, rules
    self.model_config = model_config(config)
    self.model_config.validate()
    self.model = denoiser_lib.Denoiser(self.model_config)
    self.schedule = sched_lib.Schedule.from_config(config.diffusion)
    self.objective = objectives.ObjectiveConfig.from_config(
        config.diffusion, self.model_config.num_classes)
    self.tx = loop.make_optimizer(config.optimizer, config.total_steps)
    self.cached = bool(config.latents.cache) or offline
    self.cascade_keys = cascade_keys(config)
    if self.cascade_keys and not self.cached:
      raise ValueError(
          f'this stage is conditioned on {self.cascade_keys}: it trains from '
          'a latent cache holding them. Write one first with --mode='
          'cache_latents --config.latents.cache=DIR (then train with the '
          'same flag)')
    if offline:
      self.tokenizer = self._generator = None
      return
    self.tokenizer = tokenizer or tokenizer_lib.load_tokenizer(
        config.tokenizer.workdir, mesh)
    generator_lib.check_tokenizer(self.tokenizer, config,
                                  self.model_config.latent_shape)
    # One generator for the job: its sampling functions compile once.
    self._generator = generator_lib.Generator(
        self.model, None, self.schedule, self.tokenizer, mesh, rules)
    self._generator.train_config = config
    self._generator.data_config = config.data

  @classmethod
  def from_workdir(cls, config, workdir: str, mesh) -> 'DenoiserTask':
    rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
    return cls(config, workdir, mesh, rules)

  # ------------------------------------------------------------------ data
  def data_spec(self) -> pipeline.DataSpec:
    if not self.cached:
      return pipeline.DataSpec.from_config(self.config.data)
    return pipeline.DataSpec.from_config(
        self.config.data, name='latent_cache', data_dir=self.config.latents.cache,
        frames=self.model_config.latent_shape[0], crop=None, pixels=False,
        build=False, extra_keys=self.cascade_keys)

  def batch_shapes(self, batch_size: int) -> dict:
    """What `train_step` reads, as `jax.ShapeDtypeStruct`s (latents)."""
    t = self.model_config.latent_shape[0]
    shapes = {'latent': jax.ShapeDtypeStruct(
                  (batch_size, *self.model_config.latent_shape), jnp.float32),
              'label': jax.ShapeDtypeStruct((batch_size, t), jnp.int32),
              'is_image': jax.ShapeDtypeStruct((batch_size,), bool)}
    if 'low_res' in self.cascade_keys:
      shapes['low_res'] = jax.ShapeDtypeStruct(
          (batch_size, *generator_lib.low_res_latent_shape(self.config)),
          jnp.float32)
    if 'text' in self.cascade_keys:
      n = self.config.cascade.text_length
      shapes['text'] = jax.ShapeDtypeStruct(
          (batch_size, n, self.model_config.text_dim), jnp.float32)
      shapes['text_mask'] = jax.ShapeDtypeStruct((batch_size, n), bool)
    return shapes

  def prepare_batch(self, batch):
    """Pixel batch -> `{latent [b, t', h, w, c], label [b, t'], is_image}`."""
    t = self.model_config.latent_shape[0]
    is_image = batch['is_image']
    if self.cached:
      latent = batch['video']
    else:
      video = batch['video']
      latent = self.tokenizer.encode(video)
      if self.config.data.image_fraction > 0:
        # Image stacks: their first t' frames, each its own image latent.
        images = self.tokenizer.encode_images(video[:, :t])
        latent = jnp.where(is_image[:, None, None, None, None], images,
                           latent)
    out = {'latent': latent, 'label': batch['label'][:, :t],
           'is_image': is_image}
    out.update({k: batch[k] for k in self.cascade_keys})
    return out

  # ----------------------------------------------------------------- model
  def apply(self, params, z, t, labels, self_cond, cond_latent, cond_mask,
            is_image, **conditioning):
    return self.model.apply(
        {'params': params}, z, t,
        labels=labels if self.model_config.num_classes else None,
        self_cond=self_cond, cond_latent=cond_latent, cond_mask=cond_mask,
        is_image=is_image, **conditioning)

  def init_state(self, rng):
    z = jnp.zeros((1, *self.model_config.latent_shape), jnp.float32)
    params = self.model.init(rng, z, jnp.zeros((1,)),
                             labels=jnp.zeros((1,), jnp.int32),
                             is_image=jnp.zeros((1,), bool))['params']
    return state_lib.TrainState.create(params, self.tx,
                                       ema=self.config.ema_decay > 0)

  def train_step(self, state, batch):
    if not self.model_config.num_classes:
      batch = {k: v for k, v in batch.items() if k != 'label'}
    return train_step(self.apply, self.schedule, self.objective, self.tx,
                      self.config.seed, self.config.ema_decay, state, batch,
                      self.config.get('microbatches', 1))

  # ------------------------------------------------------------------ hooks
  def eval_params(self, state):
    return loop.eval_params(state)

  def generator(self, state, use_ema: bool = True
                ) -> generator_lib.Generator:
    """The job's generator holding `state`'s (EMA) params."""
    params = self.eval_params(state) if use_ema else state.params
    return self._generator.with_params(params)

  def restore_latest(self):
    return loop.restore_latest(self, self.config, self.workdir, self.mesh,
                               self.rules)

  def eval_labels(self) -> np.ndarray | None:
    n = self.model_config.num_classes
    if not n:
      return None
    per_class = self.config.eval.samples_per_class
    return np.repeat(np.arange(n, dtype=np.int32), per_class)

  def evaluate(self, state, step: int):
    if self.cascade_keys:
      return self.evaluate_cascade(state, step)
    e = self.config.eval
    labels = self.eval_labels()
    if labels is None:
      return None
    gen = self.generator(state)
    started = time.time()
    videos = gen.sample_many(labels, batch_size=e.batch_size,
                             seed=self.config.seed + 1, steps=e.steps,
                             eta=e.eta, guidance=e.guidance,
                             sampler=e.sampler)
    scores = oracle.score_samples(self.config.data.name, videos, labels)
    if scores and e.reference_examples:
      # The tokenizer's ceiling: the same score on reconstructions of real
      # held-out clips (samples are decoded by the same decoder).
      scores['reconstruction_class_accuracy'] = self.reconstruction_accuracy(
          e.reference_examples)
    # One sample per class (mp4, gif, and a PNG grid) next to the scores.
    first = np.unique(labels, return_index=True)[1][:e.num_summary_videos]
    if jax.process_index() == 0:
      media.save_videos(
          storage.join(self.workdir, 'samples', str(step)), 'class_samples',
          video_ops.to_uint8(videos[first]))
    protocol = {
        'sampler': e.sampler, 'steps': e.steps, 'eta': e.eta,
        'guidance': e.guidance, 'spacing': 'trailing',
        'samples_per_class': e.samples_per_class,
        'params': 'ema' if state.ema_params is not None else 'raw',
        'data': self.config.data.name, 'frames': self.config.data.frames,
        'resolution': list(self.config.data.resolution),
        'scorer': 'oracle classifier (walt.data.sprites.classify)'
                  if scores else 'none'}
    results_lib.write_results(self.workdir, step, scores, len(labels),
                                 protocol)
    logging.info('sampled %d videos in %.0f s', len(labels),
                 time.time() - started)
    return scores

  def evaluate_cascade(self, state, step: int):
    """SR / text stages: `cascade_eval` on held-out clips."""
    from walt.evaluation import cascade_eval  # pylint: disable=g-import-not-at-top
    e = self.config.eval
    started = time.time()
    scores, videos = cascade_eval.evaluate_stage(
        self.generator(state), self.config,
        num_examples=e.cascade_examples, batch_size=e.batch_size,
        seed=self.config.seed + 1)
    if jax.process_index() == 0:
      media.save_videos(
          storage.join(self.workdir, 'samples', str(step)), 'stage_samples',
          video_ops.to_uint8(videos[:e.num_summary_videos]))
    protocol = {
        'sampler': e.sampler, 'steps': e.steps, 'eta': e.eta,
        'guidance': e.guidance, 'sr_noise': e.sr_noise,
        'examples': 'first validation clips', 'data': self.config.data.name,
        'frames': self.config.data.frames,
        'resolution': list(self.config.data.resolution),
        'low_res_resolution': list(self.config.cascade.low_res_resolution),
        'text_encoder': self.config.cascade.text_encoder,
        'params': 'ema' if state.ema_params is not None else 'raw'}
    results_lib.write_results(self.workdir, step, scores,
                              scores['num_examples'], protocol)
    logging.info('stage eval of %d clips in %.0f s: %s',
                 scores['num_examples'], time.time() - started, scores)
    return scores

  def reconstruction_accuracy(self, num_examples: int) -> float:
    """Oracle accuracy on tokenizer round trips of validation clips."""
    batch_size = mesh_lib.padded_batch_size(self.config.eval.batch_size,
                                            self.mesh, self.rules)
    correct = []
    for batch in pipeline.eval_batches(
        self.config.data, batch_size=batch_size, num_examples=num_examples,
        seed=self.config.seed, mesh=self.mesh, rules=self.rules,
        split='validation'):
      recon = self.tokenizer.decode(self.tokenizer.encode(batch['video']))
      scores = oracle.score_samples(self.config.data.name,
                                    mesh_lib.fetch(recon),
                                    mesh_lib.fetch(batch['label'])[:, 0])
      correct.append(scores['class_accuracy'])
    return float(np.mean(correct))

  def summaries(self, state, batch, step: int, logger) -> None:
    if self.cascade_keys:
      return  # a stage's samples need held-out inputs: its eval writes them
    labels = self.eval_labels()
    e = self.config.eval
    if labels is None:
      n = e.num_summary_videos
      videos = self.generator(state).sample(num_samples=n, steps=e.steps)
    else:
      # One video per class (up to num_summary_videos).
      labels = np.unique(labels)[:e.num_summary_videos]
      videos = self.generator(state).sample(labels, seed=step, steps=e.steps,
                                            guidance=e.guidance)
    logger.videos(step, 'samples', video_ops.to_uint8(videos))

  def finalize(self, state, checkpointer) -> None:
    del state, checkpointer


def cache_latents(config, workdir: str, mesh) -> dict:
  """Writes the training split's latents to `config.latents.cache`."""
  if not config.latents.cache:
    raise ValueError('set --config.latents.cache=DIR for --mode=cache_latents')
  tokenizer = tokenizer_lib.load_tokenizer(config.tokenizer.workdir, mesh)
  spec = pipeline.DataSpec.from_config(config.data)
  source = pipeline.data_source(spec)
  keys = cascade_keys(config)
  low_res = text_encoder = None
  if 'low_res' in keys:
    low_res = (stages.load_low_res_tokenizer(config, mesh),
               tuple(config.cascade.low_res_resolution))
  if 'text' in keys:
    text_encoder = stages.load_text_encoder(config)
  return latent_cache.write(
      tokenizer, source, config.latents.cache, frames=config.data.frames,
      resolution=spec.resolution, batch_size=config.latents.batch_size,
      num_examples=config.latents.num_examples or None,
      extra_metadata={'tokenizer': config.tokenizer.workdir,
                      'tokenizer_stats_step': tokenizer.stats_step,
                      'data': config.data.name, 'split': spec.split,
                      'workdir': workdir,
                      'low_res_tokenizer': config.cascade.low_res_tokenizer.workdir
                      if low_res else '',
                      'text_encoder': config.cascade.text_encoder
                      if text_encoder else ''},
      low_res=low_res, text_encoder=text_encoder)




def run(config, workdir: str, mode: str = 'train'):
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  if mode == 'cache_latents':
    return cache_latents(config, workdir, mesh)
  task = DenoiserTask(config, workdir, mesh, rules)
  return loop.run(task, config, workdir, mode, {'eval': task.evaluate})


CONDITIONING_KEYS = ('low_res', 'text', 'text_mask')


def train_step(apply, schedule, objective, tx, seed: int, ema_decay: float,
               state, batch, microbatches: int = 1):
  """One denoiser update: the diffusion loss on `batch` (`latent [b, t, h,
  w, c]`, `label [b, t]` or absent, `is_image [b]`, cascade inputs
  `CONDITIONING_KEYS` where the model takes them; in `microbatches`
  slices), the optimizer and EMA. The job's step, and the one
  `walt.benchmark` times."""
  rng = jax.random.fold_in(jax.random.key(seed), state.step)

  def grads_of(mb, example_ids):
    grads, metrics = jax.grad(
        lambda p: objectives.diffusion_loss(
            apply, p, rng, schedule, objective, mb['latent'],
            mb.get('label'), mb['is_image'], example_ids,
            {k: mb[k] for k in CONDITIONING_KEYS if k in mb}),
        has_aux=True)(state.params)
    return grads, metrics, None

  grads, metrics, _ = accumulate.gradients(grads_of, batch, microbatches)
  return state_lib.guarded_apply_gradients(state, grads, tx, ema_decay,
                                           metrics)


# Kept for config files that call it from here.
def default_config(variant_name: str = ''):
  del variant_name
  return defaults.denoiser()


def describe(config, flops: bool = True) -> dict:
  """Params, latent shape and forward FLOPs per example, without allocating
  anything (no tokenizer needed: its compression factors are in the
  config)."""
  cfg = model_config(config)
  cfg.validate()
  model = denoiser_lib.Denoiser(cfg)
  z = jax.ShapeDtypeStruct((1, *cfg.latent_shape), jnp.float32)
  t = jax.ShapeDtypeStruct((1,), jnp.float32)
  labels = jax.ShapeDtypeStruct((1,), jnp.int32)
  variables = jax.eval_shape(
      lambda z, t, y: model.init(jax.random.key(0), z, t, labels=y), z, t,
      labels)
  params = sharding_lib.strip_boxes(variables['params'])
  spatial, spatiotemporal = cfg.windows()
  info = {'job': 'walt', 'params': denoiser_lib.count_params(params),
          'latent_shape': list(cfg.latent_shape),
          'tokens': int(np.prod(cfg.token_grid)),
          'layers': cfg.num_layers, 'width': cfg.width,
          'heads': cfg.num_heads, 'adaln': cfg.adaln,
          'spatial_window': list(spatial),
          'spatiotemporal_window': list(spatiotemporal),
          'input_channels': cfg.input_channels}
  if flops:
    try:
      # XLA counts a scanned body once: estimate on the unrolled model.
      unrolled = denoiser_lib.Denoiser(dataclasses.replace(cfg, scan=False))
      v = jax.eval_shape(
          lambda z, t, y: unrolled.init(jax.random.key(0), z, t, labels=y),
          z, t, labels)
      cost = jax.jit(lambda v, z, t, y: unrolled.apply(
          v, z, t, labels=y)).lower(v, z, t, labels).cost_analysis()
      info['flops_per_example'] = float(cost['flops'])
      # Training: forward + backward (~3x) + the self-conditioning forward.
      info['train_flops_per_example'] = float(cost['flops']) * (
          4 if config.diffusion.self_cond_prob > 0 else 3)
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('no FLOP estimate: %s', e)
  return info
