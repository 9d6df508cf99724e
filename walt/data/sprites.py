"""Procedural moving-sprite videos: parameters, rendering, captions, oracle.

Every clip is a pure function of `(split_seed, index)`: `sample_params` draws
the render parameters, `render` turns them into pixels at any frame count and
resolution. Positions, velocities and sizes live in resolution-free units, so
the same parameters rendered at 64x64 and 128x128 give the same clip at two
resolutions (the super-resolution stages train on such pairs).

The class label is `shape * len(COLORS) + color` of the main sprite. Both are
readable from pixels alone, which `classify` does analytically: it is the
oracle used to score generated samples.

Coordinates: normalised positions in [0, 1] along each axis (x = column,
y = row, y pointing down); sizes are fractions of the shorter frame side.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Sequence

import numpy as np

SHAPES = ('circle', 'square', 'triangle')
# Main-sprite palette: saturated, bright, far apart in RGB.
COLORS = {
    'red': (0.90, 0.15, 0.15),
    'green': (0.15, 0.80, 0.20),
    'blue': (0.20, 0.35, 0.95),
    'yellow': (0.95, 0.85, 0.15),
}
COLOR_NAMES = tuple(COLORS)
# Distractor palette: kept >= 0.5 (RGB distance) away from every main colour
# and from the backgrounds, so they never count as the main sprite.
DISTRACTOR_COLORS = ((0.92, 0.92, 0.92), (0.85, 0.20, 0.85), (0.20, 0.85, 0.85))
MOTIONS = ('horizontal', 'vertical', 'diagonal')
_MOTION_WORDS = {
    'horizontal': 'bouncing left and right',
    'vertical': 'bouncing up and down',
    'diagonal': 'bouncing diagonally',
}
NUM_CLASSES = len(SHAPES) * len(COLORS)
CLASS_NAMES = tuple(f'{c} {s}' for s in SHAPES for c in COLOR_NAMES)

# Oracle thresholds, halfway between the ideal values: top/bottom area ratio
# (triangle 1/3, others 1) and fill ratio of the bounding box (square 1,
# circle pi/4).
_TRIANGLE_MAX_TOP_BOTTOM = 0.65
_FILL_SQUARE_MIN = 0.90
# A pixel belongs to a palette colour when it is this close in RGB ([0, 1]).
_COLOR_RADIUS = 0.25


@dataclasses.dataclass(frozen=True)
class Sprite:
  """One moving sprite. `x`, `y`: position at frame 0; `vx`, `vy` per frame."""
  shape: int
  color: tuple[float, float, float]
  size: float  # half extent, fraction of the shorter frame side
  x: float
  y: float
  vx: float
  vy: float


@dataclasses.dataclass(frozen=True)
class Background:
  """A dark low-saturation colour, optionally with two sinusoidal gratings."""
  color: tuple[float, float, float]
  textured: bool
  # Per grating: (amplitude, cycles per frame, angle in radians, phase).
  gratings: tuple[tuple[float, float, float, float], ...] = ()


@dataclasses.dataclass(frozen=True)
class ClipParams:
  """Everything needed to re-render a clip at any resolution."""
  main: Sprite
  color_index: int
  motion: str
  distractors: tuple[Sprite, ...]
  background: Background
  start_frame: int = 0  # image examples: the frame of the clip they show

  @property
  def label(self) -> int:
    return self.main.shape * len(COLORS) + self.color_index

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True)

  @classmethod
  def from_json(cls, text: str | bytes) -> 'ClipParams':
    d = json.loads(text)
    sprite = lambda s: Sprite(**{**s, 'color': tuple(s['color'])})
    bg = d['background']
    return cls(
        main=sprite(d['main']),
        color_index=d['color_index'],
        motion=d['motion'],
        distractors=tuple(sprite(s) for s in d['distractors']),
        background=Background(
            color=tuple(bg['color']), textured=bg['textured'],
            gratings=tuple(tuple(g) for g in bg['gratings'])),
        start_frame=d['start_frame'])


def _random_sprite(rng: np.random.Generator, shape: int, color, size: float,
                   motion: str, speed: float) -> Sprite:
  if motion == 'horizontal':
    vx, vy = speed, 0.0
  elif motion == 'vertical':
    vx, vy = 0.0, speed
  else:
    angle = rng.uniform(np.deg2rad(25), np.deg2rad(65))
    vx, vy = speed * np.cos(angle), speed * np.sin(angle)
  vx *= rng.choice([-1.0, 1.0])
  vy *= rng.choice([-1.0, 1.0])
  # Start anywhere the sprite fits (bounds for a square frame; `render`
  # reflects positions into the actual bounds of any aspect ratio).
  x = rng.uniform(size, 1.0 - size)
  y = rng.uniform(size, 1.0 - size)
  return Sprite(shape=int(shape), color=tuple(float(c) for c in color),
                size=float(size), x=float(x), y=float(y), vx=float(vx),
                vy=float(vy))


def sample_params(split_seed: int, index: int, stream: int = 0,
                  max_start_frame: int = 0) -> ClipParams:
  """Draws the parameters of clip `index`; a pure function of its arguments.

  `stream` separates independent draws for the same index (0: the video,
  1: the independent image example). Image examples pick a `start_frame` in
  [0, max_start_frame] so single frames cover all phases of the motion.
  """
  rng = np.random.default_rng([int(split_seed), int(index), int(stream)])
  shape = int(rng.integers(len(SHAPES)))
  color_index = int(rng.integers(len(COLORS)))
  motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
  main = _random_sprite(rng, shape, COLORS[COLOR_NAMES[color_index]],
                        size=rng.uniform(0.12, 0.19), motion=motion,
                        speed=rng.uniform(0.025, 0.06))
  distractors = []
  for _ in range(int(rng.choice(3, p=[0.4, 0.35, 0.25]))):
    color = DISTRACTOR_COLORS[int(rng.integers(len(DISTRACTOR_COLORS)))]
    distractors.append(_random_sprite(
        rng, int(rng.integers(len(SHAPES))), color,
        size=rng.uniform(0.04, 0.07),
        motion=MOTIONS[int(rng.integers(len(MOTIONS)))],
        speed=rng.uniform(0.02, 0.07)))
  gray = rng.uniform(0.06, 0.32)
  tint = rng.uniform(-0.04, 0.04, size=3)
  textured = bool(rng.random() < 0.5)
  gratings = ()
  if textured:
    gratings = tuple(
        (float(rng.uniform(0.04, 0.09)), float(rng.uniform(2.0, 6.0)),
         float(rng.uniform(0, np.pi)), float(rng.uniform(0, 2 * np.pi)))
        for _ in range(2))
  background = Background(
      color=tuple(float(np.clip(gray + t, 0.0, 1.0)) for t in tint),
      textured=textured, gratings=gratings)
  start = int(rng.integers(max_start_frame + 1)) if max_start_frame else 0
  return ClipParams(main=main, color_index=color_index, motion=motion,
                    distractors=tuple(distractors), background=background,
                    start_frame=start)


def caption(params: ClipParams) -> str:
  """A templated English sentence, e.g. 'a red circle bouncing left and right'."""
  color = COLOR_NAMES[params.color_index]
  shape = SHAPES[params.main.shape]
  text = f'a {color} {shape} {_MOTION_WORDS[params.motion]}'
  n = len(params.distractors)
  if n:
    text += f' past {"one small shape" if n == 1 else f"{n} small shapes"}'
  bg = 'a textured' if params.background.textured else 'a plain'
  return f'{text} on {bg} background'


def _bounce(p0: float, v: float, half_extent: float, t: np.ndarray) -> np.ndarray:
  """Positions at frames `t` of a point moving at `v`, reflected elastically in
  [half_extent, 1 - half_extent] (closed form: a triangle wave)."""
  lo = half_extent
  length = 1.0 - 2.0 * half_extent
  # Start positions drawn for a square frame may lie outside narrower bounds.
  x = np.clip(p0, lo, lo + length) - lo + v * t
  return lo + length - np.abs(np.mod(x, 2.0 * length) - length)


def _sdf(shape: int, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
  """Signed distance (pixels, < 0 inside) of a shape of half extent `r` px."""
  if SHAPES[shape] == 'circle':
    return np.sqrt(dx * dx + dy * dy) - r
  if SHAPES[shape] == 'square':
    qx, qy = np.abs(dx) - r, np.abs(dy) - r
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0)
  # Triangle, apex up, filling half its bounding box: intersection of the
  # base half-plane and the two side half-planes (exact inside and on edges).
  n = 1.0 / np.sqrt(5.0)  # side normals (+-2, -1) / sqrt(5)
  side = (2.0 * np.abs(dx) - dy - r) * n
  return np.maximum(dy - r, side)


def render(params: ClipParams, frames: int, height: int, width: int
           ) -> np.ndarray:
  """Renders `frames` frames starting at `params.start_frame`.

  Returns:
    uint8 `[frames, height, width, 3]`.
  """
  short = min(height, width)
  t = np.arange(frames, dtype=np.float64) + params.start_frame
  rows = (np.arange(height, dtype=np.float64) + 0.5)[None, :, None]
  cols = (np.arange(width, dtype=np.float64) + 0.5)[None, None, :]

  bg = params.background
  yy, xx = rows[0] / short, cols[0] / short  # [h, 1], [1, w]
  base = np.zeros((height, width), np.float64)
  for amp, freq, angle, phase in bg.gratings:
    base = base + amp * np.sin(
        2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
  image = np.asarray(bg.color)[None, None, None, :] + base[None, :, :, None]
  image = np.broadcast_to(image, (frames, height, width, 3)).copy()

  # Distractors first: the main sprite is always drawn on top, unoccluded.
  for sprite in params.distractors + (params.main,):
    r_px = sprite.size * short
    cx = _bounce(sprite.x, sprite.vx, r_px / width, t) * width
    cy = _bounce(sprite.y, sprite.vy, r_px / height, t) * height
    dist = _sdf(sprite.shape, cols - cx[:, None, None], rows - cy[:, None, None],
                r_px)
    # One-pixel anti-aliased edge: coverage from the signed distance.
    alpha = np.clip(0.5 - dist, 0.0, 1.0)[..., None]
    image = image * (1.0 - alpha) + alpha * np.asarray(sprite.color)
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def main_sprite_track(params: ClipParams, frames: int, height: int, width: int
                      ) -> np.ndarray:
  """Centre of the main sprite in pixels per frame, `[frames, 2]` (x, y)."""
  s = params.main
  r_px = s.size * min(height, width)
  t = np.arange(frames, dtype=np.float64) + params.start_frame
  return np.stack([_bounce(s.x, s.vx, r_px / width, t) * width,
                   _bounce(s.y, s.vy, r_px / height, t) * height], axis=-1)


def _palette_masks(video: np.ndarray) -> np.ndarray:
  """`[n_colors, t, h, w]` bool: pixels within `_COLOR_RADIUS` of each colour."""
  x = video.astype(np.float32) / 255.0
  palette = np.asarray([COLORS[c] for c in COLOR_NAMES], np.float32)
  d2 = ((x[None] - palette[:, None, None, None, :]) ** 2).sum(-1)
  return d2 < _COLOR_RADIUS ** 2


def _shape_from_mask(mask: np.ndarray) -> int | None:
  """Shape index from one frame's `[h, w]` mask.

  Triangles (apex up) put a quarter of their area in the top half of their
  bounding box, circles and squares half: the top/bottom area ratio (1/3 vs 1)
  tells triangles apart even at a few pixels. Squares fill their bounding box,
  circles pi/4 of it.
  """
  rows = np.flatnonzero(mask.any(axis=1))
  cols = np.flatnonzero(mask.any(axis=0))
  if rows.size < 2 or cols.size < 2:
    return None
  box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
  half = box.shape[0] // 2
  top, bottom = box[:half].sum(), box[box.shape[0] - half:].sum()
  if top < _TRIANGLE_MAX_TOP_BOTTOM * bottom:
    return SHAPES.index('triangle')
  if box.mean() >= _FILL_SQUARE_MIN:
    return SHAPES.index('square')
  return SHAPES.index('circle')


def classify(video: np.ndarray) -> int:
  """Oracle classifier: the class label of a clip, read from pixels alone.

  Args:
    video: uint8 `[t, h, w, 3]` (or `[h, w, 3]` for an image), or float in
      [-1, 1] (the model's output range).

  Returns:
    `shape * len(COLORS) + color` of the main sprite: the colour is the palette
    colour covering the most pixels, the shape comes from the fill ratio of that
    colour's mask in each frame (majority vote over frames).
  """
  video = np.asarray(video)
  if video.dtype != np.uint8:
    video = np.round((np.clip(video, -1, 1) + 1) * 127.5).astype(np.uint8)
  if video.ndim == 3:
    video = video[None]
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f'expected [t, h, w, 3] or [h, w, 3], got {video.shape}')
  masks = _palette_masks(video)
  color = int(np.argmax(masks.sum(axis=(1, 2, 3))))
  votes = np.zeros(len(SHAPES), np.int64)
  for frame_mask in masks[color]:
    shape = _shape_from_mask(frame_mask)
    if shape is not None:
      votes[shape] += 1
  return int(np.argmax(votes)) * len(COLORS) + color


def classify_batch(videos: Sequence[np.ndarray]) -> np.ndarray:
  """`classify` over a batch `[b, t, h, w, 3]`; returns int `[b]`."""
  return np.asarray([classify(v) for v in videos], np.int64)
