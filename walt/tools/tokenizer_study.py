r"""The tokenizer study: trains architecture variants for a fixed wall-clock
budget each and tabulates what a CPU budget buys.

    python -m walt.tools.tokenizer_study --variants=quick_old,sprites_quick \
        --minutes=10 --out=/tmp/tokenizer_study [--data_dir=~/walt_data]

Each variant is a tokenizer config file (with its variant argument) plus
config overrides (`VARIANTS` below). For each one, in one process:
1. the matmul peak (float32 2048^3 dot, FLOP/s) is measured;
2. the train step is compiled, its FLOPs read from XLA's cost analysis and
   its time measured (median of `--timing_steps` after a warm-up), so
   `flops_utilization` = step FLOP rate / matmul peak;
3. `total_steps` = budget / step time, and the variant trains with the shared
   loop (`walt.train.loop`) into `OUT/<variant>` with its config's own eval
   set (whole held-out clips), so `psnr` is the job's own `results.json`.
Rows go to `OUT/results.jsonl`; the table (markdown) is printed at the end
and written to `OUT/table.md`. WORKSPACE.md holds the measured table.
"""

from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags
from absl import logging

from walt import config_lib
from walt.benchmark import job_suites
from walt.benchmark import timing
from walt.data import build  # noqa: F401  (defines --data_dir)
from walt.parallel import mesh as mesh_lib
from walt.train import loop
from walt.train import tokenizer_trainer

_VARIANTS = flags.DEFINE_list('variants', None, 'Names from VARIANTS.')
_MINUTES = flags.DEFINE_float('minutes', 10.0, 'Training budget per variant.')
_OUT = flags.DEFINE_string('out', None, 'Output directory.')
_TIMING_STEPS = flags.DEFINE_integer('timing_steps', 5, 'Timed steps.')
_MEASURE_ONLY = flags.DEFINE_bool('measure_only', False,
                                  'Only measure step time and FLOP rate.')
flags.mark_flags_as_required(['variants', 'out'])

_SPRITES = 'tokenizer/sprites.py'
# Every variant pins the fields it was measured with, so a rerun measures the
# same thing after the sprites configs move on.
_PATCH = {'model.patch_size': (4, 4, 4), 'model.channel_multipliers': (1,),
          'model.temporal_downsample': (), 'model.spatial_downsample': (),
          'model.num_res_blocks': 2, 'model.num_mid_blocks': 2,
          'model.num_groups': 32, 'model.normalize': True,
          'model.stem': 'space_to_depth', 'model.conv_impl': 'xla'}
# The MAGVIT-v2 layout at sprites size (the default before the study).
_MAGVIT_SMALL = {
    'model.patch_size': (1, 1, 1), 'model.channel_multipliers': (1, 2, 4, 4),
    'model.temporal_downsample': (False, True, True),
    'model.spatial_downsample': (), 'model.base_channels': 32,
    'model.num_res_blocks': 1, 'model.num_mid_blocks': 1,
    'model.num_groups': 8, 'model.normalize': True,
    'model.latent_channels': 8, 'data.frames': 9, 'data.crop': (32, 32),
    'batch_size': 4, 'optimizer.lr': 2e-3, 'loss.l1_weight': 0.0,
}
# 64x64 patch layout as first measured: 128 wide, 8 channels, batch 8.
_PATCH4 = {**_PATCH, 'model.base_channels': 128, 'model.latent_channels': 8,
           'data.frames': 17, 'data.crop': (32, 32), 'batch_size': 8,
           'optimizer.lr': 2e-3, 'loss.l1_weight': 0.0}
# Quick (17x32x32) starting point of the study, and its second round.
_Q0 = {**_PATCH, 'model.base_channels': 64, 'model.latent_channels': 8,
       'data.frames': 17, 'batch_size': 8, 'optimizer.lr': 2e-3,
       'loss.l1_weight': 0.0, 'ema_decay': 0.999}
