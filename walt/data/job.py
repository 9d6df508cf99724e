"""The input-pipeline job (`config.job = 'data'`).

Builds the data set if it is missing, streams `total_steps` global batches
through the exact pipeline training uses (sharded on the mesh), logs
throughput every `log_every` batches, and writes to the workdir:
  data_preview.png   frames of the first batch (one row per sample)
  data_job.json      batches, examples/s, iterator state at the end
"""

from __future__ import annotations

import json
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from walt import media
from walt import storage
from walt.data import pipeline
from walt.data import video_ops
from walt.parallel import distributed
from walt.parallel import mesh as mesh_lib


def run(config, workdir: str, mode: str = 'train') -> None:
  if mode != 'train':
    raise ValueError(f'the data job has no mode {mode!r}')
  storage.makedirs(workdir)
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  spec = pipeline.DataSpec.from_config(config.data)
  it = pipeline.make_iterator(spec, mesh, global_batch_size=config.batch_size,
                              seed=config.seed, rules=rules)
  start, examples = time.time(), 0
  for step in range(1, config.total_steps + 1):
    batch = next(it)
    examples += config.batch_size
    if step == 1 and distributed.is_main_process():
      # Gather the global batch to this host for the preview only.
      video = np.asarray(multihost_utils.process_allgather(
          batch['video'], tiled=True))
      media.write_image(storage.join(workdir, 'data_preview.png'),
                        media.frame_grid(video_ops.to_uint8(video[:8])))
    if step % config.log_every == 0 or step == config.total_steps:
      jax.block_until_ready(batch)
      rate = examples / (time.time() - start)
      logging.info('batch %d/%d: %.1f examples/s, %d records skipped', step,
                   config.total_steps, rate, it.skipped_records)
  elapsed = time.time() - start
  summary = {
      'batches': config.total_steps,
      'global_batch_size': config.batch_size,
      'examples_per_sec': examples / elapsed,
      'skipped_records': it.skipped_records,
      'mesh': dict(mesh.shape),
      'data': config.data.to_dict(),
      'iterator_state': it.get_state(),
  }
  if distributed.is_main_process():
    storage.write_json(storage.join(workdir, 'data_job.json'), summary,
                       default=str)
  print(json.dumps({k: summary[k] for k in
                    ('batches', 'global_batch_size', 'examples_per_sec',
                     'skipped_records')}))
