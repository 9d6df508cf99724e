"""Test setup: 8 fake CPU devices (before JAX starts) and a tiny data set."""

import os

# Must precede the first `import jax` anywhere in the test session.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import pytest  # noqa: E402


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA cache: tests that run the same job twice (resume ==
  uninterrupted) compile it once. `.ci/run` exports JAX_COMPILATION_CACHE_DIR
  so both passes and every worker subprocess share one cache; without it the
  cache lives for this session only."""
  import jax
  cache = (os.environ.get('JAX_COMPILATION_CACHE_DIR') or
           str(tmp_path_factory.mktemp('xla_cache')))
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _shared_dir(tmp_path_factory, name: str, build) -> str:
  """`build(dir)` once, in a directory shared by both CI passes when
  WALT_TEST_SHARED_DIR is set (`.ci/run` sets it; a fresh clone each run, so
  nothing stale), else in a per-session temp dir. A `.complete` marker is
  written only after `build` returns, so an interrupted build is redone."""
  root = os.environ.get('WALT_TEST_SHARED_DIR')
  if not root:
    path = str(tmp_path_factory.mktemp(name))
    build(path)
    return path
  path = os.path.join(root, name)
  marker = os.path.join(path, '.complete')
  if not os.path.exists(marker):
    import shutil
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    build(path)
    with open(marker, 'w') as f:
      f.write('built by tests/conftest.py\n')
  return path


TINY_DATASET = 'moving_sprites/5x32x32'


@pytest.fixture(scope='session')
def sprites_data_dir(tmp_path_factory):
  """A data dir holding `moving_sprites/5x32x32`, built once."""
  from walt.data import build
  return _shared_dir(tmp_path_factory, 'tfds',
                     lambda d: build.ensure_built(TINY_DATASET, d))


@pytest.fixture(scope='session')
def tokenizer_dir(sprites_data_dir, tmp_path_factory):
  """A (briefly) trained tiny tokenizer with latent stats: latent 2x8x8x16."""
  from tests.test_tokenizer_training import _config
  from walt.train import tokenizer_trainer

  def train(workdir):
    c = _config(sprites_data_dir, 10, gan_start=10_000)
    c.unlock()
    c.eval_every = c.summary_every = 0
    c.lock()
    tokenizer_trainer.run(c, workdir)

  return _shared_dir(tmp_path_factory, 'tokenizer', train)


@pytest.fixture(scope='session')
def trained(sprites_data_dir, tokenizer_dir, tmp_path_factory):
  """A tiny class-conditional denoiser trained on 5x32x32 clips:
  (workdir, config, final state)."""
  from tests.test_denoiser_training import _config
  from walt.train import denoiser_trainer
  workdir = str(tmp_path_factory.mktemp('denoiser'))
  config = _config(sprites_data_dir, tokenizer_dir)
  return workdir, config, denoiser_trainer.run(config, workdir)


@pytest.fixture(scope='session')
def stages(sprites_data_dir, tokenizer_dir, tmp_path_factory):
  """{stage: (workdir, config)} of the trained tiny base and SR cascade stages
  (tests/test_cascade.py's configs), trained once for every module using them."""
  from tests.test_cascade import _config as cascade_config
  from walt.train import denoiser_trainer
  out = {}
  for stage in ('base', 'sr'):
    root = tmp_path_factory.mktemp(f'cascade_{stage}')
    config = cascade_config(stage, sprites_data_dir, tokenizer_dir,
                            str(root / 'cache'))
    workdir = str(root / 'run')
    denoiser_trainer.run(config, workdir, mode='cache_latents')
    denoiser_trainer.run(config, workdir)
    out[stage] = (workdir, config)
  return out


_COUNTERS = []  # active CompileCounters


def _on_compile_event(event, *args, **kwargs):
  del args, kwargs
  if event in ('/jax/core/compile/backend_compile_duration',
               '/jax/compilation_cache/cache_hits'):
    for counter in _COUNTERS:
      counter.count += 1


class CompileCounter:
  """Counts XLA compilations (backend compiles and persistent-cache hits:
  every call that missed jit's in-memory cache) while active. JAX's
  listeners are registered once per session."""

  _registered = False

  def __init__(self):
    self.count = 0

  def __enter__(self):
    if not CompileCounter._registered:
      from jax import monitoring
      monitoring.register_event_duration_secs_listener(_on_compile_event)
      monitoring.register_event_listener(_on_compile_event)
      CompileCounter._registered = True
    _COUNTERS.append(self)
    return self

  def __exit__(self, *exc):
    _COUNTERS.remove(self)


GCS_BUCKET = 'walt-test'


@pytest.fixture(scope='session')
def gcs_emulator(tmp_path_factory):
  """A local Google Cloud Storage server (`tests/gcs_server.py`, in memory)
  holding bucket `walt-test`: a real non-local file system for `gs://`
  paths. Returns the environment that routes this process's and child
  processes' `gs://` I/O to it: gcsfs (epath's fsspec backend, forced with
  EPATH_USE_TF=false since TensorFlow is installed for the tests) and
  tensorstore (Orbax's arrays)."""
  import socket
  import subprocess
  import sys
  import time
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  log = tmp_path_factory.mktemp('gcs') / 'emulator.log'
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(log, 'w') as out:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'tests.gcs_server', str(port), GCS_BUCKET],
        stdout=out, stderr=out, cwd=root)
  url = f'http://localhost:{port}'
  env = {'STORAGE_EMULATOR_HOST': url, 'TENSORSTORE_GCS_HTTP_URL': url,
         'EPATH_USE_TF': 'false', 'GOOGLE_CLOUD_PROJECT': 'walt-test'}
  deadline = time.time() + 30
  while proc.poll() is None and time.time() < deadline:
    with socket.socket() as s:
      if s.connect_ex(('localhost', port)) == 0:
        break
    time.sleep(0.2)
  else:
    proc.kill()
    pytest.fail(f'the storage emulator did not start: {log.read_text()}')
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  from etils.epath import gpath
  gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access
  try:
    yield env
  finally:
    proc.kill()
    proc.wait()
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
    gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access


def _no_skips() -> bool:
  """`.ci/run` sets WALT_NO_SKIPS=1: every test extra is installed there, so
  a skip (a missing torch, transformers, TensorFlow, shellcheck...) means the
  install is broken and must fail instead of passing quietly."""
  return os.environ.get('WALT_NO_SKIPS', '') not in ('', '0')


def _as_failure(report, what: str) -> None:
  reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else (
      report.longrepr)
  report.outcome = 'failed'
  report.longrepr = (f'{what} skipped with WALT_NO_SKIPS set (CI installs '
                     f'every test extra): {reason}')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  del item, call
  report = (yield).get_result()
  if _no_skips() and report.skipped and not hasattr(report, 'wasxfail'):
    _as_failure(report, 'test')


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
  del collector
  report = (yield).get_result()
  if _no_skips() and report.skipped:
    _as_failure(report, 'module')
