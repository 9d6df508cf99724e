"""Benchmark suites on the jobs' own code: the trainers' steps
(`train_step`), the generator's sampling loop (`sampler`) and the
tokenizer's whole and chunked encode/decode (`tokenizer`)."""

from __future__ import annotations

from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt import config_lib
from walt.benchmark import models
from walt.benchmark import suites
from walt.benchmark import timing
from walt.diffusion import objectives
from walt.diffusion import schedule as sched_lib
from walt.inference import generator as generator_lib
from walt.models import denoiser as denoiser_lib
from walt.models import tokenizer as tok
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib
from walt.train import denoiser_trainer
from walt.train import loop
from walt.train import state as state_lib
from walt.train import tokenizer_trainer

DENOISER_CONFIG = 'walt/sprites.py'  # under configs/
TOKENIZER_CONFIG = 'tokenizer/sprites.py'


def tokenizer_step(config, repeats: int) -> dict:
  """The tokenizer job's compiled train step on a zero batch of the
  training shape: XLA's FLOPs and the median seconds per step."""
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  task = tokenizer_trainer.TokenizerTask(config, '', mesh, rules)
  height, width = config.data.crop or config.data.resolution
  batch = {'video': jnp.zeros((config.batch_size, config.data.frames, height,
                               width, 3), jnp.float32)}
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    state = [sharding_lib.init_sharded(task.init_state, mesh, rules,
                                       jax.random.key(0))[0]]
    compiled = jax.jit(task.train_step, donate_argnums=(0,)).lower(
        state[0], batch).compile()

    def run():
      state[0], metrics = compiled(state[0], batch)
      return metrics
    seconds = timing.median_seconds(run, repeats)
  return {'step_flops': timing.xla_flops(compiled), 'step_seconds': seconds,
          'batch': [config.batch_size, config.data.frames, height, width]}


def _denoiser_parts(config):
  cfg = generator_lib.model_config(config)
  model = denoiser_lib.Denoiser(cfg)
  schedule = sched_lib.Schedule.from_config(config.diffusion)
  return cfg, model, schedule


def denoiser_step(config, repeats: int) -> dict:
  """The denoiser job's train step (`denoiser_trainer.train_step`: diffusion
  loss with its self- and frame-conditioning, Adam, EMA) on random latents
  of the training shape."""
  cfg, model, schedule = _denoiser_parts(config)
  objective = objectives.ObjectiveConfig.from_config(config.diffusion,
                                                     cfg.num_classes)
  tx = loop.make_optimizer(config.optimizer, config.total_steps)
  b = config.batch_size
  z = jax.random.normal(jax.random.key(0), (b, *cfg.latent_shape))
  params = model.init(jax.random.key(1), z[:1], jnp.zeros((1,)),
                      labels=jnp.zeros((1,), jnp.int32))['params']
  state = [state_lib.TrainState.create(params, tx, config.ema_decay > 0)]
  batch = {'latent': z, 'is_image': jnp.arange(b) < round(
      b * config.data.image_fraction),
           'label': jnp.zeros((b, cfg.latent_shape[0]), jnp.int32)}
  apply = lambda p, z, t, y, sc, cl, cm, im: model.apply(
      {'params': p}, z, t, labels=y, self_cond=sc, cond_latent=cl,
      cond_mask=cm, is_image=im)
  step = lambda s, x: denoiser_trainer.train_step(
      apply, schedule, objective, tx, 0, config.ema_decay, s, x)
  compiled = jax.jit(step, donate_argnums=(0,)).lower(state[0],
                                                      batch).compile()

  def run():
    state[0], metrics = compiled(state[0], batch)
    return metrics
  forwards = 2 if objective.self_cond_prob > 0 else 1
  return {'step_seconds': timing.median_seconds(run, repeats),
          'step_flops': models.train_flops(cfg, b, forwards=forwards),
          'xla_flops': timing.xla_flops(compiled),
          'batch': [b, *cfg.latent_shape]}


def train_step(repeats: int, cache: dict) -> Iterator[dict]:
  """The sprites jobs' steps (default configs), the tokenizer with its
  discriminator switched on, and a mid-size denoiser network (width 384,
  depth 8, 5x16x16 latent, batch 2)."""
  peak = suites._peak_flops(cache)  # pylint: disable=protected-access
  den = config_lib.load_file(DENOISER_CONFIG, 'default')
  tok_config = config_lib.load_file(TOKENIZER_CONFIG, 'default')
  gan = config_lib.load_file(TOKENIZER_CONFIG, 'default')
  with gan.unlocked():
    gan.loss.gan_start = 0
  rows = [('denoiser', f'configs/{DENOISER_CONFIG}:default',
           lambda: denoiser_step(den, repeats)),
          ('tokenizer', f'configs/{TOKENIZER_CONFIG}:default',
           lambda: tokenizer_step(tok_config, repeats)),
          ('tokenizer_gan', f'configs/{TOKENIZER_CONFIG}:default gan_start=0',
           lambda: tokenizer_step(gan, repeats))]
  for name, source, measure in rows:
    m = measure()
    yield {'suite': 'train_step', 'model': name, 'config': source,
           'batch': m['batch'], 'seconds': m['step_seconds'],
           'model_flops': m['step_flops'],
           'xla_flops': m.get('xla_flops', m['step_flops']),
           'flops_utilization': m['step_flops'] / m['step_seconds'] / peak}
  cfg = models.denoiser_config((5, 16, 16, 8), 384, 8, 6)
  runner = models.denoiser_runner(cfg, 2)
  seconds = timing.median_seconds(runner, repeats)
  flops = models.train_flops(cfg, 2)
  yield {'suite': 'train_step', 'model': 'denoiser_mid',
         'config': 'width 384, depth 8, heads 6, latent 5x16x16x8',
         'batch': [2, 5, 16, 16, 8], 'seconds': seconds,
         'model_flops': flops, 'xla_flops': timing.xla_flops(runner.compiled),
         'flops_utilization': flops / seconds / peak}


