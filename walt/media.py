"""Reading videos and images (the CLIs' inputs), writing videos and frame
grids: mp4 (h264) and gif per video, and a PNG grid with a row of frames
per video."""

from __future__ import annotations

import imageio_ffmpeg
import mediapy
import numpy as np

from walt import storage

mediapy.set_ffmpeg(imageio_ffmpeg.get_ffmpeg_exe())


def _read(path: str, kind: str, reader) -> np.ndarray:
  if not storage.exists(path):
    raise FileNotFoundError(f'{kind} {path} does not exist')
  try:
    with storage.local_input(path) as local:
      return np.asarray(reader(local))
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'cannot read {kind} {path}: {e}') from e


def read_video(path: str) -> np.ndarray:
  """uint8 `[T, H, W, 3]` of a video file (mp4, gif, ... via ffmpeg)."""
  video = _read(path, 'video', mediapy.read_video)
  if video.ndim != 4 or video.shape[-1] != 3:
    raise ValueError(f'video {path}: expected RGB frames, got {video.shape}')
  return video


def read_image(path: str) -> np.ndarray:
  """uint8 `[H, W, 3]` of an image file (an alpha channel is dropped)."""
  image = _read(path, 'image', mediapy.read_image)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  if image.ndim != 3 or image.shape[-1] not in (3, 4):
    raise ValueError(f'image {path}: expected RGB(A), got {image.shape}')
  image = image[..., :3]
  if image.dtype != np.uint8:
    raise ValueError(f'image {path}: expected 8-bit, got {image.dtype}')
  return image


def save_videos(directory: str, name: str, videos: np.ndarray, fps: int = 8
                ) -> list[str]:
  """uint8 `[n, t, h, w, 3]` -> `name_<i>.mp4` + `name_<i>.gif` per video and
  one `name.png` grid of frames (a row per video) in `directory`."""
  paths = []
  for i, video in enumerate(videos):
    for ext in ('mp4', 'gif'):
      path = storage.join(directory, f'{name}_{i}.{ext}')
      write_video(path, video, fps)
      paths.append(path)
  grid_path = storage.join(directory, f'{name}.png')
  write_image(grid_path, frame_grid(videos))
  return paths + [grid_path]


def write_video(path: str, video: np.ndarray, fps: int = 8) -> None:
  """uint8 `[t, h, w, 3]` -> `path` (.gif, else h264), local or gs://."""
  with storage.local_copy(path) as local:
    mediapy.write_video(local, video, fps=fps,
                        codec='gif' if path.endswith('.gif') else 'h264')


def write_image(path: str, image: np.ndarray) -> None:
  """uint8 `[h, w, 3]` -> `path` (format from the extension)."""
  with storage.local_copy(path) as local:
    mediapy.write_image(local, image)


def frame_grid(videos: np.ndarray) -> np.ndarray:
  """uint8 `[n, t, h, w, 3]` -> `[n * h, t * w, 3]`: a row of frames each."""
  return np.concatenate([np.concatenate(list(v), axis=1) for v in videos], 0)
