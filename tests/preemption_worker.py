"""The tiny tokenizer job of test_tokenizer_training.py in its own process, so
the test can SIGTERM it mid-run (run by that test).

argv: data_dir workdir total_steps
"""

import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402

from tests.test_tokenizer_training import _config  # noqa: E402
from walt.train import tokenizer_trainer  # noqa: E402


def main():
  data_dir, workdir, total_steps = sys.argv[1:]
  if os.environ.get('WALT_TEST_XLA_CACHE'):
    jax.config.update('jax_compilation_cache_dir',
                      os.environ['WALT_TEST_XLA_CACHE'])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  config = _config(data_dir, int(total_steps))
  with config.unlocked():
    config.log_every = 1  # the test watches metrics.jsonl for progress
  tokenizer_trainer.run(config, workdir)


if __name__ == '__main__':
  main()
