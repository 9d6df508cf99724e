"""Bad inputs of the sampling CLIs (`walt.sample`, `walt.cascade`) stop
before any model is built or compiled, with one line per problem that names
the flag and the fix (`walt.preflight.sample_flags` / `cascade_flags`
against the training config saved with each checkpoint), not a traceback.

The checks run in-process here (the two CLIs define flags of the same
names, so neither is imported); the real command lines run as subprocesses
with JAX's compile log on, so a compile would show."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import CompileCounter
from tests.conftest import TINY_DATASET
from walt import config_lib
from walt import media
from walt import preflight

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(module, *args):
  env = {**os.environ, 'PYTHONPATH': ROOT, 'JAX_LOG_COMPILES': '1'}
  return subprocess.run([sys.executable, '-m', module, *args], env=env,
                        cwd=ROOT, capture_output=True, text=True, timeout=300)


def _lines(text):
  return [line for line in text.splitlines() if line.strip()]


@pytest.fixture(scope='module')
def model(trained):
  """(workdir, the config read back from its checkpoint): a 12-class
  5x32x32 denoiser trained with frame conditioning."""
  workdir = trained[0]
  with CompileCounter() as compiles:
    config, problems = preflight.denoiser_config(workdir)
  assert problems == [] and compiles.count == 0
  return workdir, config


def _with(config, **fields):
  """A copy of a config with `fields` set (`a__b` sets `a.b`)."""
  c = config_lib.ConfigDict(config.to_dict())
  for key, value in fields.items():
    node, _, leaf = key.rpartition('__')
    (c[node] if node else c)[leaf] = value
  return c


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('inputs')
  media.write_image(str(d / 'a.png'), np.full((40, 48, 3), 9, np.uint8))
  media.write_video(str(d / 'three.mp4'), np.zeros((3, 32, 32, 3), np.uint8))
  return d


def _sample_cases(files):
  image, video = str(files / 'a.png'), str(files / 'three.mp4')
  missing = str(files / 'missing.mp4')
  return [
      # (flags, config fields, the one problem)
      ({'class_label': 99}, {}, '--class_label=99: the model has 12 classes: '
       'give 0..11'),
      ({'class_label': 12}, {}, '--class_label=12: the model has 12 classes: '
       'give 0..11'),
      ({'class_label': 3}, {'model__num_classes': 0}, '--class_label=3: the '
       'model is not class-conditional: drop --class_label'),
      ({'caption': 'a red circle'}, {}, '--caption: the model takes no text: '
       "drop --caption, or give a text model's --workdir (this one takes "
       '--class_label=K)'),
      ({'interpolate': [image]}, {}, f'--interpolate={image}: give two '
       'images, --interpolate=first.png,last.png'),
      ({'image': image, 'interpolate': [image, image]}, {}, '--image, '
       '--interpolate: give only one of --given, --image, --interpolate'),
      ({'reconstruction_guidance': 2.0}, {}, '--reconstruction_guidance=2.0 '
       'conditions on given frames: add --given, --image, --interpolate or '
       '--chunks, or drop it'),
      ({'image': image}, {'model__frame_conditioning': False}, '--image: the '
       'model has no frame-conditioning input: add '
       '--reconstruction_guidance=W (W > 0, e.g. 2)'),
      # Too few given frames: a 3-frame video, 5 asked for (9-frame clips).
      ({'given': video, 'given_frames': 5}, {'data__frames': 9},
       f'--given={video} has 3 frames, fewer than --given_frames=5: give a '
       'longer video or fewer --given_frames (1 + 4k)'),
      ({'given': video, 'given_frames': 2}, {}, '--given_frames=2: 2 given '
       'frames: the causal tokenizer encodes the first frame alone and then '
       'groups of 4, so give 1 + 4k frames (1, 5, 9, ...)'),
      ({'chunks': 1, 'given_frames': 5}, {}, '--given_frames=5: 5 given '
       'frames leave nothing to generate in a clip of 5'),
      ({'given': missing, 'given_frames': 1}, {},
       f'--given={missing}: {missing} does not exist'),
      ({'num_samples': 0}, {}, '--num_samples=0: must be at least 1'),
      ({'class_label': 1}, {'model__low_res_channels': 16},
       '--workdir=W is a super-resolution stage: run it on a lower stage\'s '
       'output with python -m walt.cascade --workdirs=BASE,...,W'),
  ]


def test_sample_flags_name_the_flag_and_the_fix(model, files):
  _, config = model
  with CompileCounter() as compiles:
    for values, fields, want in _sample_cases(files):
      got = preflight.sample_flags(_with(config, **fields),
                                   {'workdir': 'W', **values})
      assert got == [want], (values, fields)
    # Good requests pass: every flag of the sampling modes the model has.
    for values in ({}, {'class_label': 11, 'num_samples': 3},
                   {'image': str(files / 'a.png'), 'given_frames': 1,
                    'chunks': 2, 'reconstruction_guidance': 1.5},
                   {'given': str(files / 'three.mp4'), 'given_frames': 1},
                   {'interpolate': [str(files / 'a.png')] * 2}):
      assert preflight.sample_flags(config, values) == [], values
  assert compiles.count == 0


def test_denoiser_workdir_problems(model, tokenizer_dir, tmp_path):
  assert preflight.denoiser_config(str(tmp_path / 'none')) == (None, [
      f'--workdir={tmp_path}/none: no checkpoint there: give a trained '
      "denoiser's workdir (train one with python -m walt.main "
      f'--config=configs/walt/<name>.py --workdir={tmp_path}/none)'])
  # A tokenizer's workdir is not a denoiser's.
  config, problems = preflight.denoiser_config(tokenizer_dir, 'W')
  assert config is None and problems == [
      "W: a tokenizer-job checkpoint, not a denoiser's: give a W.A.L.T "
      'denoiser workdir']


@pytest.mark.parametrize('case', ['missing_workdir', 'class_label'])
def test_sample_cli_prints_one_line_before_compiling(model, tmp_path, case):
  """The issue's two commands: exit 1, one line, no traceback, no compile
  (JAX_LOG_COMPILES=1 logs every compile), nothing written."""
  workdir, _ = model
  out = tmp_path / 'out'
  args, want = {
      'missing_workdir': ([f'--workdir={tmp_path}/MISSING'],
                          f'walt.sample: --workdir={tmp_path}/MISSING: no '
                          'checkpoint there'),
      'class_label': ([f'--workdir={workdir}', '--class_label=99'],
                      'walt.sample: --class_label=99: the model has 12 '
                      'classes: give 0..11'),
  }[case]
  r = _cli('walt.sample', *args, f'--out={out}')
  assert r.returncode == 1, r.stderr[-3000:]
  assert len(_lines(r.stderr)) == 1, r.stderr[-3000:]
  assert _lines(r.stderr)[0].startswith(want), r.stderr
  assert 'Traceback' not in r.stderr and 'Compiling' not in r.stderr
  assert not out.exists()


@pytest.fixture(scope='module')
def stage_configs():
  """Configs of the sprites cascade's stages, as data (nothing trained):
  a text base at 9x32x32, SR 32 -> 64 and 64 -> 128."""
  load = lambda s: config_lib.ConfigDict(config_lib.load_file(
      'walt/sprites_cascade.py', f'stage={s}').to_dict())
  return {s: load(s) for s in ('base', 'sr1', 'sr2')}


def test_cascade_flags_name_the_flag_and_the_fix(stage_configs, model,
                                                 sprites_data_dir, tmp_path):
  base, sr1, sr2 = (stage_configs[s] for s in ('base', 'sr1', 'sr2'))
  _, classes = model
  # The base stage reading data that is there (--eval_captions).
  here = _with(base, data__name=TINY_DATASET, data__data_dir=sprites_data_dir)
  caption = {'caption': 'a red circle'}
  cases = [
      ([sr1], caption, '--workdirs: the first stage (W0) is a '
       'super-resolution stage: give the base model first '
       '(--workdirs=BASE,SR1,...)'),
      ([base, base], caption, '--workdirs: stage 1 (W1) is not a '
       'super-resolution stage: give one base model, then SR stages '
       '(--workdirs=BASE,SR1,...)'),
      ([base, sr2], caption, '--workdirs: stage 0 makes 9x32x32 clips '
       '(frames x height x width), stage 1 (W1) takes 9x64x64: give the '
       'stages in order, each SR stage after the one it upsamples'),
      ([base, sr1], {}, '--caption: the base stage is a text model: give '
       '--caption=TEXT or --eval_captions=N'),
      ([here, sr1], {**caption, 'eval_captions': 4}, '--caption, '
       '--eval_captions: give one of them'),
      ([base], {**caption, 'sr_noise': 1.0}, '--sr_noise=1.0: must lie in '
       '[0, 1)'),
      ([classes], caption, '--caption: no stage takes text: drop --caption, '
       'give --class_label=K'),
      ([classes], {'class_label': 99}, '--class_label=99: the base stage has '
       '12 classes: give 0..11'),
      ([classes], {}, '--class_label: the base stage is class-conditional: '
       'give --class_label=K (0..11)'),
      ([base], {**caption, 'class_label': 1}, '--class_label=1: the base '
       'stage is not class-conditional: drop --class_label'),
  ]
  with CompileCounter() as compiles:
    for configs, values, want in cases:
      workdirs = [f'W{i}' for i in range(len(configs))]
      assert preflight.cascade_flags(configs, workdirs, values) == [want], (
          values, want)
    assert preflight.cascade_flags([base, sr1, sr2], ['a', 'b', 'c'],
                                   caption) == []
    assert preflight.cascade_flags([classes], ['a'], {'class_label': 0}) == []
    assert preflight.cascade_flags([here, sr1], ['a', 'b'],
                                   {'eval_captions': 4}) == []
    # --eval_captions reads the base stage's validation split as it is.
    missing = _with(base, data__data_dir=str(tmp_path / 'data'))
    got = preflight.cascade_flags([missing, sr1], ['a', 'b'],
                                  {'eval_captions': 4})
    assert len(got) == 1 and got[0].startswith(
        "--eval_captions=4 reads (moving_sprites/17x64x64, split "
        "'validation'): ")
  assert compiles.count == 0


def test_cascade_cli_prints_one_line_per_bad_workdir(model, tmp_path):
  workdir, _ = model
  out = tmp_path / 'out'
  # A base model twice (the second should be an SR stage), and a missing
  # stage.
  r = _cli('walt.cascade', f'--workdirs={workdir},{workdir}',
           '--class_label=1', f'--out={out}')
  assert r.returncode == 1, r.stderr[-3000:]
  assert _lines(r.stderr) == [
      f'walt.cascade: --workdirs: stage 1 ({workdir}) is not a '
      'super-resolution stage: give one base model, then SR stages '
      '(--workdirs=BASE,SR1,...)'], r.stderr[-3000:]
  r = _cli('walt.cascade', f'--workdirs={workdir},{tmp_path}/sr',
           f'--out={out}')
  assert r.returncode == 1 and 'Traceback' not in r.stderr
  assert _lines(r.stderr) == [
      f'walt.cascade: --workdirs: stage 1 ({tmp_path}/sr): no checkpoint '
      "there: give a trained denoiser's workdir (train one with python -m "
      f'walt.main --config=configs/walt/<name>.py --workdir={tmp_path}/sr)']
  assert 'Compiling' not in r.stderr and not out.exists()
