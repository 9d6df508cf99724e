"""Tokenizer training job (`config.job = 'tokenizer'`), on the shared loop.

Modes (`python -m walt.main --mode=...`):
  train         train, evaluating reconstructions every `eval_every` steps,
                then estimate latent statistics
  eval          evaluate the latest checkpoint
  latent_stats  (re-)estimate per-channel latent mean/std of the latest
                checkpoint into `WORKDIR/latent_stats.json`
"""

from __future__ import annotations

import json
import os

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt.data import pipeline
from walt.data import video_ops
from walt.evaluation import reconstruction
from walt.models import perceptual as perceptual_lib
from walt.models import tokenizer as tok
from walt.models import tokenizer_losses as losses
from walt.models.discriminator import Discriminator
from walt.parallel import mesh as mesh_lib
from walt.train import loop
from walt.train import state as state_lib

LATENT_STATS = 'latent_stats.json'


def check_config(config, mesh_shape) -> None:
  """Tokenizer-specific validation (before anything is built)."""
  del mesh_shape
  model = tok.TokenizerConfig.from_config(config.model)
  frames = config.data.frames
  height, width = config.data.crop or config.data.resolution
  model.check_input(frames, height, width)
  model.check_input(config.eval.frames, *config.data.resolution)
  if config.data.image_fraction:
    raise ValueError('tokenizers train on videos or 1-frame videos; set '
                     'data.image_fraction=0')
  for c in (model.base_channels * m for m in model.channel_multipliers):
    if c % min(model.num_groups, c):
      raise ValueError(f'{c} channels are not divisible into '
                       f'{model.num_groups} groups')


VALIDATORS = (check_config,)


