"""The eval tasks: each samples from a `Generator` and returns
`(metrics, num_samples, protocol)` (see `eval_job`).

Features run jitted with the batch sharded over the mesh; statistics stream on
the host in float64 (`stats.FeatureStats`), so sample counts are bounded by
time, not memory.
"""

from __future__ import annotations

import functools
from typing import Iterator

import jax
import numpy as np

from walt import checkpoint as ckpt_lib
from walt import storage
from walt.data import pipeline
from walt.data import video_ops
from walt.evaluation import i3d, inception, oracle, reconstruction
from walt.evaluation import resize, stats, weights
from walt.evaluation import sprites_features
from walt.inference import generator as generator_lib
from walt.parallel import mesh as mesh_lib


# ------------------------------------------------------------ feature networks


class FeatureNet:
  """A feature network with its weights, applied batch-sharded on a mesh.

  `weights_path='random:SEED'` uses random weights: only for testing the
  protocol path (the protocol records it; the numbers mean nothing).
  """

  def __init__(self, kind: str, weights_path: str, mesh,
               resize_method: str = 'tf1', batch_size: int = 8):
    self.kind, self.mesh = kind, mesh
    module = {'i3d': i3d, 'inception': inception,
              'sprites_features': sprites_features}[kind]
    if weights_path.startswith('random:'):
      self.params = module.random_params(int(weights_path.split(':')[1]))
    else:
      self.params = weights.load(weights_path, kind, module.param_shapes())
    self.weights_path = weights_path
    self.resize_method = resize_method
    self.batch_size = batch_size
    if kind == 'i3d':
      fn = lambda p, x: (lambda f: (f, f))(
          i3d.fvd_features(p, x, resize_method))
    else:
      fn = module.features
    self._fn = jax.jit(fn)

  def protocol(self) -> dict:
    if self.kind == 'sprites_features':
      p = {'feature_network': sprites_features.NETWORK_ID,
           'resize': resize.describe('half_pixel') + ', to 32x32',
           'value_range': [-1.0, 1.0]}
    else:
      p = (i3d.protocol(self.resize_method) if self.kind == 'i3d'
           else inception.protocol())
    p['weights'] = self.weights_path
    if self.weights_path.startswith('random:'):
      p['warning'] = 'RANDOM feature weights: a protocol test, not a metric'
    return p

  def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features, logits) of `x` `[n, ...]` in [-1, 1], in chunks."""
    fn = lambda a: self._fn(self.params, a)
    return map_batches(fn, x, self.mesh, self.batch_size)


def map_batches(fn, x: np.ndarray, mesh, batch_size: int):
  """`fn` over `x` in batch-sharded chunks of `batch_size` (padded to the
  batch sharding); every process gets every output (numpy)."""
  batch_size = mesh_lib.padded_batch_size(batch_size, mesh)
  sharding = mesh_lib.batch_sharding(mesh)
  outs = []
  for i in range(0, len(x), batch_size):
    chunk = x[i:i + batch_size]
    n = len(chunk)
    with jax.set_mesh(mesh):
      y = fn(mesh_lib.put_global(mesh_lib.pad_batch(chunk, batch_size),
                                 sharding))
    outs.append(jax.tree.map(lambda a: mesh_lib.fetch(a)[:n], y))
  return jax.tree.map(lambda *a: np.concatenate(a), *outs)


# ------------------------------------------------------------ data and sampling


def real_batches(config, gen: generator_lib.Generator, split: str,
                 frames: int, batch_size: int
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Host batches of real clips (`video` `[b, frames, H, W, 3]` in [-1, 1],
  `label` `[b]`) in a fixed order, one pass; every process reads all of them
  (the scores are computed on every process from the same arrays)."""
  for batch in pipeline.eval_batches(
      config.data, batch_size=batch_size, num_examples=None, seed=config.seed,
      split=split, frames=frames, resolution=gen.data_config.resolution,
      build=config.data.build):
    yield {'video': np.asarray(batch['video'], np.float32),
           'label': np.asarray(batch['label'])[:, 0]}


