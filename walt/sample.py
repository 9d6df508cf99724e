r"""Samples videos from a trained W.A.L.T denoiser.

    python -m walt.sample --workdir=DENOISER_DIR --out=DIR [--class_label=K]
        [--num_samples=N] [--sampler=ddim|dpmpp] [--steps=50]
        [--guidance=1.0] [--guidance_class=W] [--eta=0] [--seed=S]
    # conditioned on frames (a model trained with them, or
    # --reconstruction_guidance=W_R for one trained without):
    ... --given=clip.mp4 --given_frames=5     # frame prediction
    ... --image=still.png                     # image-to-video
    ... --interpolate=first.png,last.png      # keyframe interpolation
    ... --chunks=4                            # + 4 chunks: a long video
    # a text model (SR stages run through python -m walt.cascade):
    ... --caption="a red circle bouncing left and right"

Every flag is checked against the training config saved with the
checkpoint before a model is built (`walt.preflight.sample_flags`): a bad
one stops the run with one line naming the flag and the fix.

Writes `sample_<i>.mp4` and `sample_<i>.gif` per sample, one `sample.png`
grid (a row of frames per sample) and `samples.json` (labels, settings) to
`--out`. Without `--class_label`, class-conditional models sample classes
0, 1, 2, ... in turn. `--guidance` is the classifier-free guidance scale w
(v = v_uncond + w (v_cond - v_uncond); 1 = no guidance), for every
condition; `--guidance_class` / `--guidance_frames` override it for the
class / the given frames. `--sampler=dpmpp` is DPM-Solver++(2M):
deterministic, ~15 steps instead of DDIM's 50. Inputs of any size are
centre-cropped and resized to the model's; every sample of a run gets the
same input (and its own noise). `--chunks=N` appends N clips, each
conditioned on the last `--given_frames` (5) frames so far. The Python API is
`walt.inference.Generator` (`predict`, `image_to_video`, `extend`,
`interpolate`).
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from walt.data import video_ops
from walt import inference
from walt import media
from walt import preflight
from walt import storage
from walt.parallel import distributed

_WORKDIR = flags.DEFINE_string('workdir', None, 'Denoiser workdir.')
_OUT = flags.DEFINE_string('out', None, 'Output directory.')
_CLASS = flags.DEFINE_integer('class_label', None, 'Class of every sample.')
_CAPTION = flags.DEFINE_string('caption', None, 'Caption of every sample '
                               '(text models).')
_NUM = flags.DEFINE_integer('num_samples', 8, 'Number of samples.')
_SAMPLER = flags.DEFINE_enum('sampler', 'ddim', ['ddim', 'dpmpp'],
                             'ddim, or dpmpp (DPM-Solver++(2M)).')
_STEPS = flags.DEFINE_integer('steps', 50, 'Sampling steps.')
_GUIDANCE = flags.DEFINE_float('guidance', 1.0, 'Guidance scale w.')
_GUIDANCE_CLASS = flags.DEFINE_float(
    'guidance_class', None, 'Guidance scale of the class (default: '
    '--guidance).')
_GUIDANCE_FRAMES = flags.DEFINE_float(
    'guidance_frames', None, 'Guidance scale of the given frames (default: '
    '--guidance).')
_GIVEN = flags.DEFINE_string('given', None, 'Video whose first '
                             '--given_frames frames are continued.')
_GIVEN_FRAMES = flags.DEFINE_integer(
    'given_frames', 5, 'Frames of --given to condition on, and context of '
    'each --chunks clip (1 + 4k).')
_IMAGE = flags.DEFINE_string('image', None, 'Image to start videos from.')
_INTERPOLATE = flags.DEFINE_list('interpolate', None, 'first.png,last.png: '
                                 'keyframes to interpolate between.')
_CHUNKS = flags.DEFINE_integer('chunks', 0, 'Clips appended to each video '
                               '(long video), each conditioned on the last '
                               '--given_frames frames.')
_RECONSTRUCTION = flags.DEFINE_float(
    'reconstruction_guidance', 0.0, 'w_r > 0: condition on the given frames '
    'by reconstruction guidance instead of the frame channels.')
_ETA = flags.DEFINE_float('eta', 0.0, 'DDIM eta (0: deterministic).')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'Samples per device call.')
_FPS = flags.DEFINE_integer('fps', 8, 'Frames per second of the files.')
flags.mark_flags_as_required(['workdir', 'out'])


# The flags `preflight.sample_flags` checks.
CHECKED_FLAGS = ('workdir', 'class_label', 'caption', 'num_samples', 'steps',
                 'given', 'given_frames', 'image', 'interpolate', 'chunks',
                 'reconstruction_guidance', 'batch_size')


def validate():
  """The denoiser's training config (read from its checkpoint), once every
  flag has been checked against it; nothing is built or compiled. A bad
  flag exits with one line per problem, each naming the flag and the fix."""
  config, problems = preflight.denoiser_config(_WORKDIR.value)
  if config is not None:
    problems += preflight.sample_flags(
        config, {name: flags.FLAGS[name].value for name in CHECKED_FLAGS})
  if problems:
    sys.exit('\n'.join(f'walt.sample: {p}' for p in problems))
  return config


def sample_labels(num_classes: int, num_samples: int,
                  class_label: int | None) -> np.ndarray | None:
  """`[num_samples]` int32 classes: `class_label` (checked by `validate`),
  else 0, 1, 2, ... in turn; None for a model without classes."""
  if not num_classes:
    return None
  if class_label is not None:
    return np.full((num_samples,), class_label, np.int32)
  return np.arange(num_samples, dtype=np.int32) % num_classes


def generate(gen: inference.Generator, labels, num_samples: int, *,
             steps: int, guidance: float, eta: float, seed: int,
             batch_size: int, sampler: str = 'ddim',
             guidance_class: float | None = None,
             caption: str | None = None) -> np.ndarray:
  """Videos `[n, T, H, W, 3]` in [-1, 1], `batch_size` at a time; text
  models sample `caption` (None: unconditional)."""
  text = gen.encode_captions(caption, num_samples) if caption else {}
  return gen.sample_many(labels, num_samples=num_samples if labels is None
                         else None, batch_size=batch_size, seed=seed,
                         steps=steps, eta=eta, guidance=guidance,
                         guidance_class=guidance_class, sampler=sampler,
                         **text)


def conditioned(gen: inference.Generator, labels, num_samples: int,
                **kwargs) -> tuple[np.ndarray | None, dict]:
  """Videos for the frame-conditioning flags (None when none is set) and
  what they were conditioned on (the flags checked by `validate`)."""
  tile = lambda x: np.repeat(x[None], num_samples, axis=0)
  if _GIVEN.value:
    video = media.read_video(_GIVEN.value)
    k = _GIVEN_FRAMES.value
    out = gen.predict(tile(video[:k]), labels=labels, **kwargs)
    return out, {'given': _GIVEN.value, 'given_frames': k}
  if _IMAGE.value:
    out = gen.image_to_video(tile(media.read_image(_IMAGE.value)),
                             labels=labels, **kwargs)
    return out, {'image': _IMAGE.value}
  if _INTERPOLATE.value:
    first, last = (tile(media.read_image(p)) for p in _INTERPOLATE.value)
    out = gen.interpolate(first, last, labels=labels, **kwargs)
    return out, {'interpolate': list(_INTERPOLATE.value)}
  return None, {}


def main(argv):
  if len(argv) > 1:
    sys.exit(f'walt.sample: unexpected arguments {argv[1:]}: quote a value '
             'with spaces (--caption="a red circle")')
  distributed.initialize_from_flags()
  validate()
  gen = inference.load_denoiser(_WORKDIR.value)
  labels = sample_labels(gen.num_classes, _NUM.value, _CLASS.value)
  kwargs = {'steps': _STEPS.value, 'guidance': _GUIDANCE.value,
            'eta': _ETA.value, 'seed': _SEED.value,
            'sampler': _SAMPLER.value, 'guidance_class': _GUIDANCE_CLASS.value,
            'guidance_frames': _GUIDANCE_FRAMES.value,
            'reconstruction_weight': _RECONSTRUCTION.value}
  videos, inputs = conditioned(gen, labels, _NUM.value, **kwargs)
  if videos is None:
    videos = generate(gen, labels, _NUM.value, steps=_STEPS.value,
                      guidance=_GUIDANCE.value, eta=_ETA.value,
                      seed=_SEED.value, batch_size=_BATCH.value,
                      sampler=_SAMPLER.value,
                      guidance_class=_GUIDANCE_CLASS.value,
                      caption=_CAPTION.value)
  if _CHUNKS.value:
    videos = gen.extend(videos, _CHUNKS.value, labels=labels,
                        context=_GIVEN_FRAMES.value, **kwargs)
  paths = media.save_videos(_OUT.value, 'sample',
                              video_ops.to_uint8(videos), _FPS.value)
  info = {'workdir': storage.resolve(_WORKDIR.value),
          'labels': None if labels is None else labels.tolist(),
          'caption': _CAPTION.value,
          'sampler': _SAMPLER.value, 'steps': _STEPS.value,
          'guidance': _GUIDANCE.value,
          'guidance_class': _GUIDANCE_CLASS.value,
          'guidance_frames': _GUIDANCE_FRAMES.value,
          'reconstruction_guidance': _RECONSTRUCTION.value,
          'chunks': _CHUNKS.value, 'frames': int(videos.shape[1]),
          **inputs, 'eta': _ETA.value, 'seed': _SEED.value, 'files': paths}
  storage.write_json(storage.join(_OUT.value, 'samples.json'), info)
  logging.info('wrote %d samples to %s', len(videos), _OUT.value)
  print(f'wrote {len(videos)} samples to {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
