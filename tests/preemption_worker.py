"""The tiny tokenizer job of test_tokenizer_training.py in its own process, so
the test can SIGTERM it mid-run (run by that test). Each step waits 0.3 s on
the host (the computation is unchanged) so that the test's signal lands well
before the last step.

argv: data_dir workdir total_steps
"""

import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import time  # noqa: E402

import jax  # noqa: E402

from tests.test_tokenizer_training import preemption_config  # noqa: E402
from walt.parallel import mesh as mesh_lib  # noqa: E402
from walt.train import loop  # noqa: E402
from walt.train import tokenizer_trainer  # noqa: E402


class _PacedTask(tokenizer_trainer.TokenizerTask):

  def prepare_batch(self, batch):
    time.sleep(0.3)
    return batch


def main():
  data_dir, workdir, total_steps = sys.argv[1:]
  if os.environ.get('WALT_TEST_XLA_CACHE'):
    jax.config.update('jax_compilation_cache_dir',
                      os.environ['WALT_TEST_XLA_CACHE'])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  config = preemption_config(data_dir, int(total_steps))
  with config.unlocked():
    config.log_every = 1  # the test watches metrics.jsonl for progress
  mesh = mesh_lib.create_mesh(config.mesh.to_dict())
  rules = mesh_lib.rules_from_config(config.logical_rules.to_dict())
  loop.train(_PacedTask(config, workdir, mesh, rules), config, workdir)


if __name__ == '__main__':
  main()
