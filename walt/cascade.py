r"""Runs a trained cascade: a base model then super-resolution stages.

    python -m walt.cascade --workdirs=BASE,SR1,SR2 \
        --caption="a red circle bouncing left and right" --out=DIR \
        [--num_samples=4] [--save_stages] [--sampler=dpmpp --steps=15] \
        [--guidance=3] [--sr_noise=0.1] [--seed=0]
    # the captions of N held-out clips, scored by the oracle (results.json)
    python -m walt.cascade --workdirs=BASE,SR1,SR2 --eval_captions=96 --out=DIR

The base stage samples from the caption (a text model) or from
`--class_label` (a class-conditional one); each SR stage takes the previous
stage's decoded videos, encodes them with its own low-resolution tokenizer
(`cascade.low_res_tokenizer` of its config) and samples its own
resolution, conditioned on the caption too when it is a text model. Writes
`sample_<i>.mp4/.gif`, a `sample.png` grid and `cascade.json` to `--out`;
with `--save_stages`, every stage's videos under `--out/stage<k>/`. Stages
run `--batch_size` samples per call, each call sampled and decoded on its
own, so memory is that of one batch at any `--num_samples`. The Python API
is `walt.inference.cascade.run_cascade` (or `Generator.sample_text` /
`Generator.super_resolve`).

The flags are checked against every stage's training config (read from its
checkpoint) before a model is built (`walt.preflight.cascade_flags`): a bad
one stops the run with one line naming the flag and the fix.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
import numpy as np

from walt.data import video_ops
from walt.evaluation import cascade_eval
from walt.evaluation import oracle
from walt import inference
from walt.inference import cascade as cascade_lib
from walt import media
from walt import preflight
from walt import storage
from walt.parallel import distributed

_WORKDIRS = flags.DEFINE_list('workdirs', None, 'Stage workdirs, base first.')
_CAPTION = flags.DEFINE_string('caption', None, 'Caption of every sample.')
_EVAL = flags.DEFINE_integer(
    'eval_captions', 0, 'N > 0: instead of --caption, the captions of the '
    'first N validation clips of the base stage\'s data set; writes '
    'results.json with caption_accuracy (the oracle class of the final '
    'videos vs the caption\'s class).')
_CLASS = flags.DEFINE_integer('class_label', None,
                              'Class of every sample (class-conditional base).')
_OUT = flags.DEFINE_string('out', None, 'Output directory.')
_NUM = flags.DEFINE_integer('num_samples', 4, 'Number of samples.')
_SAVE_STAGES = flags.DEFINE_bool('save_stages', False,
                                 "Also write every stage's videos.")
_SAMPLER = flags.DEFINE_enum('sampler', 'ddim', ['ddim', 'dpmpp'],
                             'ddim, or dpmpp (DPM-Solver++(2M)).')
_STEPS = flags.DEFINE_integer('steps', 50, 'Sampling steps per stage.')
_GUIDANCE = flags.DEFINE_float('guidance', 1.0,
                               'Guidance scale of the caption / class.')
_SR_NOISE = flags.DEFINE_float(
    'sr_noise', None, "t_sr of the SR stages' low-res latents (default: each "
    "stage's eval.sr_noise).")
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_BATCH = flags.DEFINE_integer('batch_size', 8, 'Samples per device call.')
_FPS = flags.DEFINE_integer('fps', 8, 'Frames per second of the files.')
flags.mark_flags_as_required(['workdirs', 'out'])


# The flags `preflight.cascade_flags` checks.
CHECKED_FLAGS = ('caption', 'eval_captions', 'class_label', 'sr_noise',
                 'num_samples', 'steps', 'batch_size')


def validate() -> list:
  """Every stage's training config (read from its checkpoint), once the
  flags have been checked against them; nothing is built or compiled. A
  bad flag exits with one line per problem, each naming the flag and the
  fix."""
  workdirs = list(_WORKDIRS.value)
  if not workdirs:
    sys.exit('walt.cascade: --workdirs: give the stage workdirs, base first '
             '(--workdirs=BASE,SR1,...)')
  configs, problems = [], []
  for i, workdir in enumerate(workdirs):
    config, found = preflight.denoiser_config(
        workdir, f'--workdirs: stage {i} ({workdir or "empty"})')
    configs.append(config)
    problems += found
  if all(c is not None for c in configs):
    problems += preflight.cascade_flags(
        configs, workdirs,
        {name: flags.FLAGS[name].value for name in CHECKED_FLAGS})
  if problems:
    sys.exit('\n'.join(f'walt.cascade: {p}' for p in problems))
  return configs


def main(argv):
  if len(argv) > 1:
    sys.exit(f'walt.cascade: unexpected arguments {argv[1:]}: quote a value '
             'with spaces (--caption="a red circle")')
  distributed.initialize_from_flags()
  validate()
  stages = [inference.load_denoiser(w) for w in _WORKDIRS.value]
  labels = None
  if _CLASS.value is not None:
    labels = np.full((_NUM.value,), _CLASS.value, np.int32)
  captions, num = _CAPTION.value, _NUM.value
  if _EVAL.value:
    held = cascade_eval.held_out(stages[0].data_config,
                                 stages[0].data_config.frames,
                                 stages[0].data_config.resolution, None,
                                 _EVAL.value)
    captions, num, truth = held['caption'], len(held['caption']), held['label']
  outputs = cascade_lib.run_cascade(
      stages, num, captions=captions, labels=labels,
      seed=_SEED.value, batch_size=_BATCH.value, sr_noise=_SR_NOISE.value,
      steps=_STEPS.value, sampler=_SAMPLER.value, guidance=_GUIDANCE.value)
  paths = media.save_videos(_OUT.value, 'sample',
                            video_ops.to_uint8(outputs[-1]), _FPS.value)
  if _SAVE_STAGES.value:
    for k, videos in enumerate(outputs):
      media.save_videos(storage.join(_OUT.value, f'stage{k}'), 'sample',
                        video_ops.to_uint8(videos), _FPS.value)
  storage.write_json(storage.join(_OUT.value, 'cascade.json'), {
      'workdirs': [storage.resolve(w) for w in _WORKDIRS.value],
      'caption': _CAPTION.value, 'eval_captions': _EVAL.value,
      'class_label': _CLASS.value,
      'sizes': [list(v.shape[1:4]) for v in outputs],
      'sampler': _SAMPLER.value, 'steps': _STEPS.value,
      'guidance': _GUIDANCE.value, 'sr_noise': _SR_NOISE.value,
      'seed': _SEED.value, 'files': paths})
  if _EVAL.value:
    final = stages[-1].data_config.name
    scores = oracle.score_samples(final, outputs[-1], truth)
    metrics = {k: v for k, v in scores.items() if '/' not in k}
    metrics['caption_accuracy'] = metrics.get('class_accuracy')
    metrics['stage_caption_accuracy'] = [
        oracle.score_samples(final, v, truth).get('class_accuracy')
        for v in outputs]
    storage.write_json(storage.join(_OUT.value, 'results.json'), {
        **metrics, 'metrics': metrics, 'num_samples': num,
        'protocol': {'captions': f'first {num} validation clips of '
                                 f'{stages[0].data_config.name}',
                     'sampler': _SAMPLER.value, 'steps': _STEPS.value,
                     'guidance': _GUIDANCE.value,
                     'scorer': 'oracle classifier (walt.data.sprites.classify)'
                               if scores else 'none'}})
    print(f'caption_accuracy {metrics["caption_accuracy"]} over {num} '
          f'captions (per stage: {metrics["stage_caption_accuracy"]})')
  logging.info('wrote %d cascade samples to %s', len(outputs[-1]), _OUT.value)
  print(f'wrote {len(outputs[-1])} samples of {outputs[-1].shape[1:4]} '
        f'(frames, height, width) to {_OUT.value}')


if __name__ == '__main__':
  app.run(main)
