r"""The whole W.A.L.T pipeline on moving_sprites, in minutes on a CPU.

    python -m walt.quickstart --workdir=/tmp/walt_quickstart

1. builds moving_sprites/17x32x32 (`WORKDIR/data`),
2. trains the quickstart tokenizer and its latent statistics
   (`configs/tokenizer/sprites.py:quick` -> `WORKDIR/tokenizer`),
3. encodes the training clips once (`WORKDIR/latents`) and trains a
   class-conditional W.A.L.T denoiser on those latents
   (`configs/walt/sprites.py:quick` -> `WORKDIR/denoiser`),
4. samples every class and scores the samples with the data set's oracle
   classifier (`walt.data.sprites.classify`),
5. writes `WORKDIR/quickstart.json` (`tokenizer_psnr`,
   `sample_class_accuracy`, `wall_seconds`, ...) and sample videos under
   `WORKDIR/denoiser/samples/<step>/`.

Each stage is the same job `python -m walt.main` runs; rerunning resumes from
what is already in WORKDIR (the data and the latent cache are reused).
`--set=tokenizer.FIELD=VALUE` / `--set=denoiser.FIELD=VALUE` (repeatable)
change a field of either config, e.g. a shorter run; without them the run
is the one above. Sample more with
`python -m walt.sample --workdir=WORKDIR/denoiser --out=DIR`.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
import tensorflow_datasets as tfds

from walt import config_lib
from walt.data import build
from walt.data import latent_cache
from walt.evaluation import results as results_lib
from walt import inference
from walt import jobs
from walt import preflight
from walt.train import metrics as metrics_lib

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where everything goes.')
_CONFIGS = flags.DEFINE_string(
    'configs_dir', None, 'The repository\'s configs/ (default: next to the '
    'walt package).')
_SET = flags.DEFINE_multi_string(
    'set', [], 'tokenizer.FIELD=VALUE or denoiser.FIELD=VALUE (repeatable): '
    'a field of that job\'s config (FIELD a dotted path, e.g. '
    'tokenizer.total_steps=1000 or denoiser.model.num_layers=2).')
flags.mark_flags_as_required(['workdir'])

TOKENIZER_CONFIG = 'tokenizer/sprites.py'
DENOISER_CONFIG = 'walt/sprites.py'


def load_config(relative: str, arg: str | None = None):
  return config_lib.load_file(relative, arg, _CONFIGS.value)


def _value(text: str, current):
  """`text` as the type of the field's `current` value (a sequence, None
  or a dict: a Python literal)."""
  if isinstance(current, bool):
    if text.lower() not in ('true', 'false', '1', '0'):
      raise ValueError(f'{text!r} is not a boolean')
    return text.lower() in ('true', '1')
  if isinstance(current, (int, float, str)):
    return type(current)(text)
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text
  return tuple(value) if isinstance(value, list) else value


def apply_overrides(configs: dict, overrides) -> None:
  """`JOB.FIELD=VALUE` items (`configs`: job name -> ConfigDict) set in
  place; raises ValueError naming the item for an unknown job or field."""
  for item in overrides:
    key, sep, text = item.partition('=')
    job, _, field = key.strip().partition('.')
    if not sep or not field or job not in configs:
      raise ValueError(f'--set={item}: give ' + ' or '.join(
          f'{name}.FIELD=VALUE' for name in configs))
    *path, leaf = field.split('.')
    node = configs[job]
    for part in path:
      node = node.get(part) if hasattr(node, 'get') else None
    if not hasattr(node, 'get') or leaf not in node:
      raise ValueError(f'--set={item}: the {job} config has no field '
                       f'{field!r}')
    try:
      value = _value(text.strip(), node[leaf])
    except ValueError as e:
      raise ValueError(f'--set={item}: {e}') from None
    with configs[job].unlocked():
      node[leaf] = value


def _run_job(config, workdir: str, mode: str = 'train'):
  job = jobs.load(config.job)
  config_lib.validate(config, extra=getattr(job, 'VALIDATORS', ()))
  preflight.check(config, workdir, mode)
  return job.run(config, workdir, mode)


def _stage(name: str, started: float) -> None:
  message = f'[quickstart {time.time() - started:5.0f} s] {name}'
  logging.info(message)
  print(message, flush=True)


def _cache_is_current(cache_dir: str, tok_dir: str) -> bool:
  """Whether `cache_dir` holds latents of the tokenizer's current stats."""
  meta_path = os.path.join(cache_dir, latent_cache.METADATA)
  if not os.path.exists(meta_path):
    return False
  with open(meta_path) as f:
    meta = json.load(f)
  step = inference.read_latent_stats(tok_dir).get('step')
  return meta.get('tokenizer_stats_step') == step


def _quiet_logging(workdir: str) -> str:
  """absl's INFO log (Orbax, tfds, the trainers) goes to a file in `workdir`;
  the terminal shows the stage lines, progress lines and errors."""
  os.makedirs(workdir, exist_ok=True)
  logging.get_absl_handler().use_absl_log_file('quickstart', workdir)
  flags.FLAGS.stderrthreshold = 'error'
  tfds.disable_progress_bar()
  return os.path.join(workdir, 'quickstart.INFO')


