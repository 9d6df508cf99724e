"""The path layer (`walt.storage`) on a local disk and on `gs://` (a local
Cloud Storage emulator): every job output lands in the bucket, nothing in a
local folder named `gs:`, and a job resumes from a `gs://` workdir."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import GCS_BUCKET
from tests.conftest import TINY_DATASET
from walt import media
from walt import storage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(params=['local', 'gcs'])
def root(request, tmp_path):
  if request.param == 'local':
    return str(tmp_path / 'root')
  request.getfixturevalue('gcs_emulator')
  return f'gs://{GCS_BUCKET}/{request.node.name.replace("[", "_")[:-1]}'


def test_files_round_trip(root):
  run = storage.join(root, 'run')
  assert not storage.exists(run) and storage.listdir(run) == []
  storage.write_json(storage.join(run, 'eval', '7', 'results.json'),
                     {'fid': 1.5})
  storage.write_json(storage.join(run, 'eval', '12', 'results.json'),
                     {'fid': 1.0})
  assert storage.isdir(storage.join(run, 'eval'))
  assert storage.listdir(storage.join(run, 'eval')) == ['12', '7']
  assert storage.read_json(storage.join(run, 'eval', '7', 'results.json')) \
      == {'fid': 1.5}
  with storage.open(storage.join(run, 'x.npz'), 'wb') as f:
    np.savez(f, a=np.arange(3))
  with storage.open(storage.join(run, 'x.npz'), 'rb') as f:
    np.testing.assert_array_equal(np.load(f)['a'], np.arange(3))
  # Writers that need a local file name (ffmpeg, PNG encoders).
  image = np.random.default_rng(0).integers(0, 255, (8, 12, 3), np.uint8)
  media.write_image(storage.join(run, 'grid.png'), image)
  np.testing.assert_array_equal(
      media.read_image(storage.join(run, 'grid.png')), image)
  # A directory tree moves whole (object stores: copy, then delete).
  storage.move(storage.join(run, 'eval', '7'), storage.join(run, 'aside'))
  assert storage.listdir(storage.join(run, 'eval')) == ['12']
  assert storage.read_json(storage.join(run, 'aside', 'results.json')) == {
      'fid': 1.5}


def test_append_file_keeps_earlier_lines_across_reopen(root):
  """metrics.jsonl of a resumed job: the new process appends to what the
  first one wrote; what was not flushed is not visible yet."""
  path = storage.join(root, 'metrics.jsonl')
  log = storage.AppendFile(path)
  log.write('{"step": 1}\n')
  log.flush()
  log.write('{"step": 2}\n')
  assert storage.read_text(path) == '{"step": 1}\n'
  log.close()
  log = storage.AppendFile(path)
  log.write(b'{"step": 3}\n')
  log.close()
  assert [json.loads(line)['step'] for line in
          storage.read_text(path).splitlines()] == [1, 2, 3]


def test_metric_logger_writes_jsonl_tensorboard_and_videos_to_gcs(
    gcs_emulator, tmp_path):
  """metrics.jsonl, TensorBoard and sample videos in the bucket; the event
  file read back with TensorFlow's own event reader: every scalar at its
  step and value, the frame grid as a PNG image. Catches event records
  TensorBoard cannot read (a truncated or re-framed file) and scalars or
  images logged at the wrong step or with the wrong values."""
  del gcs_emulator
  from walt.train import metrics as metrics_lib
  workdir = f'gs://{GCS_BUCKET}/logger'
  logger = metrics_lib.MetricLogger(workdir, total_steps=3)
  for step in (1, 2, 3):
    logger.log(step, {'loss': 1.0 / step})
  logger.log(3, {'psnr': 21.5}, prefix='eval/')
  videos = np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 3),
                                             dtype=np.uint8)
  paths = logger.videos(3, 'samples', videos)
  logger.close()
  rows = [json.loads(line) for line in storage.read_text(
      storage.join(workdir, 'metrics.jsonl')).splitlines()]
  assert [r['step'] for r in rows] == [1, 2, 3, 3] and rows[1]['loss'] == 0.5
  assert rows[3] == {'step': 3, 'eval/psnr': 21.5}
  events = storage.listdir(storage.join(workdir, 'tensorboard'))
  assert len(events) == 1 and events[0].startswith('events.out.tfevents')
  local = tmp_path / events[0]
  local.write_bytes(storage.read_bytes(storage.join(workdir, 'tensorboard',
                                                    events[0])))
  tf = pytest.importorskip('tensorflow')
  scalars, images = {}, {}
  for event in tf.compat.v1.train.summary_iterator(str(local)):
    for value in event.summary.value:
      if value.HasField('image'):
        images[(value.tag, event.step)] = tf.io.decode_png(
            value.image.encoded_image_string).numpy()
      else:
        scalars.setdefault(value.tag, []).append(
            (event.step, value.simple_value))
  assert scalars['loss'] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
  assert scalars['eval/psnr'] == [(3, 21.5)]
  assert [s for s, _ in scalars['steps_per_sec']] == [1, 2, 3]
  assert set(scalars) == {'loss', 'eval/psnr', 'steps_per_sec'}
  # The grid: a row per video, its frames left to right.
  [(key, grid)] = images.items()
  assert key == ('samples', 3) and grid.shape == (16, 24, 3)
  for i in range(2):
    for j in range(3):
      np.testing.assert_array_equal(
          grid[8 * i:8 * i + 8, 8 * j:8 * j + 8], videos[i, j])
  assert all(p.startswith(workdir) and storage.exists(p) for p in paths)
  assert media.read_video(paths[0]).shape == (3, 8, 8, 3)


def test_paths_resolve_and_data_must_be_local(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert storage.resolve('gs://b/run/') == 'gs://b/run'
  assert storage.resolve('run') == str(tmp_path / 'run')
  assert storage.resolve('~/x') == os.path.expanduser('~/x')
  with pytest.raises(ValueError, match='unsupported scheme'):
    storage.resolve('ftp://host/run')
  from walt import preflight
  from walt.data import pipeline
  spec = pipeline.DataSpec(name=TINY_DATASET, split='train',
                           data_dir='gs://b/data')
  with pytest.raises(ValueError, match='data.data_dir=gs://b/data.*gcsfuse'):
    pipeline.data_source(spec)
  with pytest.raises(ValueError, match='latents.cache=gs://b/cache'):
    pipeline.data_source(pipeline.DataSpec(name='latent_cache', split='train',
                                           data_dir='gs://b/cache'))
  import ml_collections
  data = ml_collections.ConfigDict({'name': TINY_DATASET,
                                    'data_dir': 'gs://b/data'})
  problems = preflight.dataset(data, 'train')
  assert len(problems) == 1 and 'gcsfuse' in problems[0], problems


def _upload(local_dir: str, remote: str) -> None:
  for dirpath, _, files in os.walk(local_dir):
    for name in files:
      rel = os.path.relpath(os.path.join(dirpath, name), local_dir)
      with open(os.path.join(dirpath, name), 'rb') as f:
        storage.write_bytes(storage.join(remote, *rel.split(os.sep)), f.read())


@pytest.mark.slow
def test_denoiser_job_writes_everything_to_gcs_and_resumes_from_it(
    gcs_emulator, sprites_data_dir, tokenizer_dir, tmp_path):
  """`python -m walt.main --workdir=gs://...` with a `gs://` tokenizer
  workdir: metrics, TensorBoard, checkpoints, eval results and sample
  videos land in the bucket; a second run resumes from the bucket's
  checkpoint and appends to its metrics; nothing is written locally."""
  tokenizer = f'gs://{GCS_BUCKET}/tokenizer'
  _upload(tokenizer_dir, tokenizer)
  workdir = f'gs://{GCS_BUCKET}/denoiser'
  cwd = tmp_path / 'cwd'
  cwd.mkdir()

  def run(steps):
    args = [
        f'--config={ROOT}/configs/walt/sprites.py:quick',
        f'--workdir={workdir}',
        f'--config.data.name={TINY_DATASET}',
        f'--config.data.data_dir={sprites_data_dir}',
        '--config.data.frames=5', f'--config.tokenizer.workdir={tokenizer}',
        '--config.model.num_layers=2', '--config.model.width=32',
        '--config.model.num_heads=2', '--config.batch_size=8',
        f'--config.total_steps={steps}', '--config.log_every=1',
        '--config.checkpoint_every=2', f'--config.eval_every={steps}',
        '--config.eval.steps=2', '--config.eval.samples_per_class=1',
        '--config.eval.batch_size=12', '--config.eval.num_summary_videos=2',
        '--config.eval.reference_examples=0']
    env = {**os.environ, **gcs_emulator, 'PYTHONPATH': ROOT}
    r = subprocess.run([sys.executable, '-m', 'walt.main', *args], cwd=cwd,
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]

  run(2)
  run(4)
  rows = [json.loads(line) for line in storage.read_text(
      storage.join(workdir, 'metrics.jsonl')).splitlines()]
  assert [r['step'] for r in rows if 'loss' in r] == [1, 2, 3, 4]
  assert storage.listdir(storage.join(workdir, 'checkpoints')) == ['2', '4']
  assert storage.listdir(storage.join(workdir, 'eval')) == ['2', '4']
  results = storage.read_json(storage.join(workdir, 'eval', '4',
                                           'results.json'))
  assert results['step'] == 4 and 'class_accuracy' in results['metrics']
  samples = storage.listdir(storage.join(workdir, 'samples', '4'))
  assert 'class_samples.png' in samples and 'class_samples_0.mp4' in samples
  assert storage.listdir(storage.join(workdir, 'tensorboard'))
  assert list(cwd.iterdir()) == []  # no local folder named gs:
