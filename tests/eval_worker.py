"""One process of the 2-process eval test (run by test_eval_jobs.py).

argv: process_id num_processes port generator_dir data_dir dataset workdir
"""

import os
import sys

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=4'
os.environ['JAX_PLATFORMS'] = 'cpu'

from walt.evaluation import eval_job  # noqa: E402
from walt.parallel import distributed  # noqa: E402


def main():
  process_id, num_processes, port, generator, data_dir, dataset, workdir = (
      sys.argv[1:])
  assert distributed.initialize(f'localhost:{port}', int(num_processes),
                                int(process_id))
  from tests.test_eval_jobs import sprites_eval_config  # pylint: disable=g-import-not-at-top
  eval_job.run(sprites_eval_config(generator, data_dir, dataset), workdir)


if __name__ == '__main__':
  main()
