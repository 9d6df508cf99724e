"""One process of the 2-process test (run by test_distributed.py).

argv: process_id num_processes port data_dir out_json
"""

import json
import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
os.environ['JAX_PLATFORMS'] = 'cpu'

import jax  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
import numpy as np  # noqa: E402

from walt.data import pipeline  # noqa: E402
from walt.parallel import distributed  # noqa: E402
from walt.parallel import mesh as mesh_lib  # noqa: E402


def main():
  process_id, num_processes, port, data_dir, out = sys.argv[1:]
  assert distributed.initialize(f'localhost:{port}', int(num_processes),
                                int(process_id))
  mesh = mesh_lib.create_mesh({'data': -1, 'fsdp': 2})
  spec = pipeline.DataSpec(name='moving_sprites/5x32x32', data_dir=data_dir,
                           frames=5, resolution=(32, 32), image_fraction=0.25)
  it = pipeline.make_iterator(spec, mesh, global_batch_size=8, seed=5)
  total = jax.jit(lambda v: v.sum(dtype=np.float32))
  result = {'device_count': jax.device_count(),
            'local_device_count': jax.local_device_count(),
            'process_count': jax.process_count(), 'batches': []}
  for _ in range(3):
    batch = next(it)
    records = multihost_utils.process_allgather(batch['record'], tiled=True)
    result['batches'].append({
        'records': np.asarray(records).tolist(),
        'video_sum': float(total(batch['video'])),
        'shape': list(batch['video'].shape),
    })
  result['state'] = it.get_state()
  with open(out, 'w') as f:
    json.dump(result, f)


if __name__ == '__main__':
  main()
