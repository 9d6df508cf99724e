"""Timing and XLA-analysis helpers shared by the benchmark suites and the
tokenizer study. Figures are medians over repeats after a warm-up call, so
compilation and first-touch costs never enter them."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp


def median_seconds(fn: Callable[[], Any], repeats: int = 5,
                   warmup: int = 1) -> float:
  """Median wall seconds of `fn()` (its outputs blocked on)."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def matmul_peak(dtype: str = 'float32', n: int = 2048,
                repeats: int = 5) -> dict:
  """FLOP/s of an `n x n` matmul in `dtype` on the default device: the
  reference every utilisation figure is a fraction of."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.dtype(dtype))
  f = jax.jit(lambda x: x @ x)
  seconds = median_seconds(lambda: f(a), repeats)
  return {'dtype': dtype, 'n': n, 'seconds': seconds,
          'flops_per_sec': 2 * n ** 3 / seconds}


def _first(analysis):
  return analysis[0] if isinstance(analysis, (list, tuple)) else analysis


def xla_flops(compiled) -> float:
  """FLOPs XLA's cost analysis counts for a compiled function (a scanned or
  looped body is counted once, whatever its trip count)."""
  return float(_first(compiled.cost_analysis()).get('flops', 0.0))


def peak_bytes(compiled) -> int:
  """Peak device memory of a compiled function from XLA's memory analysis:
  arguments + outputs + temporaries, less what outputs alias (donated
  arguments)."""
  m = compiled.memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes
             + m.temp_size_in_bytes - m.alias_size_in_bytes)


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int = 5,
                        warmup: int = 1) -> dict[str, float]:
  """Median seconds of each `fn()`, the functions taking turns in every
  round so that a slow spell of a shared machine hits all of them alike
  (a ratio of two medians from one call is what the suites report)."""
  for fn in fns.values():
    for _ in range(warmup):
      jax.block_until_ready(fn())
  times = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}