def sampler(repeats: int, cache: dict) -> Iterator[dict]:
  """The generator's 50-step DDIM loop (one jitted fori_loop) vs 50 calls
  of one jitted forward, on the sprites default denoiser (random params,
  8 samples); with guidance, the batched conditional + unconditional pass
  vs one forward of 2b and vs two forwards of b."""
  del cache
  config = config_lib.load_file(DENOISER_CONFIG, 'default')
  cfg, model, schedule = _denoiser_parts(config)
  b, steps = 8, 50
  z = jax.random.normal(jax.random.key(0), (2 * b, *cfg.latent_shape))
  params = model.init(jax.random.key(1), z[:1], jnp.zeros((1,)),
                      labels=jnp.zeros((1,), jnp.int32))['params']
  gen = generator_lib.Generator(model, params, schedule, None,
                                mesh_lib.create_mesh({'data': 1}))
  forward = jax.jit(lambda p, z, y: model.apply(
      {'params': p}, z, jnp.full((z.shape[0],), 0.5), labels=y,
      self_cond=z, is_image=jnp.zeros((z.shape[0],), bool)))
  labels = np.arange(b) % cfg.num_classes
  y2 = jnp.asarray(np.concatenate([labels, labels]), jnp.int32)
  sec = timing.interleaved_medians({
      'sample': lambda: gen.sample_latents(labels, steps=steps),
      'guided': lambda: gen.sample_latents(labels, steps=steps,
                                           guidance=3.0),
      'forward': lambda: forward(params, z[:b], y2[:b]),
      'forward_2b': lambda: forward(params, z, y2)}, repeats)
  yield {'suite': 'sampler', 'mode': 'unguided', 'steps': steps, 'batch': b,
         'seconds': sec['sample'], 'forward_seconds': sec['forward'],
         'overhead_ratio': sec['sample'] / (steps * sec['forward'])}
  yield {'suite': 'sampler', 'mode': 'guided', 'steps': steps, 'batch': b,
         'seconds': sec['guided'], 'forward_2b_seconds': sec['forward_2b'],
         'overhead_ratio': sec['guided'] / (steps * sec['forward_2b']),
         'vs_two_passes': sec['guided'] / (2 * steps * sec['forward'])}


def tokenizer(repeats: int, cache: dict) -> Iterator[dict]:
  """Encode and decode of one 17x128x128 clip with the sprites default
  tokenizer (random params): whole clip vs chunk by chunk (one latent
  frame per chunk, causal context carried); frames/s and the peak memory
  of the compiled function (the largest chunk step when chunked)."""
  del cache
  config = config_lib.load_file(TOKENIZER_CONFIG, 'default')
  model = tok.Tokenizer(tok.TokenizerConfig.from_config(config.model))
  video = jax.random.uniform(jax.random.key(0), (1, 17, 128, 128, 3),
                             minval=-1.0, maxval=1.0)
  params = model.init(jax.random.key(1), video[:, :5])['params']
  encode = jax.jit(lambda p, x: model.apply({'params': p}, x,
                                            method='encode'))
  decode = jax.jit(lambda p, z: model.apply({'params': p}, z,
                                            method='decode'))
  latent = encode(params, video)
  peaks = {'encode_whole': timing.peak_bytes(
      encode.lower(params, video).compile()),
           'decode_whole': timing.peak_bytes(
               decode.lower(params, latent).compile())}
  factor = model.config.temporal_factor
  for method, x, first_len in (('encode', video, 1), ('decode', latent, 1)):
    step_len = factor if method == 'encode' else 1
    first = tok._jit_step(model.config, method, True)  # pylint: disable=protected-access
    nxt = tok._jit_step(model.config, method, False)  # pylint: disable=protected-access
    _, state = first(params, {}, x[:, :first_len])
    peaks[f'{method}_chunked'] = max(
        timing.peak_bytes(first.lower(params, {}, x[:, :first_len])
                          .compile()),
        timing.peak_bytes(nxt.lower(params, state['cache'],
                                    x[:, first_len:first_len + step_len])
                          .compile()))
  sec = timing.interleaved_medians({
      'encode_whole': lambda: encode(params, video),
      'decode_whole': lambda: decode(params, latent),
      'encode_chunked': lambda: tok.encode_chunked(model, params, video),
      'decode_chunked': lambda: tok.decode_chunked(model, params, latent),
  }, repeats)
  for name, seconds in sec.items():
    method, mode = name.split('_')
    yield {'suite': 'tokenizer', 'method': method, 'mode': mode,
           'clip': [17, 128, 128], 'seconds': seconds,
           'frames_per_sec': 17 / seconds, 'peak_bytes': peaks[name]}
