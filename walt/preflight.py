"""Preflight: every input a job reads, checked before it builds, compiles or
waits.

`walt.main` runs `check(config, workdir, mode)` right after config
validation. It collects *every* missing input of the job, not just the first,
and raises one `MissingInputs` error listing each: the config field, the file
or directory expected at which path, and the command that makes it or where
to get it. The messages are the loaders' own where a loader has one
(`weights.load`, `perceptual.load`, `read_latent_stats`,
`pipeline.data_source`, `LatentCacheSource`), so a job says the same thing
here as it would when it reached the file.

What each job reads (`missing_inputs`):
  data       the data set split, unless it is generated and `data.build`
  tokenizer  train: the data split, the eval split (when evaluating or
             writing summaries), the perceptual weights file (when set and
             `loss.perceptual_weight > 0`), `resume` / `init_from`;
             eval, latent_stats: a checkpoint in the workdir
  walt       the tokenizer workdir (a checkpoint and `latent_stats.json`);
             train: the latent cache when `latents.cache` is set, else the
             data split, the validation split when eval scores
             reconstructions, `resume` / `init_from`; eval: a checkpoint in
             the workdir; cache_latents: the data split
  eval       the task's feature-network weights (`features.weights`),
             `reference.stats`, the `reference.split` data the task reads,
             the generator workdir's checkpoint (unless `poll_seconds > 0`:
             then the job waits for it) and the generator's tokenizer

The sampling CLIs (`walt.sample`, `walt.cascade`) check their flags the same
way, against the training config saved with each checkpoint
(`denoiser_config`, `sample_flags`, `cascade_flags`): each problem is one
line that names the flag and the fix, found before a model is built.
"""

from __future__ import annotations

import contextlib
import dataclasses

from absl import logging
import ml_collections

from walt import checkpoint as ckpt_lib
from walt import storage

# config.job -> its modes (`--mode`); the first is what `train` means.
MODES = {
    'data': ('train',),
    'eval': ('eval', 'train'),
    'tokenizer': ('train', 'eval', 'latent_stats'),
    'walt': ('train', 'eval', 'cache_latents'),
}
# Data set family -> the configs/tokenizer/ and configs/walt/ file for it.
CONFIG_FAMILIES = {'moving_sprites': 'sprites', 'ucf101': 'ucf101',
                   'kinetics600': 'k600', 'imagenet_folder': 'imagenet'}
# Each eval task's feature network (`features.weights`); sprites' is optional.
TASK_NETWORKS = {'ucf101': 'i3d', 'k600_frame_prediction': 'i3d',
                 'imagenet': 'inception', 'sprites': 'sprites_features'}
ADM_REFERENCE = (
    'an ADM reference batch (`mu`, `sigma`; for ImageNet 256: https://'
    'openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/'
    'imagenet/256/VIRTUAL_imagenet256_labeled.npz, see openai/'
    'guided-diffusion evaluations/README.md) or pytorch-fid statistics; or '
    'set --config.reference.stats= to compute the statistics from the real '
    '`reference.split` data')


class MissingInputs(FileNotFoundError):
  """Every input a job lacks; `problems` lists them (`field: message`)."""

  def __init__(self, job: str, mode: str, problems: list[str]):
    self.problems = problems
    lines = '\n'.join(f'  - {p}' for p in problems)
    how = '' if mode == 'train' else f' (--mode={mode})'
    super().__init__(
        f'the {job} job{how} cannot start: {len(problems)} missing '
        f'input{"s" if len(problems) > 1 else ""}:\n{lines}')


def check(config, workdir: str, mode: str = 'train') -> None:
  """Raises `ValueError` for an unknown mode, `MissingInputs` listing every
  missing input; returns in a fraction of a second (nothing is loaded)."""
  job = config.job
  if job in MODES and mode not in MODES[job]:
    raise ValueError(f'--mode={mode}: the {job} job has modes '
                     f'{", ".join(MODES[job])}')
  problems = missing_inputs(config, workdir, mode)
  if problems:
    raise MissingInputs(job, mode, problems)


def missing_inputs(config, workdir: str, mode: str = 'train') -> list[str]:
  """`field: message` for each input of `config.job` in `mode` that is
  missing (see the module docstring), without loading anything."""
  fn = {'data': _data_job, 'tokenizer': _tokenizer_job, 'walt': _walt_job,
        'eval': _eval_job}.get(config.job)
  problems = fn(config, workdir, mode) if fn else []
  return list(dict.fromkeys(problems))  # one line per input


