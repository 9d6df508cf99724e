"""Writes tfds splits shard by shard (array_record, no TensorFlow).

The default `GeneratorBasedBuilder` writer hashes keys into a shuffle buffer
that spills through `tf.io.gfile` (i.e. needs TensorFlow) once a split passes
1 GB. Shard-by-shard writing keeps memory at one shard, needs no TensorFlow,
and keeps record i of a split = the i-th example generated.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping
from unittest import mock

import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core import split_builder as split_builder_lib
from tensorflow_datasets.core import writer as writer_lib

ShardFn = Callable[[], Iterable[tuple[object, dict]]]


def write_splits(builder: tfds.core.GeneratorBasedBuilder,
                 shards: Mapping[str, list[ShardFn]]) -> None:
  """Writes `shards[split]` (callables yielding `(key, example)`, in order)
  and records the split sizes in `builder.info`."""
  writer = split_builder_lib.SplitBuilder(
      split_dict=builder.info.splits, features=builder.info.features,
      dataset_size=builder.info.dataset_size, beam_options=None,
      beam_runner=None,
      example_writer=writer_lib.ExampleWriter(
          file_format=builder.info.file_format),
      ignore_duplicates=None, max_examples_per_split=None,
      shard_config=None)
  # tf.train.Example holds its features in a protobuf map, whose default
  # serialisation order varies between processes. Sorted keys make two
  # builds byte-identical files, so users can checksum them.
  with mock.patch.object(example_serializer.ExampleSerializer,
                         'serialize_example', _serialize_deterministically):
    futures = [writer.submit_shard_based_generation(
        split_name=split, example_gen_per_shard=list(fns),
        filename_template=builder._get_filename_template(split_name=split))  # pylint: disable=protected-access
               for split, fns in shards.items()]
    builder.info.set_splits(
        tfds.core.SplitDict([future.result() for future in futures]))


def _serialize_deterministically(serializer, example) -> bytes:
  return serializer.get_tf_example(example).SerializeToString(
      deterministic=True)
