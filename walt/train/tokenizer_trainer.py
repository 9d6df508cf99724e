"""Tokenizer training job (`config.job = 'tokenizer'`), on the shared loop.

Modes (`python -m walt.main --mode=...`):
  train         train, evaluating reconstructions every `eval_every` steps,
                then estimate latent statistics
  eval          evaluate the latest checkpoint
  latent_stats  (re-)estimate per-channel latent mean/std of the latest
                checkpoint into `WORKDIR/latent_stats.json`
"""

from __future__ import annotations


from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from walt import config_lib
from walt import defaults
from walt import storage
from walt.data import pipeline
from walt.data import video_ops
from walt.evaluation import reconstruction
from walt.evaluation import results as results_lib
from walt.inference import tokenizer as tokenizer_lib
from walt.models import perceptual as perceptual_lib
from walt.models import tokenizer as tok
from walt.models import tokenizer_losses as losses
from walt.models.discriminator import Discriminator
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib
from walt.train import accumulate
from walt.train import loop
from walt.train import state as state_lib

LATENT_STATS = tokenizer_lib.LATENT_STATS


def check_config(config, mesh_shape) -> None:
  """Tokenizer-specific validation (before anything is built)."""
  model = tok.TokenizerConfig.from_config(config.model)
  frames = config.data.frames
  height, width = config.data.crop or config.data.resolution
  _check_input(model, 'data.frames, data.crop or data.resolution', frames,
               height, width)
  _check_input(model, 'eval.frames, data.resolution', config.eval.frames,
               *config.data.resolution)
  if config.eval_every or config.summary_every:
    config_lib.check_batch_size(config, mesh_shape, 'eval.batch_size')
  if config.latent_stats.num_examples:
    config_lib.check_batch_size(config, mesh_shape, 'latent_stats.batch_size')
  if config.data.image_fraction:
    raise ValueError('tokenizers train on videos or 1-frame videos; set '
                     'data.image_fraction=0')
  for c in (model.base_channels * m for m in model.channel_multipliers):
    if c % min(model.num_groups, c):
      raise ValueError(f'{c} channels are not divisible into '
                       f'{model.num_groups} groups')


def _check_input(model, fields: str, frames: int, height: int, width: int):
  try:
    model.check_input(frames, height, width)
  except ValueError as e:
    raise ValueError(f'{fields}: {e} (the tokenizer compresses time '
                     f'{model.temporal_factor}x, space '
                     f'{model.spatial_factor}x)') from None


VALIDATORS = (check_config,)


def offline_task(config, mesh) -> 'TokenizerTask':
  """The job's task with nothing read from disk, on `mesh` (whose devices
  may be abstract): what `walt.tools.aot` and `describe --mesh` use."""
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  return TokenizerTask(config, '', mesh, rules, offline=True)


