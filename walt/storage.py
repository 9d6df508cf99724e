"""The one path layer: every file a job reads or writes goes through here.

Paths are strings: local paths or object-store URIs (`gs://bucket/dir`,
`s3://...`), served by `etils.epath` (the layer Orbax's checkpoints already
use; `gs://` needs `gcsfs`, installed with walt). Object stores have no
append and no rename, so:

- `AppendFile` (metrics.jsonl, TensorBoard event files) appends on a local
  disk and, on an object store, keeps the file's bytes and rewrites the
  object on every `flush` (these logs are small: kilobytes to a few MB);
- `local_copy(path)` gives writers that need a real file name (ffmpeg,
  image encoders) a temporary local file, uploaded when the block ends;
- `write_text` replaces a local file atomically (temporary file + rename);
  an object-store write is atomic by itself.

Data sets and latent caches are read by Grain from array_record files,
which need a local file system: `require_local` refuses URIs there with the
fix (copy to the VM's disk, or mount the bucket with gcsfuse).
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import tempfile
from typing import Any, Iterator

from etils import epath

REMOTE_SCHEMES = ('gs', 's3', 'az', 'hf')


def is_remote(path: str | os.PathLike) -> bool:
  """Whether `path` is an object-store URI (`gs://...`)."""
  text = os.fspath(path)
  return '://' in text and text.split('://', 1)[0] in REMOTE_SCHEMES


def resolve(path: str) -> str:
  """A job's path as the job uses it: `~` expanded and made absolute when
  local (so a job started from another directory finds it), unchanged when
  an object-store URI. Unknown schemes (`ftp://`) are refused."""
  path = os.fspath(path)
  if '://' in path:
    if not is_remote(path):
      raise ValueError(f'{path}: unsupported scheme (walt reads and writes '
                       f'local paths and {", ".join(REMOTE_SCHEMES)}:// URIs)')
    return path.rstrip('/')
  return os.path.abspath(os.path.expanduser(path))


def join(path: str, *parts: str) -> str:
  """`path/part/...` for local paths and URIs alike."""
  return os.fspath(epath.Path(path).joinpath(*parts)) if is_remote(path) \
      else os.path.join(path, *parts)


def exists(path: str) -> bool:
  return bool(path) and epath.Path(path).exists()


def isdir(path: str) -> bool:
  return bool(path) and epath.Path(path).is_dir()


def listdir(path: str) -> list[str]:
  """Names (not paths) of the entries of directory `path`; [] if absent."""
  p = epath.Path(path)
  if not p.is_dir():
    return []
  return sorted(child.name for child in p.iterdir())


def makedirs(path: str) -> None:
  """Creates `path` and its parents (object stores: nothing to create)."""
  epath.Path(path).mkdir(parents=True, exist_ok=True)


def move(src: str, dst: str) -> None:
  """Moves a file or a directory tree (object stores: copy, then delete)."""
  if not is_remote(src) and not is_remote(dst):
    os.replace(src, dst)
    return
  source, target = epath.Path(src), epath.Path(dst)
  if not source.is_dir():
    source.copy(target)
    source.unlink()
    return
  target.mkdir(parents=True, exist_ok=True)
  for child in source.iterdir():
    move(os.fspath(child), os.fspath(target / child.name))
  with contextlib.suppress(FileNotFoundError):  # gone with its last object
    source.rmtree()


def open(path: str, mode: str = 'r'):  # pylint: disable=redefined-builtin
  """A file object for `path` (the parent directory is created for writes)."""
  if any(m in mode for m in 'wax'):
    makedirs(os.path.dirname(path) if not is_remote(path)
             else os.fspath(epath.Path(path).parent))
  return epath.Path(path).open(mode)


def read_text(path: str) -> str:
  return epath.Path(path).read_text()


def read_bytes(path: str) -> bytes:
  return epath.Path(path).read_bytes()


def write_bytes(path: str, data: bytes) -> None:
  """Writes `data` to `path`, replacing it whole (never half written)."""
  if is_remote(path):
    makedirs(os.fspath(epath.Path(path).parent))
    epath.Path(path).write_bytes(data)
    return
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


def write_text(path: str, text: str) -> None:
  write_bytes(path, text.encode('utf-8'))


def read_json(path: str) -> Any:
  return json.loads(read_text(path))


def write_json(path: str, obj: Any, **kwargs) -> None:
  kwargs.setdefault('indent', 2)
  write_text(path, json.dumps(obj, **kwargs) + '\n')


class AppendFile:
  """An append-only log file (text or bytes) on any path.

  Local: the OS appends and `flush` hands the bytes to it. Object store:
  the existing object is read once, writes are kept, and `flush` rewrites
  the whole object, so a crashed job loses at most what it wrote since its
  last flush, as with a local file.
  """

  def __init__(self, path: str, binary: bool = False):
    self.path, self.binary = path, binary
    self._remote = is_remote(path)
    if self._remote:
      p = epath.Path(path)
      self._data = bytearray(p.read_bytes() if p.exists() else b'')
      self._dirty = False
    else:
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      self._file = builtins.open(path, 'ab')

  def write(self, data: str | bytes) -> int:
    raw = data.encode('utf-8') if isinstance(data, str) else bytes(data)
    if self._remote:
      self._data += raw
      self._dirty = True
      return len(raw)
    return self._file.write(raw)

  def flush(self) -> None:
    if not self._remote:
      self._file.flush()
    elif self._dirty:
      epath.Path(self.path).write_bytes(bytes(self._data))
      self._dirty = False

  def close(self) -> None:
    self.flush()
    if not self._remote:
      self._file.close()


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """A local file name to write `path` through: `path` itself when local
  (its directory created), else a temporary file uploaded to `path` when
  the block ends without an exception."""
  if not is_remote(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    yield path
    return
  suffix = os.path.splitext(path)[1]
  with tempfile.TemporaryDirectory(prefix='walt-upload-') as tmp:
    local = os.path.join(tmp, 'file' + suffix)
    yield local
    makedirs(os.fspath(epath.Path(path).parent))
    epath.Path(path).write_bytes(_read_local(local))


@contextlib.contextmanager
def local_input(path: str) -> Iterator[str]:
  """A local file name to read `path` from: `path` itself when local, else a
  temporary download (for readers that need a file name, e.g. ffmpeg)."""
  if not is_remote(path):
    yield path
    return
  suffix = os.path.splitext(path)[1]
  with tempfile.TemporaryDirectory(prefix='walt-download-') as tmp:
    local = os.path.join(tmp, 'file' + suffix)
    with builtins.open(local, 'wb') as f:
      f.write(epath.Path(path).read_bytes())
    yield local


def _read_local(path: str) -> bytes:
  with builtins.open(path, 'rb') as f:
    return f.read()


def require_local(path: str, field: str) -> None:
  """Refuses an object-store URI where Grain reads array_record files."""
  if path and is_remote(path):
    raise ValueError(
        f'{field}={path}: data sets and latent caches are read from a local '
        'file system (Grain reads array_record files with local file I/O). '
        'Copy them to the VM\'s disk, or mount the bucket with gcsfuse '
        '(gcsfuse --implicit-dirs BUCKET /mnt/BUCKET) and give the mount '
        'point. Workdirs, tokenizer workdirs and weights can be gs:// URIs.')