_Q0B2 = {**_Q0, 'batch_size': 2}
_Q0B2LR = {**_Q0B2, 'optimizer.lr': 1e-3}
_Q1 = {**_Q0B2LR, 'loss.l1_weight': 1.0, 'ema_decay': 0.99}
_Q1W32 = {**_Q1, 'model.base_channels': 32}
# name -> (config file, variant argument, overrides); WORKSPACE.md's table.
VARIANTS = {
    # 64x64 data, evaluated on whole 17x64x64 validation clips.
    'magvit_small': (_SPRITES, 'whole', _MAGVIT_SMALL),
    'magvit_small_im2col': (_SPRITES, 'whole', {
        **_MAGVIT_SMALL, 'model.conv_impl': 'im2col'}),
    'patch4': (_SPRITES, 'whole', _PATCH4),
    'patch4_im2col': (_SPRITES, 'whole', {**_PATCH4,
                                          'model.conv_impl': 'im2col'}),
    # 32x32 data (the quickstart's), evaluated on whole 17x32x32 clips.
    'quick_old': (_SPRITES, 'quick', {
        'model.patch_size': (1, 1, 1), 'model.channel_multipliers': (1, 2, 4, 4),
        'model.temporal_downsample': (False, True, True),
        'model.spatial_downsample': (), 'model.base_channels': 8,
        'model.num_res_blocks': 1, 'model.num_mid_blocks': 1,
        'model.num_groups': 8, 'model.normalize': False,
        'model.latent_channels': 8, 'data.frames': 9, 'batch_size': 8,
        'optimizer.lr': 2e-3, 'loss.l1_weight': 0.0, 'ema_decay': 0.999}),
    'quick': (_SPRITES, 'quick', _Q0),
    'quick_b2': (_SPRITES, 'quick', _Q0B2),
    'quick_9f_b4': (_SPRITES, 'quick', {**_Q0, 'batch_size': 4,
                                        'data.frames': 9}),
    'quick_b2_haar': (_SPRITES, 'quick', {**_Q0B2, 'model.stem': 'haar'}),
    'quick_b2_affine': (_SPRITES, 'quick', {**_Q0B2,
                                            'model.normalize': False}),
    'quick_b2_lr1e-3': (_SPRITES, 'quick', _Q0B2LR),
    'quick_b2_lr1e-3_lat16': (_SPRITES, 'quick', {
        **_Q0B2LR, 'model.latent_channels': 16}),
    'quick_b2_lr1e-3_l1': (_SPRITES, 'quick', {**_Q0B2LR,
                                               'loss.l1_weight': 1.0}),
    'quick_b2_lr1e-3_2lev': (_SPRITES, 'quick', {
        **_Q0B2LR, 'model.patch_size': (4, 2, 2),
        'model.channel_multipliers': (1, 2), 'model.base_channels': 32,
        'model.temporal_downsample': (False,),
        'model.spatial_downsample': (True,), 'model.num_res_blocks': 1}),
    'quick_l1_w64': (_SPRITES, 'quick', _Q1),
    'quick_l1_w128': (_SPRITES, 'quick', {**_Q1, 'model.base_channels': 128}),
    'quick_l1_w32': (_SPRITES, 'quick', _Q1W32),
    'quick_w32_b4': (_SPRITES, 'quick', {**_Q1W32, 'batch_size': 4}),
    'quick_w32_lr2e-3': (_SPRITES, 'quick', {**_Q1W32,
                                             'optimizer.lr': 2e-3}),
    'quick_w32_lat16': (_SPRITES, 'quick', {**_Q1W32,
                                            'model.latent_channels': 16}),
    # Size-independent norms: train on 32x32 crops of 4 clips, evaluate on
    # whole 64x64 frames.
    'default_group_crops': (_SPRITES, 'whole', {
        'model.norm': 'group', 'data.crop': (32, 32), 'batch_size': 4}),
    'default_rms_crops': (_SPRITES, 'whole', {
        'model.norm': 'rms', 'data.crop': (32, 32), 'batch_size': 4}),
    # The default before (whole frames, GroupNorm).
    'default_group_whole': (_SPRITES, 'whole', {'model.norm': 'group'}),
    'default_rms_whole': (_SPRITES, 'whole', {'model.norm': 'rms'}),
    # The configs as they are now.
    'sprites_quick': (_SPRITES, 'quick', {}),
    'sprites_default': (_SPRITES, 'default', {}),
}


