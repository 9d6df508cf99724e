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
"""

from __future__ import annotations

import dataclasses

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
