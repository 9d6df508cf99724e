"""The `moving_sprites` tfds builder: offline, TF-free, deterministic."""

import filecmp
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import TINY_DATASET
from walt.data import build
from walt.data import moving_sprites
from walt.data import registry
from walt.data import sprites


def _files(builder):
  return sorted(f for f in os.listdir(builder.data_dir)
                if '.array_record' in f or f.endswith('.json'))


def test_building_twice_gives_byte_identical_files(sprites_data_dir,
                                                   tmp_path):
  first = registry.builder(TINY_DATASET, sprites_data_dir)
  second = build.ensure_built(TINY_DATASET, str(tmp_path))
  names = _files(first)
  assert names == _files(second)
  assert any('train.array_record' in n for n in names)
  match, mismatch, errors = filecmp.cmpfiles(
      first.data_dir, second.data_dir, names, shallow=False)
  assert not mismatch and not errors, (mismatch, errors)


def test_examples_are_stored_in_index_order_and_match_the_generator(
    sprites_data_dir):
  builder = registry.builder(TINY_DATASET, sprites_data_dir)
  config = builder.builder_config
  assert builder.info.splits['train'].num_examples == config.num_train
  source = builder.as_data_source(split='validation')
  for i in (0, 1, len(source) - 1):
    stored = source[i]
    expected = moving_sprites.make_example(config, 'validation', i)
    assert stored['index'] == i
    np.testing.assert_array_equal(stored['video'], expected['video'])
    np.testing.assert_array_equal(stored['image'], expected['image'])
    assert stored['label'] == expected['label']
    assert stored['caption'].decode() == expected['caption']


def test_features_and_oracle_on_stored_examples(sprites_data_dir):
  source = registry.builder(TINY_DATASET, sprites_data_dir).as_data_source(
      split='train')
  ex = source[3]
  assert ex['video'].shape == (5, 32, 32, 3) and ex['video'].dtype == np.uint8
  assert ex['image'].shape == (32, 32, 3)
  assert 0 <= ex['label'] < sprites.NUM_CLASSES
  videos = [source[i] for i in range(len(source))]
  accuracy = np.mean([sprites.classify(e['video']) == e['label']
                      for e in videos])
  image_accuracy = np.mean([sprites.classify(e['image']) == e['image_label']
                            for e in videos])
  assert accuracy >= 0.99 and image_accuracy >= 0.99


def test_render_params_rerender_the_clip_at_any_resolution(sprites_data_dir):
  source = registry.builder(TINY_DATASET, sprites_data_dir).as_data_source(
      split='train')
  ex = source[5]
  np.testing.assert_array_equal(
      moving_sprites.rerender(ex['render_params'], 5, 32, 32), ex['video'])
  high = moving_sprites.rerender(ex['render_params'], 5, 64, 64)
  assert high.shape == (5, 64, 64, 3)
  assert sprites.classify(high) == ex['label']
  # The image is one frame of an independent clip, not of this video.
  image_params = sprites.ClipParams.from_json(ex['image_render_params'])
  np.testing.assert_array_equal(
      sprites.render(image_params, 1, 32, 32)[0], ex['image'])
  assert image_params != sprites.ClipParams.from_json(ex['render_params'])


def test_same_index_same_clip_across_resolution_configs():
  low = moving_sprites.MovingSprites.builder_configs['17x64x64']
  high = moving_sprites.MovingSprites.builder_configs['17x128x128']
  a = moving_sprites.make_example(low, 'train', 9)
  b = moving_sprites.make_example(high, 'train', 9)
  assert a['render_params'] == b['render_params'] and a['label'] == b['label']
  assert b['video'].shape == (17, 128, 128, 3)


def test_no_tensorflow_needed(sprites_data_dir):
  # A fresh interpreter: the converter tests import TensorFlow into this one.
  code = (
      'import sys\n'
      'from walt.data import registry\n'
      f'registry.builder({TINY_DATASET!r}, {sprites_data_dir!r})'
      '.as_data_source()["train"][0]\n'
      'assert "tensorflow" not in sys.modules, "TensorFlow was imported"\n')
  r = subprocess.run([sys.executable, '-c', code], capture_output=True,
                     text=True, timeout=300,
                     cwd=os.path.dirname(os.path.dirname(__file__)))
  assert r.returncode == 0, r.stderr[-2000:]


def test_unprepared_data_set_fails_with_the_build_command(tmp_path):
  from walt.data import pipeline
  spec = pipeline.DataSpec(name=TINY_DATASET, data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match='python -m walt.data.build'):
    pipeline.data_source(spec)


def test_data_dir_tilde_is_the_home_directory(tmp_path, monkeypatch):
  """`--data_dir=~/walt_data` (which shells pass through unexpanded) builds
  under the home directory, not in a folder named `~`."""
  monkeypatch.setenv('HOME', str(tmp_path))
  builder = registry.builder(TINY_DATASET, '~/walt_data')
  assert str(builder.data_dir).startswith(str(tmp_path / 'walt_data'))