# ------------------------------------------------------------------ the jobs


def _data_job(config, workdir, mode):
  del workdir, mode
  return dataset(config.data, config.data.split)


def _tokenizer_job(config, workdir, mode):
  if mode != 'train':
    split = config.eval.split if mode == 'eval' else 'train'
    return (own_checkpoint(workdir, mode, 'tokenizer') +
            dataset(config.data, split))
  problems = dataset(config.data, config.data.split)
  if config.eval_every or config.summary_every:
    problems += dataset(config.data, config.eval.split, 'eval.split')
  if config.latent_stats.num_examples:
    problems += dataset(config.data, 'train', 'latent_stats')
  loss = config.loss
  if loss.perceptual_weight > 0 and loss.perceptual_weights:
    from walt.models import perceptual  # pylint: disable=g-import-not-at-top
    problems += _missing_file(
        'loss.perceptual_weights', loss.perceptual_weights, perceptual.load,
        fix=' (python -m walt.models.perceptual --torch=resnet50-0676ba61.pth'
        f' --out={loss.perceptual_weights})')
  return problems + start_points(config, workdir)


def _walt_job(config, workdir, mode):
  problems = tokenizer_workdir(config.tokenizer.workdir, 'tokenizer.workdir',
                               config.data.name)
  scores_reconstructions = (config.model.num_classes and
                            config.eval.reference_examples and
                            (mode == 'eval' or config.eval_every))
  if mode == 'eval':
    problems = own_checkpoint(workdir, mode, 'walt') + problems
  elif mode == 'cache_latents':
    if not config.latents.cache:
      problems.append('latents.cache: set --config.latents.cache=DIR, where '
                      '--mode=cache_latents writes the latents')
    problems += dataset(config.data, config.data.split)
  elif config.latents.cache:
    from walt.data import latent_cache  # pylint: disable=g-import-not-at-top
    problems += _missing_file(
        'latents.cache', storage.join(config.latents.cache,
                                      latent_cache.METADATA),
        lambda _: latent_cache.LatentCacheSource(config.latents.cache))
  else:
    problems += dataset(config.data, config.data.split)
  if scores_reconstructions:
    problems += dataset(config.data, 'validation', 'eval.reference_examples')
  if mode == 'train':
    problems += start_points(config, workdir)
  return problems


def _eval_job(config, workdir, mode):
  del workdir, mode
  from walt.evaluation import eval_job  # pylint: disable=g-import-not-at-top
  problems = []
  network = TASK_NETWORKS.get(config.task)
  weights_path = config.features.weights
  if network and (weights_path or config.task != 'sprites'):
    problems += feature_weights(weights_path, network)
  stats_path = config.reference.stats
  if stats_path and not storage.exists(stats_path):
    problems.append(f'reference.stats: reference statistics not found at '
                    f'{stats_path}; get {ADM_REFERENCE}')
  if _eval_reads_data(config):
    problems += dataset(config.data, config.reference.split,
                        'reference.split')
  generator = config.generator_workdir
  steps = eval_job.checkpoint_steps(generator) if generator else None
  if steps == [] and not config.poll_seconds:
    problems.append('generator_workdir: ' +
                    str(eval_job.no_checkpoint_error(generator)))
  elif (steps and config.step and config.step not in steps
        and not config.poll_seconds):
    problems.append(f'step: no checkpoint at step {config.step} in '
                    f'{generator}: {steps}')
  if steps:
    try:
      trained = ckpt_lib.read_config(generator)
      tokenizer = trained.tokenizer.workdir
    except Exception:  # pylint: disable=broad-except
      tokenizer = None  # an unreadable config: Generator.load will say so
    if tokenizer is not None:
      problems += tokenizer_workdir(
          tokenizer, f'the tokenizer of {generator}', trained.data.name)
  return problems


def _eval_reads_data(config) -> bool:
  """Whether the eval task reads real clips (`reference.split`)."""
  if config.task == 'imagenet':
    return not config.reference.stats
  if config.task == 'sprites':
    return bool(config.cond_frames or config.interpolate or
                config.features.weights)
  return True


# ------------------------------------------------------------- the inputs


