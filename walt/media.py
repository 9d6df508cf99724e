"""Writing videos and frame grids: mp4 (h264) and gif per video, and a PNG
grid with a row of frames per video."""

from __future__ import annotations

import os

import imageio_ffmpeg
import mediapy
import numpy as np

mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())


def save_videos(directory: str, name: str, videos: np.ndarray, fps: int = 8
                ) -> list[str]:
  """uint8 `[n, t, h, w, 3]` -> `name_<i>.mp4` + `name_<i>.gif` per video and
  one `name.png` grid of frames (a row per video) in `directory`."""
  os.makedirs(directory, exist_ok=True)
  paths = []
  for i, video in enumerate(videos):
    for ext in ('mp4', 'gif'):
      path = os.path.join(directory, f'{name}_{i}.{ext}')
      mediapy.write_video(path, video, fps=fps, codec='gif' if ext == 'gif'
                          else 'h264')
      paths.append(path)
  grid_path = os.path.join(directory, f'{name}.png')
  mediapy.write_image(grid_path, frame_grid(videos))
  return paths + [grid_path]


def frame_grid(videos: np.ndarray) -> np.ndarray:
  """uint8 `[n, t, h, w, 3]` -> `[n * h, t * w, 3]`: a row of frames each."""
  return np.concatenate([np.concatenate(list(v), axis=1) for v in videos], 0)