class TokenizerTask:
  """Autoencoder + optional discriminator; see `loop.Task`."""

  def __init__(self, config, workdir: str, mesh, rules,
               offline: bool = False):
    """`offline`: nothing read from disk (the perceptual network, when the
    config uses one, gets zero weights of its real shapes): what
    `walt.tools.aot` compiles."""
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
    if offline and loss.perceptual_weight > 0:
      self.perceptual = perceptual_lib.placeholder()
    else:
      self.perceptual = perceptual_lib.load(loss.perceptual_weights)
    if self.perceptual is None and loss.perceptual_weight > 0:
      logging.warning(
          'Perceptual loss is off: no weights file (config.loss.'
          'perceptual_weights). See walt/models/perceptual.py for the file '
          'to get and how to convert it.')
    frames = config.data.frames
    height, width = config.data.crop or config.data.resolution
    self.example = jnp.zeros((1, frames, height, width, 3), jnp.float32)
    # The inference wrapper (raw latents: no statistics yet) holds the
    # jitted reconstruct/encode, compiled once per job, not per eval.
    self.frozen = tokenizer_lib.TrainedTokenizer(config, None)

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

  def batch_shapes(self, batch_size: int) -> dict:
    """What `train_step` reads, as `jax.ShapeDtypeStruct`s."""
    return {'video': jax.ShapeDtypeStruct(
        (batch_size, *self.example.shape[1:]), jnp.float32)}

  # ------------------------------------------------------------------- step
  def train_step(self, state, batch):
    c = self.config.loss
    video = batch['video']
    rng = jax.random.fold_in(jax.random.key(self.config.seed), state.step)
    gan_on = state.step >= c.gan_start
    disc_params = state.extra.get('disc_params')

    def generator_loss(params, video):
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

    def generator_grads(mb, example_ids):
      del example_ids  # (a KL tokenizer's posterior noise: drawn per slice)
      grads, (recon, metrics) = jax.grad(generator_loss, has_aux=True)(
          state.params, mb['video'])
      return grads, metrics, recon

    k = self.config.get('microbatches', 1)
    grads, metrics, recon = accumulate.gradients(generator_grads, batch, k)
    extra = state.extra
    if self.disc is not None:
      extra, d_metrics = jax.lax.cond(
          gan_on, lambda e, v, r: self._disc_update(e, v, r, k),
          lambda e, v, r: (e, _zero_disc_metrics()), state.extra, video,
          jax.lax.stop_gradient(recon))
      metrics.update(d_metrics)
    metrics['psnr'] = jnp.mean(reconstruction.psnr(recon, video))
    return state_lib.guarded_apply_gradients(
        state, grads, self.tx, self.config.ema_decay, metrics, extra=extra)

  def _disc_update(self, extra, real, fake, microbatches: int = 1):
    c = self.config.loss

    def disc_loss(d_params, real, fake):
      apply = lambda x: self.disc.apply({'params': d_params}, x)
      r1, real_logits = losses.r1_penalty(apply, real)
      fake_logits = apply(fake)
      adv = losses.discriminator_adversarial(real_logits, fake_logits)
      reg = losses.lecam(real_logits, fake_logits, extra['lecam_real'],
                         extra['lecam_fake'])
      total = adv + c.r1_weight * r1 + c.lecam_weight * reg
      return total, (real_logits, fake_logits,
                     {'d_loss': total, 'd_adv': adv, 'r1': r1, 'lecam': reg})

    def disc_grads(mb, example_ids):
      del example_ids
      grads, (real_logits, fake_logits, metrics) = jax.grad(
          disc_loss, has_aux=True)(extra['disc_params'], mb['real'],
                                   mb['fake'])
      return grads, metrics, (real_logits, fake_logits)

    grads, metrics, (real_logits, fake_logits) = accumulate.gradients(
        disc_grads, {'real': real, 'fake': fake}, microbatches)
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
    return loop.eval_params(state)

  def eval_batches(self, num_examples: int | None = None):
    e = self.config.eval
    return pipeline.eval_batches(
        self.config.data, batch_size=e.batch_size,
        num_examples=e.num_examples if num_examples is None else num_examples,
        seed=self.config.seed, mesh=self.mesh, rules=self.rules,
        split=e.split, frames=e.frames)

  def evaluate(self, state, step: int):
    params = self.eval_params(state)
    scores = reconstruction.evaluate(
        lambda v: self.frozen.reconstruct(v, params), self.eval_batches())
    n = scores.pop('num_samples')
    e = self.config.eval
    results_lib.write_results(self.workdir, step, scores, n, {
        'split': e.split, 'data': self.config.data.name, 'frames': e.frames,
        'resolution': list(self.config.data.resolution),
        'params': 'ema' if state.ema_params is not None else 'raw',
        'value_range': '[0, 1] per frame (clipped)', 'ssim_window': 11})
    return scores

  def summaries(self, state, batch, step: int, logger) -> None:
    e = self.config.eval
    video = next(self.eval_batches(e.batch_size))['video'][
        :e.num_summary_videos]
    recon = self.frozen.reconstruct(video, self.eval_params(state))
    both = np.concatenate([mesh_lib.fetch(video), mesh_lib.fetch(recon)],
                          axis=3)
    logger.videos(step, 'reconstruction', video_ops.to_uint8(both))

  def finalize(self, state, checkpointer) -> None:
    if self.config.latent_stats.num_examples:
      compute_latent_stats(self, state, int(jax.device_get(state.step)))


def compute_latent_stats(task: TokenizerTask, state, step: int) -> dict:
  """Per-channel mean/std of latents over training clips (float64 sums)."""
  s = task.config.latent_stats
  batches = pipeline.eval_batches(
      task.config.data, batch_size=s.batch_size, num_examples=s.num_examples,
      seed=task.config.seed + 1, mesh=task.mesh, rules=task.rules,
      split='train', frames=task.config.eval.frames, shuffle=True)
  params = task.eval_params(state)
  total = sq = None
  count = 0
  for batch in batches:
    z = np.asarray(mesh_lib.fetch(task.frozen.encode(batch['video'], params)),
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
    storage.write_json(storage.join(task.workdir, LATENT_STATS), stats)
  logging.info('latent stats: mean %s std %s', np.round(mean, 3),
               np.round(std, 3))
  return stats


def run(config, workdir: str, mode: str = 'train'):
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  task = TokenizerTask(config, workdir, mesh, rules)
  return loop.run(task, config, workdir, mode, {
      'eval': task.evaluate,
      'latent_stats': lambda state, step: compute_latent_stats(task, state,
                                                               step)})


def _zero_disc_metrics():
  z = jnp.zeros(())
  return {'d_loss': z, 'd_adv': z, 'r1': z, 'lecam': z}



# Kept for config files that call it from here.
def default_config(variant_name: str = ''):
  del variant_name
  return defaults.tokenizer()


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
      sharding_lib.strip_boxes(variables['params']))))
  latent = jax.eval_shape(
      lambda p, v: model.apply(p, v, method='encode'), variables, video)
  info = {'job': 'tokenizer', 'params': params,
          'input_shape': [frames, height, width, 3],
          'latent_shape': list(latent.shape[1:])}
  encoder = sum(np.prod(x.shape) for x in jax.tree.leaves(
      sharding_lib.strip_boxes(variables['params']['encoder'])))
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
