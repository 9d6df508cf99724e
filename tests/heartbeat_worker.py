"""One process of a 2-process job that exchanges data forever (run by
test_distributed.py, which kills one of them).

argv: process_id port heartbeat_timeout_seconds
"""

import os
import sys
import time

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=2'
os.environ['JAX_PLATFORMS'] = 'cpu'

from jax.experimental import multihost_utils  # noqa: E402
import numpy as np  # noqa: E402

from walt.parallel import distributed  # noqa: E402


def main():
  process_id, port, timeout = map(int, sys.argv[1:])
  assert distributed.initialize(f'localhost:{port}', 2, process_id,
                                heartbeat_timeout_seconds=timeout)
  print('up', flush=True)
  step = 0
  while True:
    multihost_utils.process_allgather(np.full(2, step))
    step += 1
    time.sleep(0.01)


if __name__ == '__main__':
  main()