class TokenizerTask:
  """Autoencoder + optional discriminator; see `loop.Task`."""

  def __init__(self, config, workdir: str, mesh, rules,
               for_inference: bool = False):
    self.config = config
    self.workdir = workdir
    self.mesh, self.rules = mesh, rules
    self.model = tok.Tokenizer(tok.TokenizerConfig.from_config(config.model))
    loss = config.loss
    self.disc = None
    # No discriminator at all when the GAN never switches on in this run: it
    # would only add compile time.
    if loss.gan_weight > 0 and loss.gan_start < config.total_steps:
      self.disc = Discriminator(config.discriminator.base_channels,
                                tuple(config.discriminator.channel_multipliers))
    self.tx = loop.make_optimizer(config.optimizer, config.total_steps)
    self.disc_tx = loop.make_optimizer(config.disc_optimizer,
                                       config.total_steps)
    self.perceptual = (None if for_inference else
                       perceptual_lib.load(loss.perceptual_weights))
    if (self.perceptual is None and loss.perceptual_weight > 0
        and not for_inference):
      logging.warning(
          'Perceptual loss is off: no weights file (config.loss.'
          'perceptual_weights). See walt/models/perceptual.py for the file '
          'to get and how to convert it.')
    frames = config.data.frames
    height, width = config.data.crop or config.data.resolution
    self.example = jnp.zeros((1, frames, height, width, 3), jnp.float32)

  # ------------------------------------------------------------------ state
  def init_state(self, rng):
    g_rng, d_rng = jax.random.split(rng)
    params = self.model.init(g_rng, self.example)['params']
    extra = {}
    if self.disc is not None:
      d_params = self.disc.init(d_rng, self.example)['params']
      extra = {'disc_params': d_params,
               'disc_opt_state': self.disc_tx.init(d_params),
               'lecam_real': jnp.zeros(()), 'lecam_fake': jnp.zeros(())}
    return state_lib.TrainState.create(params, self.tx, ema=True, extra=extra)

  # ------------------------------------------------------------------- step
  def train_step(self, state, batch):
    c = self.config.loss
    video = batch['video']
    rng = jax.random.fold_in(jax.random.key(self.config.seed), state.step)
    gan_on = state.step >= c.gan_start
    disc_params = state.extra.get('disc_params')

    def generator_loss(params):
      recon, post = self.model.apply({'params': params}, video, sample=True,
                                     rngs={'sample': rng})
      l2 = jnp.mean(jnp.square(recon - video))
      total = c.l2_weight * l2
      metrics = {'l2': l2}
      if c.get('l1_weight'):
        l1 = jnp.mean(jnp.abs(recon - video))
        total += c.l1_weight * l1
        metrics['l1'] = l1
      if self.config.model.kl:
        kl = tok.kl_divergence(post['mean'], post['logvar'])
        total += c.kl_weight * kl
        metrics['kl'] = kl
      if self.perceptual is not None and c.perceptual_weight > 0:
        p = jax.lax.cond(state.step >= c.perceptual_start,
                         lambda r: self.perceptual(r, video),
                         lambda r: jnp.zeros(()), recon)
        total += c.perceptual_weight * p
        metrics['perceptual'] = p
      if self.disc is not None:
        adv = jax.lax.cond(
            gan_on, lambda r: losses.generator_adversarial(
                self.disc.apply({'params': disc_params}, r)),
            lambda r: jnp.zeros(()), recon)
        total += c.gan_weight * adv
        metrics['g_adv'] = adv
      metrics['loss'] = total
      return total, (recon, metrics)

    grads, (recon, metrics) = jax.grad(generator_loss, has_aux=True)(
        state.params)
    extra = state.extra
    if self.disc is not None:
      extra, d_metrics = jax.lax.cond(
          gan_on, self._disc_update,
          lambda e, v, r: (e, _zero_disc_metrics()), state.extra, video,
          jax.lax.stop_gradient(recon))
      metrics.update(d_metrics)
    metrics['psnr'] = jnp.mean(reconstruction.psnr(recon, video))
    return state_lib.apply_gradients(state, grads, self.tx,
                                     self.config.ema_decay,
                                     extra=extra), metrics

  def _disc_update(self, extra, real, fake):
    c = self.config.loss

    def disc_loss(d_params):
      apply = lambda x: self.disc.apply({'params': d_params}, x)
      r1, real_logits = losses.r1_penalty(apply, real)
      fake_logits = apply(fake)
      adv = losses.discriminator_adversarial(real_logits, fake_logits)
      reg = losses.lecam(real_logits, fake_logits, extra['lecam_real'],
                         extra['lecam_fake'])
      total = adv + c.r1_weight * r1 + c.lecam_weight * reg
      return total, (real_logits, fake_logits,
                     {'d_loss': total, 'd_adv': adv, 'r1': r1, 'lecam': reg})

    grads, (real_logits, fake_logits, metrics) = jax.grad(
        disc_loss, has_aux=True)(extra['disc_params'])
    updates, opt_state = self.disc_tx.update(grads, extra['disc_opt_state'],
                                             extra['disc_params'])
    decay = c.lecam_decay
    return {
        'disc_params': jax.tree.map(jnp.add, extra['disc_params'], updates),
        'disc_opt_state': opt_state,
        'lecam_real': decay * extra['lecam_real'] +
                      (1 - decay) * jnp.mean(real_logits),
        'lecam_fake': decay * extra['lecam_fake'] +
                      (1 - decay) * jnp.mean(fake_logits),
    }, metrics

  # ------------------------------------------------------------------ hooks
  def eval_params(self, state):
    return state.ema_params if state.ema_params is not None else state.params

  def _reconstruct_fn(self):
    return jax.jit(lambda p, v: self.model.apply({'params': p}, v)[0])

  def eval_batches(self):
    e = self.config.eval
    spec = pipeline.DataSpec.from_config(
        self.config.data, split=e.split, frames=e.frames, crop=None,
        shuffle=False, random_crop=False, num_epochs=1, image_fraction=0.0)
    ds = pipeline.make_dataset(spec, global_batch_size=e.batch_size,
                               seed=self.config.seed)
    it = pipeline.GlobalBatchIterator(ds, self.mesh, self.rules)
    for _ in range(min(len(ds), e.num_examples // e.batch_size)):
      yield next(it)

  def evaluate(self, state, step: int):
    recon = self._reconstruct_fn()
    params = self.eval_params(state)
    scores = reconstruction.evaluate(lambda v: recon(params, v),
                                     self.eval_batches())
    n = scores.pop('num_samples')
    e = self.config.eval
    reconstruction.write_results(self.workdir, step, scores, n, {
        'split': e.split, 'data': self.config.data.name, 'frames': e.frames,
        'resolution': list(self.config.data.resolution),
        'params': 'ema' if state.ema_params is not None else 'raw',
        'value_range': '[0, 1] per frame (clipped)', 'ssim_window': 11})
    return scores

  def summaries(self, state, batch, step: int, logger) -> None:
    e = self.config.eval
    video = next(self.eval_batches())['video'][:e.num_summary_videos]
    recon = self._reconstruct_fn()(self.eval_params(state), video)
    both = np.concatenate([np.asarray(video), np.asarray(recon)], axis=3)
    logger.videos(step, 'reconstruction', video_ops.to_uint8(both))

  def finalize(self, state, checkpointer) -> None:
    if self.config.latent_stats.num_examples:
      compute_latent_stats(self, state, int(jax.device_get(state.step)))


def compute_latent_stats(task: TokenizerTask, state, step: int) -> dict:
  """Per-channel mean/std of latents over training clips (float64 sums)."""
  s = task.config.latent_stats
  spec = pipeline.DataSpec.from_config(
      task.config.data, split='train', frames=task.config.eval.frames,
      crop=None, random_crop=False, num_epochs=1, image_fraction=0.0)
  ds = pipeline.make_dataset(spec, global_batch_size=s.batch_size,
                             seed=task.config.seed + 1)
  it = pipeline.GlobalBatchIterator(ds, task.mesh, task.rules)
  encode = jax.jit(lambda p, v: task.model.apply({'params': p}, v,
                                                 method='encode'))
  params = task.eval_params(state)
  total = sq = None
  count = 0
  for _ in range(min(len(ds), max(s.num_examples // s.batch_size, 1))):
    z = np.asarray(jax.device_get(encode(params, next(it)['video'])),
                   np.float64)
    z = z.reshape(-1, z.shape[-1])
    total = z.sum(0) if total is None else total + z.sum(0)
    sq = (z ** 2).sum(0) if sq is None else sq + (z ** 2).sum(0)
    count += z.shape[0]
  mean = total / count
  std = np.sqrt(np.maximum(sq / count - mean ** 2, 1e-12))
  stats = {'mean': mean.tolist(), 'std': std.tolist(), 'step': step,
           'num_latent_vectors': count}
  if jax.process_index() == 0:
    with open(os.path.join(task.workdir, LATENT_STATS), 'w') as f:
      json.dump(stats, f, indent=2)
  logging.info('latent stats: mean %s std %s', np.round(mean, 3),
               np.round(std, 3))
  return stats


def run(config, workdir: str, mode: str = 'train'):
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  task = TokenizerTask(config, workdir, mesh, rules)
  if mode == 'train':
    return loop.train(task, config, workdir)
  state = loop.restore_latest(task, config, workdir, mesh, rules)
  step = int(jax.device_get(state.step))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    if mode == 'eval':
      print(json.dumps(task.evaluate(state, step)))
    elif mode == 'latent_stats':
      compute_latent_stats(task, state, step)
    else:
      raise ValueError(f'unknown mode {mode!r}: train, eval, latent_stats')
  return state


def load_latent_stats(workdir: str) -> tuple[np.ndarray, np.ndarray]:
  path = os.path.join(workdir, LATENT_STATS)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f'{path} is missing: run python -m walt.main --config=<tokenizer '
        f'config> --workdir={workdir} --mode=latent_stats')
  with open(path) as f:
    stats = json.load(f)
  return np.asarray(stats['mean'], np.float32), np.asarray(stats['std'],
                                                           np.float32)


class TrainedTokenizer:
  """A trained tokenizer for downstream models: frozen EMA params (replicated
  on the mesh), its latent statistics, and jitted normalised encode/decode.

    tokenizer = TrainedTokenizer.load(workdir, mesh)
    z = tokenizer.encode(video)      # [b, 1+T, H, W, 3] -> normalised latent
    video = tokenizer.decode(z)      # normalised latent -> [b, 1+T, H, W, 3]
  """

  def __init__(self, config, params, mean, std, workdir: str = ''):
    self.config = config
    self.workdir = workdir
    self.model_config = tok.TokenizerConfig.from_config(config.model)
    self.model = tok.Tokenizer(self.model_config)
    self.params = params
    self.mean, self.std = mean, std
    self._encode = jax.jit(self.encode_with)
    self._decode = jax.jit(self.decode_with)

  @classmethod
  def load(cls, workdir: str, mesh) -> 'TrainedTokenizer':
    from walt.train import checkpoint as ckpt_lib
    if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
      raise FileNotFoundError(
          f'no tokenizer checkpoints under {workdir}: train one with python '
          f'-m walt.main --config=configs/tokenizer/<name>.py '
          f'--workdir={workdir}')
    config = ckpt_lib.read_config(workdir)
    mean, std = load_latent_stats(workdir)
    rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
    task = TokenizerTask(config, workdir, mesh, rules, for_inference=True)
    state = loop.restore_latest(task, config, workdir, mesh, rules)
    params = jax.device_put(task.eval_params(state),
                            mesh_lib.replicated(mesh))
    return cls(config, params, mean, std, workdir)

  def latent_shape(self, frames: int, height: int, width: int):
    return self.model_config.latent_shape(frames, height, width)

  def encode_with(self, params, video: jax.Array) -> jax.Array:
    """Pure (jit-able): `[b, 1+T, H, W, 3]` -> normalised latent."""
    return tok.normalize(self.model.apply({'params': params}, video,
                                          method='encode'),
                         self.mean, self.std)

  def decode_with(self, params, latent: jax.Array) -> jax.Array:
    """Pure (jit-able): normalised latent -> video in [-1, 1]."""
    return jnp.clip(self.model.apply(
        {'params': params}, tok.denormalize(latent, self.mean, self.std),
        method='decode'), -1.0, 1.0)

  def encode(self, video: jax.Array) -> jax.Array:
    return self._encode(self.params, video)

  def decode(self, latent: jax.Array) -> jax.Array:
    return self._decode(self.params, latent)

  def encode_images(self, images: jax.Array) -> jax.Array:
    """Stacks of independent images `[b, n, H, W, 3]` -> `[b, n, h, w, c]`
    (each image encoded as its own 1-frame video)."""
    b, n = images.shape[:2]
    z = self.encode(images.reshape(b * n, 1, *images.shape[2:]))
    return z.reshape(b, n, *z.shape[2:])

  def decode_images(self, latents: jax.Array) -> jax.Array:
    b, n = latents.shape[:2]
    x = self.decode(latents.reshape(b * n, 1, *latents.shape[2:]))
    return x.reshape(b, n, *x.shape[2:])


def _zero_disc_metrics():
  z = jnp.zeros(())
  return {'d_loss': z, 'd_adv': z, 'r1': z, 'lecam': z}



def default_config(variant_name: str = ''):
  """The paper's tokenizer settings (MAGVIT-v2 losses and optimizer) on the
  common fields; config files override sizes and data."""
  from walt import config_lib
  import ml_collections
  c = config_lib.trainer_config('tokenizer', variant_name)
  c.batch_size = 256
  c.total_steps = 500_000
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 10_000
  c.summary_every = 10_000
  c.ema_decay = 0.999
  c.model = ml_collections.ConfigDict({
      'base_channels': 128, 'channel_multipliers': (1, 2, 2, 4),
      'num_res_blocks': 4, 'num_mid_blocks': 4,
      'temporal_downsample': (False, True, True), 'latent_channels': 8,
      'kl': False, 'temporal_kernel': 3, 'num_groups': 32,
      'normalize': True, 'patch_size': (1, 1, 1), 'stem': 'space_to_depth',
      'spatial_downsample': (), 'conv_impl': 'xla'})
  c.discriminator = ml_collections.ConfigDict({
      'base_channels': 64, 'channel_multipliers': (2, 4, 4, 4, 4)})
  c.loss = ml_collections.ConfigDict({
      'l2_weight': 5.0, 'l1_weight': 0.0, 'perceptual_weight': 0.1, 'perceptual_weights': '',
      'perceptual_start': 0,
      'gan_weight': 0.1, 'gan_start': 50_000, 'r1_weight': 10.0,
      'lecam_weight': 0.001, 'lecam_decay': 0.999, 'kl_weight': 1e-6})
  opt = {'lr': 1e-4, 'b1': 0.0, 'b2': 0.99, 'weight_decay': 0.0,
         'warmup_steps': 5_000, 'grad_clip': 0.0, 'min_lr_ratio': 0.0}
  c.optimizer = ml_collections.ConfigDict(opt)
  c.disc_optimizer = ml_collections.ConfigDict(opt)
  c.eval = ml_collections.ConfigDict({
      'split': 'validation', 'frames': 17, 'batch_size': 8,
      'num_examples': 1024, 'num_summary_videos': 2})
  c.latent_stats = ml_collections.ConfigDict({'num_examples': 2048,
                                              'batch_size': 8})
  return c


def describe(config, flops: bool = True) -> dict:
  """Params, shapes and (if `flops`) forward FLOPs of the tokenizer, without
  allocating anything."""
  model_config = tok.TokenizerConfig.from_config(config.model)
  model = tok.Tokenizer(model_config)
  frames = config.eval.frames
  height, width = config.data.resolution
  video = jax.ShapeDtypeStruct((1, frames, height, width, 3), jnp.float32)
  variables = jax.eval_shape(lambda v: model.init(jax.random.key(0), v), video)
  params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(
      state_lib.strip_boxes(variables['params']))))
  latent = jax.eval_shape(
      lambda p, v: model.apply(p, v, method='encode'), variables, video)
  info = {'job': 'tokenizer', 'params': params,
          'input_shape': [frames, height, width, 3],
          'latent_shape': list(latent.shape[1:])}
  encoder = sum(np.prod(x.shape) for x in jax.tree.leaves(
      state_lib.strip_boxes(variables['params']['encoder'])))
  info['encoder_params'] = int(encoder)
  info['decoder_params'] = params - int(encoder)
  if not flops:
    return info
  try:
    cost = jax.jit(lambda p, v: model.apply(p, v)[0]).lower(
        variables, video).cost_analysis()
    info['flops_per_example'] = float(cost['flops'])
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('no FLOP estimate: %s', e)
  return info
