"""Weight files from outside (converted public releases, files a config
names): flat `.npz` archives read without pickle and checked name by name,
shape by shape against the network before any array reaches it; Hugging
Face `.safetensors` files read with numpy.

Keys are '/'-joined parameter paths (`params/layer1_0/conv1/kernel`,
`Mixed_3b/Branch_0_Conv3d_0a_1x1/w`). `load_npz` never unpickles: object
arrays (the only `.npz` content that needs pickle) and non-numeric arrays
are refused with the file and key named. `check_shapes` names every
missing, unexpected or reshaped parameter, with the expected and the found
shape.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any, Mapping

import numpy as np

from walt import storage

_SHOWN = 10  # names listed per kind of mismatch


def flatten(tree, prefix: str = '') -> dict[str, Any]:
  """Nested mappings -> `{'a/b/c': leaf}`."""
  out = {}
  for k, v in tree.items():
    key = f'{prefix}{k}'
    if hasattr(v, 'items'):
      out.update(flatten(v, key + '/'))
    else:
      out[key] = v
  return out


def unflatten(flat: Mapping[str, Any]) -> dict:
  """`{'a/b/c': leaf}` -> nested dicts."""
  tree: dict = {}
  for key, v in flat.items():
    node = tree
    *parents, leaf = key.split('/')
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return tree


def load_npz(path: str) -> dict[str, np.ndarray]:
  """Every array of the `.npz` at `path`, read with `allow_pickle=False`.

  Raises:
    ValueError: not an `.npz` archive (e.g. a pickle or a `.npy`), or an
      array that is an object (pickled) or non-numeric array.
  """
  try:
    data = np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
  except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path} is not a readable .npz archive (weight files '
                     f'are read without pickle): {e}') from e
  if not isinstance(data, np.lib.npyio.NpzFile):
    raise ValueError(f'{path} holds a single array, not an .npz archive of '
                     'named arrays')
  out = {}
  with data:
    for key in data.files:
      try:
        value = data[key]
      except ValueError as e:  # object arrays need pickle
        raise ValueError(f'{path}: array {key!r} needs pickle to load '
                         f'(an object array); refused') from e
      if value.dtype.kind not in 'biuf':
        raise ValueError(f'{path}: array {key!r} has dtype {value.dtype}, '
                         'expected numbers')
      out[key] = value
  return out


# safetensors dtype -> numpy dtype of the stored bytes (BF16: uint16 bits,
# widened to float32 below).
_SAFETENSORS_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16,
    'BF16': np.uint16, 'I64': np.int64, 'I32': np.int32, 'I16': np.int16,
    'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_}


def load_safetensors(path: str) -> dict[str, np.ndarray]:
  """Every tensor of a `.safetensors` file (Hugging Face's format: an 8-byte
  little-endian header size, a JSON header of `name: {dtype, shape,
  data_offsets}`, the raw bytes), read with numpy (no torch, no pickle);
  bfloat16 tensors come back as float32.

  Raises:
    ValueError: not a safetensors file, or a dtype numpy cannot hold.
  """
  data = storage.read_bytes(path)
  try:
    size = int(np.frombuffer(data[:8], '<u8')[0])
    header = json.loads(data[8:8 + size])
  except (ValueError, IndexError, UnicodeDecodeError) as e:
    raise ValueError(f'{path} is not a safetensors file: {e}') from e
  body = memoryview(data)[8 + size:]
  out = {}
  for name, info in header.items():
    if name == '__metadata__':
      continue
    dtype = _SAFETENSORS_DTYPES.get(info['dtype'])
    if dtype is None:
      raise ValueError(f'{path}: tensor {name!r} has dtype {info["dtype"]}, '
                       f'not one of {sorted(_SAFETENSORS_DTYPES)}')
    start, end = info['data_offsets']
    array = np.frombuffer(body[start:end], np.dtype(dtype).newbyteorder('<'))
    if info['dtype'] == 'BF16':  # the high half of a float32
      array = (array.astype(np.uint32) << 16).view(np.float32)
    out[name] = array.reshape(info['shape'])
  return out


def _shape(x) -> tuple[int, ...]:
  shape = getattr(x, 'shape', None)
  return tuple(np.shape(x) if shape is None else shape)


def check_shapes(flat: Mapping[str, Any], expected: Mapping[str, Any],
                 what: str) -> None:
  """Raises a ValueError naming each parameter of `expected` (path ->
  array, `ShapeDtypeStruct` or shape tuple) that `flat` lacks or holds in
  another shape (`path: expected shape (..), found (..)`), and each name of
  `flat` the network does not have."""
  want = {k: tuple(v) if isinstance(v, (tuple, list)) else _shape(v)
          for k, v in expected.items()}
  got = {k: _shape(v) for k, v in flat.items()}
  wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
  missing = sorted(set(want) - set(got))
  extra = sorted(set(got) - set(want))
  if not (wrong or missing or extra):
    return

  def listed(names):
    more = len(names) - _SHOWN
    return ', '.join(names[:_SHOWN]) + (f' (and {more} more)' if more > 0
                                        else '')
  details = [f'{k}: expected shape {want[k]}, found {got[k]}'
             for k in wrong[:_SHOWN]]
  if len(wrong) > _SHOWN:
    details.append(f'{len(wrong) - _SHOWN} more wrong shapes')
  if missing:
    details.append(f'missing {listed(missing)}')
  if extra:
    details.append(f'unexpected {listed(extra)}')
  raise ValueError(f'{what} does not match the network: ' + '; '.join(details))
