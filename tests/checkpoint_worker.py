"""One process of the multi-host checkpoint test (test_scale.py).

argv: process_id num_processes port workdir

Two processes x 4 fake devices: the tiny tokenizer (with discriminator) on a
(data 2, fsdp 4) mesh takes 2 train steps on seeded batches (the same global
batch on every process), saves collectively with the job's Checkpointer, and
process 0 writes the gathered state to WORKDIR/state.npz.
"""

import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
os.environ['JAX_PLATFORMS'] = 'cpu'

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from walt import checkpoint as ckpt_lib  # noqa: E402
from walt.parallel import distributed  # noqa: E402
from walt.parallel import mesh as mesh_lib  # noqa: E402
from walt.parallel import sharding as sharding_lib  # noqa: E402
from walt.train import loop  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
from tests import test_scale  # noqa: E402  pylint: disable=g-import-not-at-top


def main():
  process_id, num_processes, port, workdir = sys.argv[1:]
  assert distributed.initialize(f'localhost:{port}', int(num_processes),
                                int(process_id))
  task, config = test_scale.tokenizer_task({'data': 2, 'fsdp': 4})
  with jax.set_mesh(task.mesh), nn.logical_axis_rules(task.rules):
    state, _, _ = sharding_lib.init_sharded(
        task.init_state, task.mesh, task.rules, jax.random.key(0))
    step, _, abstract_batch = loop.abstract_step(task, config)
    for i in range(2):
      batch = {k: mesh_lib.put_global(v, abstract_batch[k].sharding)
               for k, v in test_scale.seeded_batch(task, config, i).items()}
      state, _ = step(state, batch)
    ckpt = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                 async_save=False)
    ckpt.save(2, state, {'next_index': 2}, config, force=True)
    ckpt.wait()
    ckpt.close()
    flat = {jax.tree_util.keystr(k): mesh_lib.fetch(v) for k, v in
            jax.tree_util.tree_leaves_with_path(state)}
  if jax.process_index() == 0:
    np.savez(os.path.join(workdir, 'state.npz'), **flat)


if __name__ == '__main__':
  main()