def build_config(name: str, data_dir: str | None):
  path, arg, overrides = VARIANTS[name]
  config = config_lib.load_file(path, arg)
  with config.unlocked():
    for key, value in overrides.items():
      node = config
      *parents, leaf = key.split('.')
      for p in parents:
        node = node[p]
      node[leaf] = value
    if data_dir:
      config.data.data_dir = data_dir
  return config


def run_variant(name: str, out: str, minutes: float, repeats: int,
                measure_only: bool) -> dict:
  config = build_config(name, flags.FLAGS.data_dir)  # walt.data.build's flag
  config_lib.validate(config, extra=tokenizer_trainer.VALIDATORS)
  row = {'variant': name, 'overrides': {k: list(v) if isinstance(v, tuple)
                                        else v for k, v in
                                        VARIANTS[name][2].items()},
         'config': f'{VARIANTS[name][0]}:{VARIANTS[name][1]}'}
  row['matmul_peak_flops'] = timing.matmul_peak()['flops_per_sec']
  row.update(job_suites.tokenizer_step(config, repeats))
  row['flops_utilization'] = (row['step_flops'] / row['step_seconds']
                              / row['matmul_peak_flops'])
  row['batch'] = [config.batch_size, config.data.frames,
                  *(config.data.crop or config.data.resolution)]
  if measure_only:
    return row
  steps = max(int(minutes * 60 / row['step_seconds']), 10)
  workdir = os.path.join(out, name)
  with config.unlocked():
    config.total_steps = steps
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps,
                                        steps // 10)
    config.log_every = max(steps // 20, 1)
    config.checkpoint_every = config.eval_every = steps
    config.summary_every = steps
    config.latent_stats.num_examples = 0
  started = time.time()
  loop.train(tokenizer_trainer.TokenizerTask(
      config, workdir, mesh_lib.create_mesh(config.mesh.to_dict()),
      mesh_lib.rules_from_config(config.logical_rules.to_dict())),
             config, workdir)
  with open(os.path.join(workdir, 'eval', str(steps), 'results.json')) as f:
    results = json.load(f)
  row.update({'steps': steps, 'train_and_eval_seconds': time.time() - started,
              'psnr': results['psnr'], 'ssim': results['ssim'],
              'eval_clips': results['num_samples'],
              'eval_frames': config.eval.frames,
              'eval_resolution': list(config.data.resolution)})
  return row


def table(rows: list[dict]) -> str:
  lines = ['| variant | batch (b, t, h, w) | step s | step GFLOP | GFLOP/s | '
           '% of matmul peak | steps | held-out PSNR dB | SSIM |',
           '|---|---|---|---|---|---|---|---|---|']
  for r in rows:
    rate = r['step_flops'] / r['step_seconds']
    lines.append(
        f"| {r['variant']} | {tuple(r['batch'])} | {r['step_seconds']:.2f} | "
        f"{r['step_flops'] / 1e9:.1f} | {rate / 1e9:.0f} | "
        f"{100 * r['flops_utilization']:.0f} | {r.get('steps', '-')} | "
        f"{r.get('psnr', float('nan')):.2f} | {r.get('ssim', float('nan')):.3f} |")
  return '\n'.join(lines)


def main(argv):
  del argv
  unknown = set(_VARIANTS.value) - set(VARIANTS)
  if unknown:
    raise app.UsageError(f'unknown variants {sorted(unknown)}: {sorted(VARIANTS)}')
  os.makedirs(_OUT.value, exist_ok=True)
  rows = []
  for name in _VARIANTS.value:
    logging.info('study: %s', name)
    row = run_variant(name, _OUT.value, _MINUTES.value, _TIMING_STEPS.value,
                      _MEASURE_ONLY.value)
    rows.append(row)
    with open(os.path.join(_OUT.value, 'results.jsonl'), 'a') as f:
      f.write(json.dumps(row) + '\n')
    print(json.dumps(row), flush=True)
  text = table(rows)
  with open(os.path.join(_OUT.value, 'table.md'), 'w') as f:
    f.write(text + '\n')
  print(text)


if __name__ == '__main__':
  app.run(main)