def dataset(data, split: str, field: str = 'data') -> list[str]:
  """`split` of the tfds data set `data.name` in `data.data_dir`: missing
  unless prepared, or generated and `data.build` (then the job builds it)."""
  from walt.data import pipeline  # pylint: disable=g-import-not-at-top
  from walt.data import registry  # pylint: disable=g-import-not-at-top
  spec = pipeline.DataSpec.from_config(data, split=split)
  where = f'{field} ({spec.name}, split {split!r})'
  try:
    storage.require_local(spec.data_dir, 'data.data_dir')
  except ValueError as e:
    return [str(e)]
  try:
    builder = registry.builder(spec.name, spec.data_dir)
  except ValueError as e:  # unknown name, config or version
    return [f'data.name={spec.name!r}: {str(e).splitlines()[0]} (walt '
            f'builds {", ".join(sorted(registry.BUILDER_MODULES))})']
  manual = bool(getattr(builder, 'MANUAL_DOWNLOAD_INSTRUCTIONS', None))
  if spec.build and not manual:
    return []  # generated on first use
  try:
    pipeline.data_source(dataclasses.replace(spec, build=False))
  except FileNotFoundError as e:
    hint = (' --manual_dir=YOUR_COPY (walt cannot download it: '
            'walt/data/real_videos.py describes where to get it and the '
            'layout)') if manual else ''
    return [f'{where}: {e}{hint}']
  except ValueError as e:  # unknown split
    return [f'{where}: {e}']
  return []


def feature_weights(path: str, network: str) -> list[str]:
  """A feature network's converted `.npz` (`random:SEED`: none needed)."""
  from walt.evaluation import weights  # pylint: disable=g-import-not-at-top
  if path.startswith('random:'):
    return []
  return _missing_file('features.weights', storage.resolve(path),
                       lambda p: weights.load(p, network, None))


def tokenizer_workdir(workdir: str, field: str, data_name: str = ''
                      ) -> list[str]:
  """A trained tokenizer: a checkpoint and `latent_stats.json`."""
  from walt.inference import tokenizer as tokenizer_lib  # pylint: disable=g-import-not-at-top
  config = CONFIG_FAMILIES.get(data_name.split('/')[0], '<name>')
  command = (f'python -m walt.main --config=configs/tokenizer/{config}.py'
             f'[:variant] --workdir={workdir or "DIR"}')
  if data_name:
    command += f', the variant for {data_name}'
  if not workdir:
    return [f'{field}: set --config.tokenizer.workdir=DIR, a trained '
            f'tokenizer (train one with {command})']
  if not has_checkpoint(workdir):
    return [f'{field}: no tokenizer checkpoint under {workdir}: train one '
            f'with {command} (it writes {tokenizer_lib.LATENT_STATS} at the '
            'end)']
  return _missing_file(field, storage.join(workdir, tokenizer_lib.LATENT_STATS),
                       lambda _: tokenizer_lib.read_latent_stats(workdir))


def own_checkpoint(workdir: str, mode: str, job: str) -> list[str]:
  """The checkpoint a non-training mode restores from the job's workdir."""
  if has_checkpoint(workdir):
    return []
  return [f'--workdir: --mode={mode} restores the latest checkpoint of '
          f'{workdir}, which has none: train there first (python -m '
          f'walt.main --config=<the {job} config> --workdir={workdir})']


def start_points(config, workdir: str) -> list[str]:
  """`resume` / `init_from` checkpoints, read when the workdir has none."""
  problems = []
  if has_checkpoint(workdir):
    return problems
  for field in ('resume', 'init_from'):
    path = config.get(field)
    if path and not has_checkpoint(path):
      problems.append(f'{field}: no checkpoint at {path} (a run\'s workdir, '
                      'its checkpoints directory or one step\'s directory)')
  return problems


def has_checkpoint(path: str) -> bool:
  """`path` (a workdir, its `checkpoints`, or one step's directory) holds a
  finished checkpoint."""
  from walt.evaluation import eval_job  # pylint: disable=g-import-not-at-top
  _, step = ckpt_lib.split_path(path)
  steps = eval_job.checkpoint_steps(path)
  return step in steps if step is not None else bool(steps)


def _missing_file(field: str, path: str, loader, fix: str = '') -> list[str]:
  """[] if `path` exists, else `[field: the message of loader(path)]`: the
  loader's own FileNotFoundError, raised before it reads anything."""
  if path and storage.exists(path):
    return []
  try:
    loader(path)
  except FileNotFoundError as e:
    return [f'{field}: {e}{fix}']
  return [f'{field}: {path or "(no path given)"} is missing']


# ---------------------------------------------------------- the sampling CLIs


