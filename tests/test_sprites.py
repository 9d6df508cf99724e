"""The procedural renderer and its oracle classifier."""

import numpy as np
import pytest

from walt.data import sprites
from walt.data import video_ops


def test_params_are_a_pure_function_of_seed_and_index():
  assert sprites.sample_params(7, 3) == sprites.sample_params(7, 3)
  assert sprites.sample_params(7, 3) != sprites.sample_params(7, 4)
  assert sprites.sample_params(7, 3) != sprites.sample_params(8, 3)
  assert sprites.sample_params(7, 3) != sprites.sample_params(7, 3, stream=1)


def test_render_is_deterministic_and_params_round_trip_through_json():
  p = sprites.sample_params(0, 11)
  np.testing.assert_array_equal(sprites.render(p, 9, 32, 32),
                                sprites.render(p, 9, 32, 32))
  q = sprites.ClipParams.from_json(p.to_json())
  assert q == p
  np.testing.assert_array_equal(sprites.render(q, 9, 32, 32),
                                sprites.render(p, 9, 32, 32))


def test_rerendering_at_twice_the_resolution_gives_the_same_clip():
  """Super-resolution pairs: 128x128 box-downsampled ~= the 64x64 render."""
  psnrs = []
  for i in range(10):
    p = sprites.sample_params(0, i)
    low = sprites.render(p, 17, 64, 64).astype(np.float64)
    high = video_ops.downsample(sprites.render(p, 17, 128, 128), 2)
    mse = np.mean((low - high.astype(np.float64)) ** 2)
    psnrs.append(10 * np.log10(255.0 ** 2 / mse))
  assert min(psnrs) > 30.0, psnrs


def test_motion_is_elastic_bouncing_inside_the_frame():
  size = 64
  for i in range(50):
    p = sprites.sample_params(0, i)
    track = sprites.main_sprite_track(p, 40, size, size)
    r = p.main.size * size
    for axis, v in enumerate((p.main.vx, p.main.vy)):
      pos, speed = track[:, axis], abs(v) * size
      assert np.all(pos >= r - 1e-9) and np.all(pos <= size - r + 1e-9)
      step = np.abs(np.diff(pos))
      assert np.all(step <= speed + 1e-9)  # a bounce only shortens a step
      # Away from the walls the sprite moves at exactly its speed.
      free = np.minimum(pos[:-1], pos[1:]) > r + speed
      free &= np.maximum(pos[:-1], pos[1:]) < size - r - speed
      np.testing.assert_allclose(step[free], speed, rtol=1e-9, atol=1e-9)
      assert free.sum() > 0 or speed == 0


def test_future_is_determined_by_two_frames():
  """Positions at frames 0 and 1 give position and velocity; the bounce rule
  then predicts every later frame."""
  size, checked = 64, 0
  for i in range(30):
    p = sprites.sample_params(0, i)
    track = sprites.main_sprite_track(p, 17, size, size)
    r = p.main.size * size
    half_extent = r / size
    for axis in range(2):
      x0, x1 = track[0, axis] / size, track[1, axis] / size
      v = x1 - x0
      max_speed = 0.06  # the fastest sprite sample_params draws
      if min(x0, x1) <= half_extent + max_speed or max(x0, x1) >= (
          1 - half_extent - max_speed):
        continue  # maybe a wall between frames 0 and 1: velocity ambiguous
      predicted = sprites._bounce(x0, v, half_extent, np.arange(17.0)) * size
      np.testing.assert_allclose(predicted, track[:, axis], atol=1e-7)
      checked += 1
  assert checked > 20


@pytest.mark.parametrize('frames,size', [(17, 64), (5, 32), (1, 64)])
def test_oracle_classifier_is_right_on_at_least_99_percent(frames, size):
  n, correct = 300, 0
  for i in range(n):
    p = sprites.sample_params(123, i, stream=1 if frames == 1 else 0,
                              max_start_frame=16 if frames == 1 else 0)
    correct += sprites.classify(sprites.render(p, frames, size, size)) == p.label
  assert correct / n >= 0.99, correct / n


def test_oracle_accepts_model_range_floats_and_images():
  p = sprites.sample_params(0, 2)
  video = sprites.render(p, 5, 32, 32)
  assert sprites.classify(video_ops.to_float(video)) == p.label
  assert sprites.classify(video[0]) == p.label
  with pytest.raises(ValueError):
    sprites.classify(np.zeros((5, 32, 32)))


def test_data_covers_every_class_and_the_oracle_predicts_each():
  labels = {sprites.classify(sprites.render(sprites.sample_params(0, i), 5, 64,
                                            64)) for i in range(200)}
  assert labels == set(range(sprites.NUM_CLASSES))


def test_caption_names_the_class_and_motion():
  for i in range(20):
    p = sprites.sample_params(0, i)
    text = sprites.caption(p)
    assert text.startswith(f'a {sprites.CLASS_NAMES[p.label]} ')
    assert {'horizontal': 'left and right', 'vertical': 'up and down',
            'diagonal': 'diagonally'}[p.motion] in text
