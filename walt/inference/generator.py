"""Sampling from a trained W.A.L.T denoiser: the Python API.

    from walt import inference
    gen = inference.load_denoiser('/path/to/denoiser_workdir')
    videos = gen.sample(labels=[0, 1, 2], seed=0, steps=50)  # [3, T, H, W, 3]
    future = gen.predict(first_5_frames)          # frame prediction
    clip = gen.image_to_video(image)              # image-to-video
    long = gen.extend(clip, num_chunks=4)         # long video
    middle = gen.interpolate(first_image, last_image)

`Generator` holds the denoiser (EMA params by default), the tokenizer it was
trained with and the diffusion schedule; each (sampler, steps, eta,
guidance scales, decode, frame conditioning) combination compiles one
jitted function running the whole sampling loop (DDIM or DPM-Solver++(2M);
guidance passes batched into one forward) and the decoder, once for the
object's lifetime.
Samples are spread over all devices (batch axis on the mesh's data axes);
the CLI is `python -m walt.sample`.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from walt import checkpoint as ckpt_lib
from walt.diffusion import sampling
from walt.diffusion import schedule as sched_lib
from walt.inference import frames as frames_lib
from walt.inference import stages
from walt.inference import tokenizer as tokenizer_lib
from walt.models import denoiser as denoiser_lib
from walt.parallel import mesh as mesh_lib
from walt.parallel import sharding as sharding_lib


def latent_shape(config) -> tuple[int, int, int, int]:
  """Latent `(t, h, w, c)` of a denoiser config's `data` clips under its
  `tokenizer` compression factors (checked against the trained tokenizer
  when loaded)."""
  return stages.clip_latent_shape(config.tokenizer, config.data.frames,
                                  config.data.resolution, 'data.resolution')


low_res_latent_shape = stages.low_res_latent_shape


def model_config(config) -> denoiser_lib.DenoiserConfig:
  """The `DenoiserConfig` of a denoiser job config."""
  return denoiser_lib.DenoiserConfig.from_config(config.model,
                                                 latent_shape(config))


def check_tokenizer(tokenizer, config, expected_shape) -> None:
  got = tokenizer.latent_shape(config.data.frames, *config.data.resolution)
  if tuple(got) != tuple(expected_shape):
    raise ValueError(
        f'the tokenizer in {config.tokenizer.workdir} gives latents '
        f'{tuple(got)}, config.tokenizer factors give '
        f'{tuple(expected_shape)}: fix config.tokenizer')


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
    self.train_config = None  # the whole training config (set by `load`)
    self._low_res_tokenizer = self._text_encoder = None

  @classmethod
  def load(cls, workdir: str, mesh=None, use_ema: bool = True,
           step: int | None = None, tokenizer=None) -> 'Generator':
    """A checkpoint of a denoiser workdir (default: the latest; config read
    from it): params only, no optimizer. `data_config` keeps the training
    data's frames/resolution."""
    if step:
      workdir = f'{ckpt_lib.split_path(workdir)[0]}/{step}'
    config = ckpt_lib.read_config(workdir)
    if ('max_nonfinite_logs' not in config and 'max_bad_steps' not in config
        and config.model.get('size')):
      # Saved before explicit fields won over `size`: those configs carry
      # the default L numbers next to the size that was really used.
      config.model.update({'num_layers': 0, 'width': 0, 'num_heads': 0})
    mesh = mesh or mesh_lib.create_mesh(config.mesh.to_dict())
    rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
    cfg = model_config(config)
    model = denoiser_lib.Denoiser(cfg)
    tokenizer = tokenizer or tokenizer_lib.load_tokenizer(
        config.tokenizer.workdir, mesh)
    check_tokenizer(tokenizer, config, cfg.latent_shape)
    z = jax.ShapeDtypeStruct((1, *cfg.latent_shape), jnp.float32)
    with nn.logical_axis_rules(rules):
      abstract = jax.eval_shape(
          lambda z: model.init(jax.random.key(0), z, jnp.zeros((1,)),
                               labels=jnp.zeros((1,), jnp.int32),
                               is_image=jnp.zeros((1,), bool))['params'], z)
      target = sharding_lib.abstract_target(abstract, mesh=mesh, rules=rules)
    params, _ = ckpt_lib.restore_params(workdir, target, use_ema=use_ema)
    gen = cls(model, params, sched_lib.Schedule.from_config(config.diffusion),
              tokenizer, mesh, rules)
    gen.data_config = config.data
    gen.train_config = config
    return gen

  @property
  def num_classes(self) -> int:
    return self.config.num_classes

  @property
  def trained_with_frames(self) -> bool:
    """Whether training gave frames through the model's frame channels
    (unknown, so False, for a generator not built by `load`)."""
    c = self.train_config
    return bool(c is not None and c.diffusion.get('frame_cond_prob'))

  def with_params(self, params) -> 'Generator':
    """Replaces the params in place (e.g. by a newer training state) and
    returns this generator: its compiled functions are kept."""
    self.params = params
    return self

  def restore(self, path: str, use_ema: bool = True) -> 'Generator':
    """Params of another checkpoint of the same model (`path`: a workdir,
    its checkpoints dir or one step's dir), placed like the current ones;
    the compiled functions are kept (a polling eval job reuses them)."""
    target = jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding),
        self.params)
    self.params, _ = ckpt_lib.restore_params(path, target, use_ema=use_ema)
    return self

  def _denoise(self, params, labels, cond_latent, cond_mask, cascade=None):
    null = jnp.full_like(labels, self.num_classes) if labels is not None \
        else None
    cascade = cascade or {}

    def denoise(z, t, x0_sc, variants):
      """One forward of len(variants) x b samples -> v `[k, b, ...]`."""
      # Per variant: the condition where given, the null one where not.
      pick = lambda a, null_a, i: jnp.concatenate(
          [a if v[i] else null_a for v in variants])
      tile = lambda a: jnp.concatenate([a] * len(variants))
      lab = None if labels is None else pick(labels, null, 0)
      cl = cm = None
      if cond_latent is not None:
        cl = pick(cond_latent, jnp.zeros_like(cond_latent), 1)
        cm = pick(cond_mask, jnp.zeros_like(cond_mask), 1)
      extra = {}
      if 'low_res' in cascade:  # given in every pass
        extra = {'low_res': tile(cascade['low_res']),
                 't_sr': tile(cascade['t_sr'])}
      if 'text' in cascade:  # text is part of the content condition
        extra.update(text=tile(cascade['text']), text_mask=pick(
            cascade['text_mask'], jnp.zeros_like(cascade['text_mask']), 0))
      v = self.model.apply(
          {'params': params}, tile(z), self.schedule.time_input(tile(t)),
          labels=lab, self_cond=tile(x0_sc), cond_latent=cl, cond_mask=cm,
          **extra)
      v = v.reshape(len(variants), *z.shape)
      if cond_latent is None:
        return v
      # Given frames follow their known x0 in every pass (guidance leaves
      # them alone), so z there stays the forward-noised given latent the
      # model saw in training.
      alpha, sigma = self.schedule.alpha_sigma(t)
      known = sched_lib.v_from_x0(z, cond_latent, alpha, sigma)
      m = cond_mask[:, :, None, None, None]
      return m * known + (1.0 - m) * v
    return denoise

  def _fn(self, sampler: str, steps: int, eta: float,
          guidance: sampling.Guidance, decode: bool, frame_cond: bool,
          reconstruction_weight: float = 0.0):
    key = (sampler, steps, eta, guidance, decode, frame_cond,
           reconstruction_weight)
    if key not in self._compiled:
      def run(params, tok_params, noise, rng, labels, cond_latent, cond_mask,
              cascade=None):
        rec = None
        if reconstruction_weight:  # frames reach the sampler, not the model
          rec = sampling.Reconstruction(reconstruction_weight, cond_latent,
                                        cond_mask)
          denoise = self._denoise(params, labels, None, None, cascade)
        else:
          denoise = self._denoise(params, labels, cond_latent, cond_mask,
                                  cascade)
        z = sampling.sample(
            sampler, denoise, noise, rng, self.schedule, steps, eta,
            guidance, self_condition=self.config.self_conditioning,
            frames=frame_cond and rec is None, reconstruction=rec)
        if frame_cond:  # given frames are kept exactly
          m = cond_mask[:, :, None, None, None]
          z = m * cond_latent + (1 - m) * z
        if not decode:
          return z
        return self.tokenizer.decode_with(tok_params, z)
      self._compiled[key] = jax.jit(run)
    return self._compiled[key]

  def latent_sampler(self, sampler: str, steps: int, eta: float = 0.0,
                     guidance: 'float | sampling.Guidance' = 1.0):
    """The jitted class-conditional sampling function `run(params, None,
    noise, rng, labels, None, None) -> latents` that `sample_latents` calls
    (no frames, no decoding): what `walt.tools.aot` compiles."""
    return self._fn(sampler, steps, eta, sampling.Guidance.of(guidance),
                    decode=False, frame_cond=False)

  @property
  def num_compiled(self) -> int:
    """Sampling functions compiled so far (one per distinct setting)."""
    return len(self._compiled)

  def sample_latents(self, labels: Sequence[int] | None = None, *,
                     num_samples: int | None = None, seed: int = 0,
                     steps: int = 50, eta: float = 0.0,
                     guidance: float = 1.0,
                     guidance_class: float | None = None,
                     guidance_frames: float | None = None,
                     sampler: str = 'ddim', frames: int | None = None,
                     cond_latent=None, cond_mask=None,
                     reconstruction_weight: float = 0.0,
                     decode: bool = False, low_res=None, t_sr: float = 0.0,
                     text=None, text_mask=None) -> np.ndarray:
    """Normalised latents `[n, t, h, w, c]` (or videos if `decode`).

    labels: one class per sample (class-conditional models); `num_samples`
      otherwise. cond_latent/cond_mask: frame conditioning (`[n, t, h, w, c]`
      normalised latents, `[n, t]` 1 = given), through the model's frame
      channels, or with `reconstruction_weight` w_r > 0 through
      reconstruction guidance only (for models trained without frames).
      guidance: the scale of every condition; `guidance_class` /
      `guidance_frames` override it per condition (`sampling.Guidance`).
      sampler: 'ddim' or 'dpmpp' (DPM-Solver++(2M), deterministic: `eta`
      unused).
      low_res, t_sr: SR stages: the low-resolution stage's normalised latents
      `[n, t, h / f, w / f, c']` and their noise-augmentation level in [0, 1)
      (t_sr > 0: the latent is first noised to that level, as in training;
      it is given to every guidance pass).
      text, text_mask: text models: token embeddings `[n, k, text_dim]` and
      bool `[n, k]` (guidance on the class scale: the unconditional pass
      masks every token).
    """
    if sampler not in sampling.SAMPLERS:
      raise ValueError(f'sampler={sampler!r}: one of {sampling.SAMPLERS}')
    if reconstruction_weight < 0 or (reconstruction_weight
                                     and cond_latent is None):
      raise ValueError('reconstruction_weight needs given frames and must '
                       'be >= 0')
    if (cond_latent is not None and not reconstruction_weight
        and not self.config.frame_conditioning):
      raise ValueError('this model has no frame-conditioning input: pass '
                       'reconstruction_weight > 0 to condition on frames')
    scales = sampling.Guidance(
        float(guidance if guidance_class is None else guidance_class),
        float(guidance if guidance_frames is None else guidance_frames))
    if labels is not None:
      labels = np.asarray(labels, np.int32).reshape(-1)
      if self.num_classes == 0:
        raise ValueError('this model is not class-conditional')
      if np.any(labels < 0) or np.any(labels > self.num_classes):
        raise ValueError(f'labels must be in [0, {self.num_classes}] '
                         f'({self.num_classes} = null class)')
      n = len(labels)
    else:
      if num_samples is None and text is None and low_res is None:
        raise ValueError('give labels, text, low_res or num_samples')
      n = num_samples or len(text if text is not None else low_res)
      if self.num_classes:
        labels = np.full((n,), self.num_classes, np.int32)  # unconditional
    cascade = self._cascade_inputs(n, low_res, t_sr, text, text_mask)
    if cascade is not None and 'low_res' in cascade and t_sr > 0:
      cascade.update(self._augment_low_res(cascade['low_res'], t_sr, seed))
    t, h, w, c = self.config.latent_shape
    t = frames or t
    padded = mesh_lib.padded_batch_size(n, self.mesh, self.rules)
    rng = jax.random.key(seed)
    noise = np.asarray(jax.random.normal(jax.random.fold_in(rng, 0),
                                         (padded, t, h, w, c)))
    frame_cond = cond_latent is not None
    if frame_cond:
      cond_latent = np.asarray(cond_latent, np.float32)[:, :t]
      cond_mask = np.asarray(cond_mask, np.float32)[:, :t]
    sharding = mesh_lib.batch_sharding(self.mesh, self.rules)
    put = lambda a: None if a is None else mesh_lib.put_global(
        mesh_lib.pad_batch(a, padded), sharding)
    fn = self._fn(sampler, steps, float(eta), scales, decode, frame_cond,
                  float(reconstruction_weight))
    with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
      out = fn(self.params, self.tokenizer.params if decode else None,
               put(noise), jax.random.fold_in(rng, 1),
               put(labels), put(cond_latent), put(cond_mask),
               None if cascade is None else jax.tree.map(put, cascade))
    return mesh_lib.fetch(out)[:n]

  def _augment_low_res(self, low_res: np.ndarray, t_sr: float, seed: int
                       ) -> dict:
    """The low-res latent noised to step round(t_sr T) of the schedule, as
    in training (noise-conditioning augmentation), and that step's t_sr."""
    step = jnp.full((len(low_res),), int(round(t_sr * self.schedule.num_steps)))
    alpha, sigma = self.schedule.alpha_sigma(step)
    eps = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 2),
                            low_res.shape)
    return {'low_res': np.asarray(sched_lib.add_noise(
                jnp.asarray(low_res), eps, alpha, sigma)),
            't_sr': np.asarray(self.schedule.time_input(step))}

  def _cascade_inputs(self, n: int, low_res, t_sr, text, text_mask
                      ) -> dict | None:
    """Checked SR / text inputs of `n` samples for the sampling function."""
    cfg = self.config
    out = {}
    if (low_res is None) != (not cfg.low_res_channels):
      raise ValueError('an SR stage needs low_res latents; other models '
                       'take none' if cfg.low_res_channels else
                       'this model takes no low_res input')
    if low_res is not None:
      t, h, w, _ = cfg.latent_shape
      f = cfg.sr_factor
      want = (n, t, h // f, w // f, cfg.low_res_channels)
      low_res = np.asarray(low_res, np.float32)
      if low_res.shape != want:
        raise ValueError(f'low_res latents {low_res.shape}, expected {want}')
      if not 0.0 <= t_sr < 1.0:
        raise ValueError(f't_sr={t_sr} not in [0, 1)')
      out.update(low_res=low_res, t_sr=np.full((n,), t_sr, np.float32))
    if text is not None:
      if not cfg.text_dim:
        raise ValueError('this model takes no text')
      text = np.asarray(text, np.float32)
      if text.ndim != 3 or text.shape[0] != n or text.shape[2] != cfg.text_dim:
        raise ValueError(f'text embeddings {text.shape}, expected [{n}, k, '
                         f'{cfg.text_dim}]')
      mask = (np.ones(text.shape[:2], bool) if text_mask is None
              else np.asarray(text_mask, bool))
      out.update(text=text, text_mask=mask)
    elif cfg.text_dim:  # no text: every token masked (unconditional)
      out.update(text=np.zeros((n, 1, cfg.text_dim), np.float32),
                 text_mask=np.zeros((n, 1), bool))
    return out or None

  def sample(self, labels: Sequence[int] | None = None, **kwargs
             ) -> np.ndarray:
    """Videos float32 `[n, T, H, W, 3]` in [-1, 1] (see `sample_latents`)."""
    return self.sample_latents(labels, decode=True, **kwargs)

  def sample_chunks(self, labels: Sequence[int] | None = None, *,
                    num_samples: int | None = None, batch_size: int,
                    seed: int = 0, cond_latent=None, cond_mask=None,
                    low_res=None, text=None, text_mask=None,
                    **kwargs) -> Iterator[np.ndarray]:
    """`sample` over many samples, `batch_size` per call (one compiled
    shape): yields videos `[<= batch_size, T, H, W, 3]` in order. Chunk i
    uses seed `seed * 1_000_003 + i` (distinct across nearby seeds).
    Per-sample inputs (labels, frames, low_res, text) are sliced."""
    per_sample = {'cond_latent': cond_latent, 'cond_mask': cond_mask,
                  'low_res': low_res, 'text': text, 'text_mask': text_mask}
    given = [a for a in (labels, low_res, text) if a is not None]
    n = len(given[0]) if given else num_samples
    if n is None:
      raise ValueError('give labels, low_res, text or num_samples')
    labels = None if labels is None else np.asarray(labels)
    batch_size = min(batch_size, n)
    for i in range(0, n, batch_size):
      m = min(batch_size, n - i)
      # The last chunk is padded to `batch_size`: no second compilation.
      part = lambda a: None if a is None else mesh_lib.pad_batch(
          np.asarray(a)[i:i + m], batch_size)
      yield self.sample(
          part(labels), num_samples=None if labels is not None else batch_size,
          seed=seed * 1_000_003 + i,
          **{k: part(v) for k, v in per_sample.items()}, **kwargs)[:m]

  def sample_many(self, labels=None, **kwargs) -> np.ndarray:
    """All of `sample_chunks`, concatenated `[n, T, H, W, 3]`."""
    return np.concatenate(list(self.sample_chunks(labels, **kwargs)))

  # -------------------------------------------------------------- pixel API
  @property
  def clip_shape(self) -> tuple[int, int, int]:
    """Pixel `(frames, height, width)` of one sample."""
    t, h, w, _ = self.config.latent_shape
    m = self.tokenizer.model_config
    return (1 + (t - 1) * m.temporal_factor, h * m.spatial_factor,
            w * m.spatial_factor)

  def _labels_for(self, labels, n: int):
    if labels is None:
      return None
    labels = np.asarray(labels, np.int32).reshape(-1)
    if len(labels) == 1:
      labels = np.repeat(labels, n)
    if len(labels) != n:
      raise ValueError(f'{len(labels)} labels for {n} inputs')
    return labels

  def _sample_given(self, given, cond_latent, labels, **kwargs):
    """Videos sampled with the latent frames `given` `[n, t]` (1/0) taken
    from `cond_latent` `[n, t, h, w, c]` (a writable numpy array)."""
    n = len(given)
    labels = self._labels_for(labels, n)
    return np.array(self.sample(
        labels, num_samples=None if labels is not None else n,
        cond_latent=cond_latent * given[:, :, None, None, None],
        cond_mask=given, **kwargs))

  def predict(self, frames, num_frames: int | None = None, labels=None,
              **kwargs) -> np.ndarray:
    """Continues `frames` (`[n, k, H, W, 3]`, uint8 or [-1, 1] floats, any
    size: centre-cropped and resized; k = 1 + 4j) to videos `[n,
    num_frames, H, W, 3]` in [-1, 1] whose first k frames are `frames`.
    `num_frames` beyond one clip chains clips with `extend`; `kwargs` as
    `sample_latents` (seed, steps, sampler, guidance_frames, ...)."""
    t_clip, height, width = self.clip_shape
    video = frames_lib.to_model_frames(frames, (height, width))
    n, k = video.shape[:2]
    j = frames_lib.given_latent_frames(
        k, self.tokenizer.model_config.temporal_factor, t_clip)
    # Causal: the k frames encoded alone are the first j latent frames.
    z = np.zeros((n, *self.config.latent_shape), np.float32)
    z[:, :j] = np.asarray(self.tokenizer.encode(video))
    given = np.zeros(z.shape[:2], np.float32)
    given[:, :j] = 1.0
    out = self._sample_given(given, z, labels, **kwargs)
    out[:, :k] = video
    num_frames = num_frames or t_clip
    if num_frames > t_clip:
      chunks = -(-(num_frames - t_clip) // (t_clip - k))
      out = self.extend(out, chunks, labels, context=k, **kwargs)
    return out[:, :num_frames]

  def image_to_video(self, image, labels=None, **kwargs) -> np.ndarray:
    """Videos `[n, T, H, W, 3]` starting at `image` (`[H, W, 3]` or
    `[n, H, W, 3]`); see `predict`."""
    _, height, width = self.clip_shape
    return self.predict(frames_lib.images_to_frames(image, (height, width)),
                        labels=labels, **kwargs)

  def extend(self, video, num_chunks: int, labels=None, context: int = 5,
             seed: int = 0, **kwargs) -> np.ndarray:
    """Long video: `video` `[n, T0, H, W, 3]` followed by `num_chunks` clips,
    each conditioned on the last `context` frames so far (re-encoded alone
    by the causal encoder) and adding T - context new frames. Each clip is
    sampled and decoded on its own: memory is that of one clip at any
    length; only the pixels accumulate (on the host)."""
    t_clip, height, width = self.clip_shape
    video = frames_lib.to_model_frames(video, (height, width), 'video')
    if num_chunks < 0 or video.shape[1] < context:
      raise ValueError(f'extend needs num_chunks >= 0 and >= {context} '
                       f'frames, got {num_chunks} and {video.shape[1]}')
    parts, last = [video], video
    for i in range(num_chunks):
      # Chunk seeds differ from the seed of a clip sampled with `seed`.
      last = self.predict(last[:, -context:], labels=labels,
                          seed=seed * 1_000_003 + i + 1, **kwargs)
      parts.append(last[:, context:])
    return np.concatenate(parts, axis=1)

  def interpolate(self, first, last, labels=None, **kwargs) -> np.ndarray:
    """Videos `[n, T, H, W, 3]` from keyframe `first` to `last` (images
    `[H, W, 3]` or `[n, H, W, 3]`). The model is given the first latent
    frame and the last one, which covers the clip's last 4 frames: `last`
    is held over them (training gives that group from a real clip)."""
    t_clip, height, width = self.clip_shape
    f = self.tokenizer.model_config.temporal_factor
    a = frames_lib.images_to_frames(first, (height, width), 'first')
    b = frames_lib.images_to_frames(last, (height, width), 'last')
    if len(a) != len(b):
      raise ValueError(f'{len(a)} first and {len(b)} last keyframes')
    # The clip the keyframe latents are encoded from: first, a blend, then
    # `last` held over the last latent frame's pixel frames.
    w = np.linspace(0.0, 1.0, t_clip - f + 1, dtype=np.float32)[
        1:-1, None, None, None]
    clip = np.concatenate([a, (1.0 - w) * a + w * b,
                           np.repeat(b, f, axis=1)], axis=1)
    z = np.asarray(self.tokenizer.encode(clip))
    given = np.zeros(z.shape[:2], np.float32)
    given[:, 0] = given[:, -1] = 1.0
    out = self._sample_given(given, z, labels, **kwargs)
    out[:, :1] = a
    out[:, t_clip - f:] = b
    return out

  # ---------------------------------------------------------- cascade API
  def _stage_config(self, what: str):
    if self.train_config is None or 'cascade' not in self.train_config:
      raise ValueError(f'{what} needs the training config: load the '
                       'generator with Generator.load(workdir)')
    return self.train_config

  @property
  def text_encoder(self):
    """The text model's encoder (`cascade.text_encoder` of its config)."""
    if not self.config.text_dim:
      raise ValueError('this model takes no text')
    if self._text_encoder is None:
      self._text_encoder = stages.load_text_encoder(
          self._stage_config('text'))
    return self._text_encoder

  @property
  def low_res_tokenizer(self):
    """An SR stage's low-resolution tokenizer."""
    if not self.config.low_res_channels:
      raise ValueError('this model is not a super-resolution stage')
    if self._low_res_tokenizer is None:
      self._low_res_tokenizer = stages.load_low_res_tokenizer(
          self._stage_config('super-resolution'), self.mesh)
    return self._low_res_tokenizer

  @property
  def low_res_clip_shape(self) -> tuple[int, int, int]:
    """Pixel `(frames, height, width)` an SR stage takes."""
    c = self._stage_config('super-resolution')
    return (self.clip_shape[0], *c.cascade.low_res_resolution)

  def encode_captions(self, captions, n: int | None = None) -> dict:
    """`{text, text_mask}` of captions (one string is repeated to n)."""
    if captions is None:
      return {}
    captions = [captions] if isinstance(captions, str) else list(captions)
    if n is not None and len(captions) == 1:
      captions = captions * n
    if n is not None and len(captions) != n:
      raise ValueError(f'{len(captions)} captions for {n} samples')
    text, mask = self.text_encoder(captions)
    return {'text': text, 'text_mask': mask}

  def sample_text(self, captions, **kwargs) -> np.ndarray:
    """Videos `[n, T, H, W, 3]` in [-1, 1] of a text model, one per caption
    (`kwargs` as `sample_latents`: seed, steps, guidance, ...)."""
    return self.sample(**self.encode_captions(captions), **kwargs)

  def super_resolve(self, videos, captions=None, t_sr: float | None = None,
                    **kwargs) -> np.ndarray:
    """An SR stage: low-resolution videos `[n, T, h, w, 3]` (uint8 or [-1,
    1]; exactly `low_res_clip_shape`) -> videos `[n, T, H, W, 3]` in
    [-1, 1] at this stage's size. `t_sr`: the noise-augmentation level of
    the low-res latent (default: the config's `eval.sr_noise`); captions
    for a text SR stage."""
    videos = np.asarray(videos)
    if videos.dtype == np.uint8:
      videos = videos.astype(np.float32) / 127.5 - 1.0
    want = self.low_res_clip_shape
    if videos.ndim != 5 or tuple(videos.shape[1:4]) != want:
      raise ValueError(f'low-res videos {videos.shape}: expected [n, '
                       f'{want[0]}, {want[1]}, {want[2]}, 3]')
    if t_sr is None:
      t_sr = float(self.train_config.eval.get('sr_noise', 0.0))
    low = np.asarray(self.low_res_tokenizer.encode(videos.astype(np.float32)))
    extra = self.encode_captions(captions, len(videos)) \
        if self.config.text_dim else {}
    return self.sample(low_res=low, t_sr=t_sr, **extra, **kwargs)


def load_denoiser(workdir: str, mesh=None, use_ema: bool = True,
                  step: int | None = None) -> Generator:
  """`Generator.load`: params only, no optimizer, trainer or data."""
  return Generator.load(workdir, mesh, use_ema, step)
