"""The tests' Cloud Storage server: `gcp-storage-emulator` in memory, plus
the `x-goog-generation` header on object downloads, which the emulator
omits and tensorstore (Orbax's OCDBT checkpoints) requires.

    python -m tests.gcs_server PORT BUCKET
"""

import sys

from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects

_download = objects.download


def _download_with_generation(request, response, storage, *args, **kwargs):
  try:
    obj = storage.get_file_obj(request.params['bucket_name'],
                               request.params['object_id'])
    response['x-goog-generation'] = str(obj.get('generation') or 0)
    response['x-goog-metageneration'] = str(obj.get('metageneration') or 1)
  except Exception:  # pylint: disable=broad-except
    pass  # the original handler answers 404
  return _download(request, response, storage, *args, **kwargs)


def main(port: int, bucket: str) -> None:
  # `objects.get` (alt=media) looks `download` up at call time; the route
  # tables hold the function itself.
  objects.download = _download_with_generation
  server.HANDLERS = tuple(
      (pattern, {method: _download_with_generation if fn is _download else fn
                 for method, fn in methods.items()})
      for pattern, methods in server.HANDLERS)
  server.create_server('localhost', port, in_memory=True,
                       default_bucket=bucket).run()


if __name__ == '__main__':
  main(int(sys.argv[1]), sys.argv[2])
