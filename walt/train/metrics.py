"""Metric logging: `WORKDIR/metrics.jsonl`, TensorBoard, progress lines, and
video summaries (`WORKDIR/samples/<step>/*.mp4|gif` via `walt.media`, plus a
frame grid in TensorBoard). Only process 0 writes.
"""

from __future__ import annotations

import json
import math
import time
from typing import Callable, Mapping

from absl import logging
import jax
import numpy as np

from walt import media
from walt import storage

# Receivers of the training progress lines besides absl's log, e.g. the
# quickstart prints them on the terminal while the log goes to a file.
PROGRESS_LISTENERS: list[Callable[[str], None]] = []


def _scalar(v) -> float:
  return float(np.asarray(v))


class MetricLogger:
  """Writes one JSON object per logged step and TensorBoard scalars."""

  def __init__(self, workdir: str, total_steps: int, start_step: int = 0):
    self.workdir = workdir
    self.total_steps = total_steps
    self.main = jax.process_index() == 0
    self._last_time, self._last_step = time.time(), start_step
    self._tb = None
    if self.main:
      storage.makedirs(workdir)
      _route_tensorboard_through_storage()
      from tensorboardX import SummaryWriter  # no TensorFlow needed
      self._tb = SummaryWriter(storage.join(workdir, 'tensorboard'))
      self._jsonl = storage.AppendFile(storage.join(workdir, 'metrics.jsonl'))

  def log(self, step: int, metrics: Mapping[str, float], prefix: str = ''
          ) -> dict[str, float]:
    """Logs scalars; adds `steps_per_sec` for training metrics."""
    now = time.time()
    out = {k: _scalar(v) for k, v in metrics.items()}
    if not prefix:
      rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
      out['steps_per_sec'] = rate
      self._last_time, self._last_step = now, step
      eta = (self.total_steps - step) / rate if rate > 0 else math.inf
      shown = ', '.join(f'{k}={v:.4g}' for k, v in sorted(out.items()))
      line = (f'step {step}/{self.total_steps} '
              f'({100.0 * step / self.total_steps:.1f}%) {shown}, '
              f'ETA {_duration(eta)}')
      logging.info(line)
      if self.main:
        for listener in PROGRESS_LISTENERS:
          listener(line)
    if self.main:
      record = {'step': int(step), **{f'{prefix}{k}': v
                                      for k, v in out.items()}}
      self._jsonl.write(json.dumps(record) + '\n')
      self._jsonl.flush()
      for k, v in out.items():
        self._tb.add_scalar(f'{prefix}{k}', v, step)
    return out

  def videos(self, step: int, name: str, videos: np.ndarray, fps: int = 8
             ) -> list[str]:
    """uint8 `[n, t, h, w, 3]` -> mp4 + gif files and a TensorBoard grid."""
    if not self.main:
      return []
    directory = storage.join(self.workdir, 'samples', str(step))
    paths = media.save_videos(directory, name, videos, fps)
    self._tb.add_image(name, media.frame_grid(videos), step, dataformats='HWC')
    return paths

  def flush(self) -> None:
    if self.main:
      self._jsonl.flush()
      self._tb.flush()

  def close(self) -> None:
    if self.main:
      self._jsonl.close()
      self._tb.close()


class _StorageRecordWriters:
  """tensorboardX's writer factory for object-store URIs: event files go
  through `storage.AppendFile` like every other file (tensorboardX's own
  gs:// writer would bypass the path layer)."""

  def open(self, path):
    return storage.AppendFile(path, binary=True)

  def directory_check(self, path):
    del path  # object stores have no directories to create


def _route_tensorboard_through_storage() -> None:
  from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
  for scheme in storage.REMOTE_SCHEMES:
    record_writer.register_writer_factory(scheme, _StorageRecordWriters())


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'