@contextlib.contextmanager
def _quiet_info_logs():
  """absl INFO records held back (Orbax logs every checkpoint directory it
  opens), so that a problem found meanwhile is the one line on stderr."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.WARNING)
  try:
    yield
  finally:
    logging.set_verbosity(verbosity)


def denoiser_config(workdir: str | None, where: str | None = None
                    ) -> tuple[object | None, list[str]]:
  """(the training config saved with the latest checkpoint of a denoiser
  `workdir`, or None; problems, each starting with `where`, default
  `--workdir=WORKDIR`): the workdir holds a W.A.L.T checkpoint and the
  tokenizers its samples are decoded with. Reads JSON only."""
  with _quiet_info_logs():
    return _denoiser_config(workdir, where or f'--workdir={workdir}')


def _denoiser_config(workdir, where):
  if not workdir:
    return None, [f'{where}: give a trained denoiser\'s workdir']
  if not has_checkpoint(workdir):
    return None, [f'{where}: no checkpoint there: give a trained denoiser\'s '
                  'workdir (train one with python -m walt.main '
                  f'--config=configs/walt/<name>.py --workdir={workdir})']
  try:
    config = ckpt_lib.read_config(workdir)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).splitlines() or [''])[0]
    return None, [f'{where}: its checkpoint config does not read '
                  f'({type(e).__name__}: {first}): give another workdir']
  if config.get('job') != 'walt':
    return None, [f'{where}: a {config.get("job") or "non"}-job checkpoint, '
                  'not a denoiser\'s: give a W.A.L.T denoiser workdir']
  problems = tokenizer_workdir(config.tokenizer.workdir,
                               f'{where}: its tokenizer', config.data.name)
  if config.model.get('low_res_channels'):
    problems += tokenizer_workdir(
        config.cascade.low_res_tokenizer.workdir,
        f'{where}: its cascade.low_res_tokenizer', config.data.name)
  return config, problems


def _model(config, field: str, default=0):
  return config.model.get(field, default)


def _class_problems(config, class_label, what: str) -> list[str]:
  classes = _model(config, 'num_classes')
  if class_label is None:
    return []
  if not classes:
    return [f'--class_label={class_label}: {what} is not class-conditional: '
            'drop --class_label']
  if not 0 <= class_label < classes:
    return [f'--class_label={class_label}: {what} has {classes} classes: '
            f'give 0..{classes - 1}']
  return []


def _at_least(values: dict, minimums: dict[str, int]) -> list[str]:
  return [f'--{name}={values[name]}: must be at least {low}'
          for name, low in minimums.items()
          if values.get(name) is not None and values[name] < low]


def sample_flags(config, values: dict) -> list[str]:
  """Problems of `python -m walt.sample` flags (`values`: flag name ->
  value; a missing name has its default) for the denoiser trained with
  `config`: classes, text, frame inputs and their files, frame counts."""
  from walt import media  # pylint: disable=g-import-not-at-top
  from walt.inference import frames as frames_lib  # pylint: disable=g-import-not-at-top
  v = {'class_label': None, 'caption': None, 'given': None, 'image': None,
       'interpolate': None, 'given_frames': 5, 'chunks': 0,
       'reconstruction_guidance': 0.0, 'num_samples': 1, 'steps': 1,
       'batch_size': 1, 'workdir': '', **values}
  if _model(config, 'low_res_channels'):
    return [f'--workdir={v["workdir"]} is a super-resolution stage: run it '
            'on a lower stage\'s output with python -m walt.cascade '
            f'--workdirs=BASE,...,{v["workdir"]}']
  problems = _at_least(v, {'num_samples': 1, 'steps': 1, 'batch_size': 1,
                           'chunks': 0})
  problems += _class_problems(config, v['class_label'], 'the model')
  if v['caption'] and not _model(config, 'text_dim'):
    problems.append('--caption: the model takes no text: drop --caption, or '
                    'give a text model\'s --workdir' + (
                        ' (this one takes --class_label=K)'
                        if _model(config, 'num_classes') else ''))
  modes = [m for m in ('given', 'image', 'interpolate') if v[m]]
  w_r = v['reconstruction_guidance']
  if len(modes) > 1:
    problems.append(f'--{", --".join(modes)}: give only one of --given, '
                    '--image, --interpolate')
  if w_r < 0:
    problems.append(f'--reconstruction_guidance={w_r}: must be >= 0')
  elif w_r and not (modes or v['chunks']):
    problems.append(f'--reconstruction_guidance={w_r} conditions on given '
                    'frames: add --given, --image, --interpolate or '
                    '--chunks, or drop it')
  if ((modes or v['chunks']) and not w_r
      and not _model(config, 'frame_conditioning', True)):
    problems.append(f'--{(modes or ["chunks"])[0]}: the model has no '
                    'frame-conditioning input: add '
                    '--reconstruction_guidance=W (W > 0, e.g. 2)')
  interpolate = list(v['interpolate'] or [])
  if interpolate and len(interpolate) != 2:
    problems.append(f'--interpolate={",".join(interpolate)}: give two '
                    'images, --interpolate=first.png,last.png')
  files = [(m, p) for m in modes for p in (
      interpolate if m == 'interpolate' else [v[m]])]
  missing = [f'--{m}={p}: {p} does not exist' for m, p in files
             if not storage.exists(p)]
  problems += missing
  k = v['given_frames']
  if v['given'] or v['chunks']:
    try:
      frames_lib.given_latent_frames(k, config.tokenizer.temporal_factor,
                                     config.data.frames)
    except ValueError as e:
      problems.append(f'--given_frames={k}: {e}')
  if v['given'] and not missing:
    try:
      length = len(media.read_video(v['given']))
    except (OSError, ValueError) as e:
      problems.append(f'--given={v["given"]}: {e}')
    else:
      if length < k:
        problems.append(f'--given={v["given"]} has {length} frames, fewer '
                        f'than --given_frames={k}: give a longer video or '
                        'fewer --given_frames (1 + '
                        f'{config.tokenizer.temporal_factor}k)')
  return problems


def cascade_flags(configs: list, workdirs: list[str], values: dict
                  ) -> list[str]:
  """Problems of `python -m walt.cascade` flags for the stages trained with
  `configs` (one per workdir of `--workdirs`, base first): the order of
  the stages and their sizes, and what the base stage is conditioned on."""
  v = {'caption': None, 'eval_captions': 0, 'class_label': None,
       'sr_noise': None, 'num_samples': 1, 'steps': 1, 'batch_size': 1,
       **values}
  problems = _at_least(v, {'num_samples': 1, 'steps': 1, 'batch_size': 1,
                           'eval_captions': 0})
  if v['sr_noise'] is not None and not 0 <= v['sr_noise'] < 1:
    problems.append(f'--sr_noise={v["sr_noise"]}: must lie in [0, 1)')
  base = configs[0]
  if _model(base, 'low_res_channels'):
    return problems + [
        f'--workdirs: the first stage ({workdirs[0]}) is a super-resolution '
        'stage: give the base model first (--workdirs=BASE,SR1,...)']
  for i in range(1, len(configs)):
    here = f'stage {i} ({workdirs[i]})'
    if not _model(configs[i], 'low_res_channels'):
      problems.append(f'--workdirs: {here} is not a super-resolution stage: '
                      'give one base model, then SR stages (--workdirs='
                      'BASE,SR1,...)')
      continue
    makes = (configs[i - 1].data.frames, *configs[i - 1].data.resolution)
    takes = (configs[i].data.frames,
             *configs[i].cascade.low_res_resolution)
    if tuple(makes) != tuple(takes):
      problems.append(
          f'--workdirs: stage {i - 1} makes {"x".join(map(str, makes))} '
          f'clips (frames x height x width), {here} takes '
          f'{"x".join(map(str, takes))}: give the stages in order, each SR '
          'stage after the one it upsamples')
  text = _model(base, 'text_dim')
  if v['caption'] and v['eval_captions']:
    problems.append('--caption, --eval_captions: give one of them')
  if v['caption'] and not any(_model(c, 'text_dim') for c in configs):
    problems.append('--caption: no stage takes text: drop --caption' + (
        ', give --class_label=K' if _model(base, 'num_classes') else ''))
  if text and not (v['caption'] or v['eval_captions']):
    problems.append('--caption: the base stage is a text model: give '
                    '--caption=TEXT or --eval_captions=N')
  problems += _class_problems(base, v['class_label'], 'the base stage')
  classes = _model(base, 'num_classes')
  if classes and v['class_label'] is None and not (v['caption'] or
                                                   v['eval_captions']):
    problems.append('--class_label: the base stage is class-conditional: '
                    f'give --class_label=K (0..{classes - 1})')
  if v['eval_captions'] > 0:
    data = base.data.to_dict()
    data['build'] = False  # the evaluation reads the split as it is
    problems += dataset(ml_collections.ConfigDict(data), 'validation',
                        f'--eval_captions={v["eval_captions"]} reads')
  return problems