def take(batches, n: int) -> dict[str, np.ndarray]:
  out: dict[str, list] = {}
  count = 0
  for b in batches:
    for k, v in b.items():
      out.setdefault(k, []).append(v)
    count += len(b['video'])
    if count >= n:
      break
  if count < n:
    raise ValueError(f'the real data holds {count} clips, {n} requested: '
                     'lower num_samples / reference.num_examples')
  return {k: np.concatenate(v)[:n] for k, v in out.items()}


def sample_kwargs(config) -> dict:
  s = config.sampler
  kwargs = {'sampler': s.get('sampler', 'ddim'), 'steps': s.steps,
            'eta': s.eta, 'guidance': s.guidance}
  for name in ('guidance_class', 'guidance_frames'):  # set: override
    scale = s.get(name)
    if scale is not None:
      kwargs[name] = float(scale)
  return kwargs


def sampler_protocol(config) -> dict:
  return {**sample_kwargs(config), 'spacing': 'trailing',
          'seed': config.seed}


def generate(config, gen, labels, seed: int, cond_latent=None,
             cond_mask=None) -> Iterator[np.ndarray]:
  """Videos `[b, T, H, W, 3]` for `labels` (or one per `cond_latent`),
  `config.batch_size` at a time."""
  n = len(labels) if labels is not None else len(cond_latent)
  kwargs = sample_kwargs(config)
  if cond_latent is not None:
    kwargs['reconstruction_weight'] = frame_conditioning(config, gen)[0]
  return gen.sample_chunks(
      labels, num_samples=None if labels is not None else n,
      batch_size=config.batch_size, seed=seed, cond_latent=cond_latent,
      cond_mask=cond_mask, **kwargs)


def frame_conditioning(config, gen) -> tuple[float, str]:
  """(reconstruction weight, protocol note) for conditioning `gen` on
  frames: its frame channels if it was trained with them, reconstruction
  guidance if `sampler.reconstruction_weight` > 0, else an error (a model
  never given frames ignores its frame channels)."""
  w = float(config.sampler.get('reconstruction_weight', 0.0))
  if w > 0:
    return w, f'reconstruction guidance, w_r = {w}'
  if gen.train_config is not None and not gen.trained_with_frames:
    raise ValueError(
        f'{config.generator_workdir} was trained without frame conditioning '
        '(diffusion.frame_cond_prob = 0): train with it (configs/walt/'
        'sprites_prediction.py), set sampler.reconstruction_weight > 0, or '
        'set cond_frames=0 / interpolate=False')
  return 0.0, 'the model\'s frame channels'