def run(workdir: str, quiet: bool = True, overrides=()) -> dict:
  """The five stages in `workdir`; `overrides`: `--set` items."""
  started = time.time()
  workdir = os.path.abspath(os.path.expanduser(workdir))
  if quiet:
    log = _quiet_logging(workdir)
    print(f'[quickstart] full log: {log}', flush=True)
  stage = ['']
  listener = lambda line: print(f'    {stage[0]} {line}', flush=True)
  metrics_lib.PROGRESS_LISTENERS.append(listener)
  try:
    return _run_stages(workdir, started, stage, overrides)
  finally:
    metrics_lib.PROGRESS_LISTENERS.remove(listener)


def _configs(workdir: str, overrides=()) -> tuple:
  """The (tokenizer, denoiser) configs of a quickstart in `workdir`, with
  `overrides` applied and validated (before anything runs)."""
  data_dir = os.path.join(workdir, 'data')
  tok_dir = os.path.join(workdir, 'tokenizer')
  cache_dir = os.path.join(workdir, 'latents')
  tok_config = load_config(TOKENIZER_CONFIG, 'quick')
  den_config = load_config(DENOISER_CONFIG, 'quick')
  with tok_config.unlocked():
    tok_config.data.data_dir = data_dir
  with den_config.unlocked():
    den_config.data.data_dir = data_dir
    den_config.tokenizer.workdir = tok_dir
    # The denoiser reads latents encoded once (its own step is cheaper than
    # encoding a batch on the fly).
    den_config.latents.cache = cache_dir
  apply_overrides({'tokenizer': tok_config, 'denoiser': den_config},
                  overrides)
  for config in (tok_config, den_config):
    job = jobs.load(config.job)
    config_lib.validate(config, extra=getattr(job, 'VALIDATORS', ()))
  return tok_config, den_config


def _run_stages(workdir: str, started: float, stage: list,
                overrides=()) -> dict:
  data_dir = os.path.join(workdir, 'data')
  tok_dir = os.path.join(workdir, 'tokenizer')
  den_dir = os.path.join(workdir, 'denoiser')
  cache_dir = os.path.join(workdir, 'latents')
  tok_config, den_config = _configs(workdir, overrides)

  _stage(f'1/5 building {tok_config.data.name} in {data_dir}', started)
  with contextlib.redirect_stdout(io.StringIO()) as tfds_prints:
    build.ensure_built(tok_config.data.name, data_dir)
  logging.info('tfds: %s', tfds_prints.getvalue())
  _stage(f'2/5 training the tokenizer in {tok_dir}', started)
  stage[0] = 'tokenizer'
  _run_job(tok_config, tok_dir)
  if not _cache_is_current(cache_dir, tok_dir):
    _stage(f'3/5 encoding the training clips once into {cache_dir}', started)
    _run_job(den_config, den_dir, mode='cache_latents')
  _stage(f'4/5 training the denoiser in {den_dir} (and sampling every class '
         'at the end)', started)
  stage[0] = 'denoiser'
  _run_job(den_config, den_dir)
  _stage('5/5 collecting the scores', started)

  tok_results = results_lib.read_results(tok_dir)
  den_results = results_lib.read_results(den_dir)
  summary = {
      'tokenizer_psnr': tok_results['psnr'],
      'tokenizer_ssim': tok_results['ssim'],
      'sample_class_accuracy': den_results['class_accuracy'],
      'sample_color_accuracy': den_results['color_accuracy'],
      'sample_shape_accuracy': den_results['shape_accuracy'],
      'num_samples': den_results['num_samples'],
      'sampler': den_results['protocol'],
      'wall_seconds': time.time() - started,
      'tokenizer_workdir': tok_dir,
      'denoiser_workdir': den_dir,
      'samples': os.path.join(den_dir, 'samples', str(den_results['step'])),
  }
  summary['sample_grid'] = os.path.join(summary['samples'],
                                        'class_samples.png')
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'quickstart.json'), 'w') as f:
      json.dump(summary, f, indent=2)
  _stage(f'done: tokenizer PSNR {summary["tokenizer_psnr"]:.1f} dB, sample '
         f'class accuracy {summary["sample_class_accuracy"]:.0%}, colour '
         f'{summary["sample_color_accuracy"]:.0%}, shape '
         f'{summary["sample_shape_accuracy"]:.0%} (oracle)', started)
  print(f'  samples (one per class, mp4 + gif): {summary["samples"]}\n'
        f'  sample grid (a row per class):      {summary["sample_grid"]}\n'
        f'  scores:                             '
        f'{os.path.join(workdir, "quickstart.json")}\n'
        f'  more samples: python -m walt.sample --workdir={den_dir} '
        f'--out=DIR', flush=True)
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    # A bad --set item or field value stops here, before any stage runs.
    _configs(os.path.abspath(os.path.expanduser(_WORKDIR.value)), _SET.value)
  except ValueError as e:
    sys.exit(f'walt.quickstart: {e}')
  run(_WORKDIR.value, overrides=_SET.value)


if __name__ == '__main__':
  app.run(main)