def frame_condition(gen, videos: np.ndarray, cond_frames: int, latents=None
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(normalised latents, mask `[b, t_lat]`) giving the first `cond_frames`
  frames (1 + 4k) of `videos` (`latents`: their encoding, if at hand)."""
  z = encode(gen, videos) if latents is None else latents
  given = gen.tokenizer.latent_shape(cond_frames, *videos.shape[2:4])[0]
  mask = np.zeros(z.shape[:2], np.float32)
  mask[:, :given] = 1.0
  return z, mask


def keyframe_condition(gen, videos: np.ndarray, latents=None
                       ) -> tuple[np.ndarray, np.ndarray, int]:
  """(normalised latents, mask giving the first and the last latent frame,
  the first pixel frame the last latent frame covers)."""
  z = encode(gen, videos) if latents is None else latents
  mask = np.zeros(z.shape[:2], np.float32)
  mask[:, 0] = mask[:, -1] = 1.0
  last = videos.shape[1] - gen.tokenizer.model_config.temporal_factor
  return z, mask, last


def encode(gen, videos: np.ndarray) -> np.ndarray:
  """Normalised latents of `videos`, 8 clips per call."""
  return map_batches(gen.tokenizer.encode, videos, gen.mesh, 8)


# ------------------------------------------------------------------ the tasks


def _fvd_repeats(config, net, real_stats, make_fake) -> tuple[dict, dict]:
  fvds, scores = [], []
  for r in range(config.repeats):
    fake = stats.FeatureStats(i3d.NUM_CLASSES)
    logits = []
    for videos in make_fake(r):
      f, l = net(videos[:, :config.eval_frames])
      fake.add(f)
      logits.append(l)
    fvds.append(stats.stats_frechet_distance(real_stats, fake))
    splits = min(10, fake.count)
    scores.append(stats.inception_score(np.concatenate(logits), splits)[0])
  fvd, fvd_std = stats.mean_std(fvds)
  is_mean, is_std = stats.mean_std(scores)
  metrics = {'fvd': fvd, 'fvd_std': fvd_std, 'is': is_mean, 'is_std': is_std}
  extra = {'fvd_per_repeat': fvds, 'is_per_repeat': scores}
  return metrics, extra


def _real_stats(config, net, batches, n: int) -> stats.FeatureStats:
  dim = i3d.NUM_CLASSES if net.kind == 'i3d' else inception.POOL_DIM
  if config.reference.stats:
    mu, sigma = stats.load_reference(config.reference.stats, dim)
    return stats.FeatureStats.from_moments(mu, sigma, n)
  real = stats.FeatureStats(dim)
  count = 0
  for b in batches:
    x = b['video'][:, :config.eval_frames] if net.kind == 'i3d' else \
        b['video'][:, 0]
    x = x[:n - count]  # exactly n: not the rest of the last batch
    real.add(net(x)[0])
    count += len(x)
    if count >= n:
      break
  if count < n:
    raise ValueError(f'{count} real examples for {n} requested')
  return real


def _video_protocol(config, gen, net, split) -> dict:
  return {'task': config.task, **net.protocol(),
          'frames': config.eval_frames, 'data': config.data.name,
          'split': split, 'frame_stride': 1, 'repeats': config.repeats,
          'samples_per_repeat': config.num_samples,
          'generator': config.generator_workdir, **sampler_protocol(config)}


def ucf101(config, gen, workdir, step):
  """Class-conditional FVD and IS (I3D Kinetics-400 logits): labels follow
  the real data's order, `repeats` x `num_samples` samples."""
  del workdir, step
  net = _net(config, gen.mesh, 'i3d')
  frames = gen.data_config.frames
  split = config.reference.split
  n_ref = config.reference.num_examples or config.num_samples
  batches = lambda: real_batches(config, gen, split, frames,
                                 config.batch_size)
  real = _real_stats(config, net, batches(), n_ref)
  labels = take(batches(), config.num_samples)['label']
  metrics, extra = _fvd_repeats(
      config, net, real, lambda r: generate(config, gen, labels, seed=r))
  protocol = _video_protocol(config, gen, net, split)
  protocol.update(extra, conditioning='class labels of the real clips, in order',
                  is_classifier='I3D Kinetics-400 logits')
  return metrics, config.num_samples * config.repeats, protocol


def k600_frame_prediction(config, gen, workdir, step):
  """Given `cond_frames` real frames, predict the rest; FVD of the first
  `eval_frames` frames against the real clips. Streams: one batch of real
  clips at a time (50k clips never sit in memory)."""
  del workdir, step
  net = _net(config, gen.mesh, 'i3d')
  frames = gen.data_config.frames
  split = config.reference.split
  real = stats.FeatureStats(i3d.NUM_CLASSES)
  fvds = []
  for r in range(config.repeats):
    fake = stats.FeatureStats(i3d.NUM_CLASSES)
    seen = 0
    for batch in real_batches(config, gen, split, frames, config.batch_size):
      video = batch['video'][:config.num_samples - seen]
      if r == 0:
        real.add(net(video[:, :config.eval_frames])[0])
      cond, mask = frame_condition(gen, video, config.cond_frames)
      labels = batch['label'][:len(video)] if gen.num_classes else None
      pred = gen.sample(labels, num_samples=len(video),
                        seed=r * 1_000_003 + seen, cond_latent=cond,
                        cond_mask=mask, **sample_kwargs(config))
      fake.add(net(pred[:, :config.eval_frames])[0])
      seen += len(video)
      if seen >= config.num_samples:
        break
    if seen < config.num_samples:
      raise ValueError(f'the real data holds {seen} clips, '
                       f'{config.num_samples} requested')
    fvds.append(stats.stats_frechet_distance(real, fake))
  fvd, fvd_std = stats.mean_std(fvds)
  protocol = _video_protocol(config, gen, net, split)
  protocol.update(fvd_per_repeat=fvds, cond_frames=config.cond_frames,
                  predicted_frames=config.eval_frames - config.cond_frames)
  return ({'fvd': fvd, 'fvd_std': fvd_std},
          config.num_samples * config.repeats, protocol)


def imagenet(config, gen, workdir, step):
  """Class-conditional FID and IS (InceptionV3, 10 splits); labels
  `i % num_classes`; samples optionally saved as ADM `.npz` (`arr_0`)."""
  net = _net(config, gen.mesh, 'inception')
  labels = np.arange(config.num_samples) % gen.num_classes
  split = config.reference.split
  n_ref = config.reference.num_examples or config.num_samples
  real = _real_stats(config, net, real_batches(
      config, gen, split, 1, config.batch_size), n_ref)
  fake = stats.FeatureStats(inception.POOL_DIM)
  logits, samples = [], []
  for videos in generate(config, gen, labels, seed=0):
    f, l = net(videos[:, 0])
    fake.add(f)
    logits.append(l)
    if config.save_samples:
      samples.append(video_ops.to_uint8(videos[:, 0]))
  is_mean, is_std = stats.inception_score(np.concatenate(logits),
                                          min(10, len(labels)))
  metrics = {'fid': stats.stats_frechet_distance(real, fake),
             'is': is_mean, 'is_std': is_std}
  protocol = {'task': 'imagenet', **net.protocol(), 'data': config.data.name,
              'split': split, 'reference': config.reference.stats or
              f'{n_ref} real images', 'is_splits': min(10, len(labels)),
              'conditioning': 'label i % num_classes',
              'generator': config.generator_workdir,
              **sampler_protocol(config)}
  if config.save_samples and jax.process_index() == 0:
    path = storage.join(workdir, 'eval', str(step), 'samples.npz')
    with storage.open(path, 'wb') as f:
      np.savez(f, arr_0=np.concatenate(samples), labels=labels)
    protocol['samples_npz'] = path
  return metrics, config.num_samples, protocol


def sprites(config, gen, workdir, step):
  """moving_sprites: oracle class accuracy of class-conditional samples, and
  (cond_frames > 0 / interpolate) PSNR/SSIM of predicted / interpolated
  frames with the copy-last-frame / linear-blend baselines. Nothing
  downloaded."""
  del workdir, step
  metrics, protocol = {}, {'task': 'sprites', 'data': config.data.name,
                           'generator': config.generator_workdir,
                           **sampler_protocol(config)}
  if gen.num_classes:
    labels = np.arange(config.num_samples) % gen.num_classes
    videos = np.concatenate(list(generate(config, gen, labels, seed=0)))
    metrics.update(oracle.score_samples(config.data.name, videos, labels))
    protocol['oracle'] = 'walt.data.sprites.classify (analytic)'
    if config.features.weights:
      metrics['fvd_sprites'], protocol['fvd_sprites'] = sprites_fvd(
          config, gen, videos)
  if config.cond_frames or config.interpolate:
    metrics.update(_sprites_given_frames(config, gen, protocol))
  return metrics, config.num_samples, protocol


def sprites_fvd(config, gen, videos: np.ndarray) -> tuple[float, dict]:
  """(`fvd_sprites` of `videos` against as many real `reference.split`
  clips, its protocol): a Frechet distance on the sprites network's
  features (`features.weights`), not FVD."""
  net = _net(config, gen.mesh, 'sprites_features')
  real = take(real_batches(config, gen, config.reference.split,
                           gen.data_config.frames, config.batch_size),
              len(videos))['video']
  a = stats.FeatureStats(sprites_features.FEATURE_DIM).add(net(real)[0])
  b = stats.FeatureStats(sprites_features.FEATURE_DIM).add(net(videos)[0])
  return stats.stats_frechet_distance(a, b), {
      **net.protocol(), 'reference': f'{len(videos)} real '
      f'{config.reference.split} clips', 'note': 'not FVD'}


def _sprites_given_frames(config, gen, protocol) -> dict[str, float]:
  """Frame prediction (the first `cond_frames` given) and keyframe
  interpolation (the first frame and the last latent frame's frames given)
  on real held-out clips, PSNR/SSIM of the frames not given, next to the
  copy-last-frame and linear-blend baselines."""
  _, how = frame_conditioning(config, gen)
  split = config.reference.split
  clips = take(real_batches(config, gen, split, gen.data_config.frames,
                            config.batch_size), config.num_samples)
  video = clips['video']
  labels = clips['label'] if gen.num_classes else None
  latents = encode(gen, video)  # shared by both tasks
  metrics = {}
  protocol.update(frame_conditioning=how, split=split,
                  psnr_ssim='per frame on [0, 1], SSIM 11x11 Gaussian '
                  '(sigma 1.5), averaged over frames and clips')
  if config.cond_frames:
    k = config.cond_frames
    cond, mask = frame_condition(gen, video, k, latents)
    pred = np.concatenate(list(generate(
        config, gen, labels, seed=1, cond_latent=cond, cond_mask=mask)))
    truth = video[:, k:]
    copy_last = np.repeat(video[:, k - 1:k], truth.shape[1], axis=1)
    metrics.update({f'prediction_{m}': v
                    for m, v in _psnr_ssim(truth, pred[:, k:]).items()})
    metrics.update({f'copy_last_frame_{m}': v
                    for m, v in _psnr_ssim(truth, copy_last).items()})
    protocol.update(cond_frames=k, predicted_frames=int(truth.shape[1]))
  if config.interpolate:
    cond, mask, last = keyframe_condition(gen, video, latents)
    if last < 2:
      raise ValueError(f'interpolate: clips of {video.shape[1]} frames leave '
                       'no frame between the keyframes (need >= 3 latent '
                       'frames)')
    pred = np.concatenate(list(generate(
        config, gen, labels, seed=2, cond_latent=cond, cond_mask=mask)))
    truth = video[:, 1:last]
    w = (np.arange(1, last, dtype=np.float32) / last)[None, :, None, None,
                                                        None]
    blend = (1.0 - w) * video[:, :1] + w * video[:, last:last + 1]
    metrics.update({f'interpolation_{m}': v
                    for m, v in _psnr_ssim(truth, pred[:, 1:last]).items()})
    metrics.update({f'linear_blend_{m}': v
                    for m, v in _psnr_ssim(truth, blend).items()})
    protocol.update(interpolation=(
        f'frame 0 and frames {last}..{video.shape[1] - 1} (the last latent '
        f'frame) given; frames 1..{last - 1} scored; the blend goes from '
        f'frame 0 to frame {last}'))
  return metrics


def _psnr_ssim(truth, pred) -> dict[str, float]:
  p, s = reconstruction.psnr_ssim(pred, truth)
  return {'psnr': float(np.mean(p)), 'ssim': float(np.mean(s))}


def _net(config, mesh, kind: str) -> FeatureNet:
  f = config.features
  return _feature_net(kind, f.weights, mesh, f.resize_method, f.batch_size)


@functools.lru_cache(maxsize=None)
def _feature_net(kind, weights_path, mesh, resize_method, batch_size):
  """Built (weights read, function compiled) once per job, not per
  checkpoint a polling eval job scores."""
  return FeatureNet(kind, weights_path, mesh, resize_method, batch_size)


EVALUATORS = {'ucf101': ucf101, 'k600_frame_prediction': k600_frame_prediction,
              'imagenet': imagenet, 'sprites': sprites}


class Evaluator:
  """The eval task of `config` at any checkpoint step of its generator:
  the generator is loaded once, later steps restore params into it (its
  sampling functions compile once per job)."""

  def __init__(self, config):
    self.config = config
    self.mesh = mesh_lib.create_mesh(config.mesh.to_dict())
    self.gen = None

  def generator(self, step: int) -> generator_lib.Generator:
    if self.gen is None:
      self.gen = generator_lib.Generator.load(
          self.config.generator_workdir, mesh=self.mesh, step=step)
    else:
      directory, _ = ckpt_lib.split_path(self.config.generator_workdir)
      self.gen.restore(storage.join(directory, str(step)))
    return self.gen

  def __call__(self, step: int, workdir: str):
    return EVALUATORS[self.config.task](self.config, self.generator(step),
                                        workdir, step)


def evaluate(config, step: int, workdir: str):
  """One evaluation (a fresh `Evaluator`)."""
  return Evaluator(config)(step, workdir)
