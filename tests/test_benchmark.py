"""The benchmark's analytic FLOP counts and its command line (timing itself
belongs to `python -m walt.benchmark`, never to tests)."""

import jax
from absl import app
import pytest

from walt.benchmark import __main__ as bench_main
from walt.benchmark import models
from walt.benchmark import timing


@pytest.mark.slow
@pytest.mark.parametrize('window', ['window', 'full'])
def test_analytic_flops_match_xla(window):
  cfg = models.denoiser_config((3, 16, 16, 4), 64, 2, 2, window=window)
  runner = models.denoiser_runner(cfg, 2)
  analytic = models.train_flops(cfg, 2)
  xla = timing.xla_flops(runner.compiled)
  # XLA also counts the elementwise work (norms, softmax, Adam): a few %.
  assert analytic <= xla <= 1.25 * analytic, (analytic, xla)


@pytest.mark.slow
def test_dit_flops_match_xla_and_windows_save_flops():
  runner = models.dit_runner((3, 16, 16, 4), 64, 2, 2, 2)
  analytic = models.dit_train_flops(64, 2, 3 * 256, 2, 4)
  xla = timing.xla_flops(runner.compiled)
  assert analytic <= xla <= 1.25 * analytic, (analytic, xla)
  windowed = models.denoiser_config((3, 16, 16, 4), 64, 2, 2)
  full = models.denoiser_config((3, 16, 16, 4), 64, 2, 2, window='full')
  assert models.train_flops(windowed, 2) < models.train_flops(full, 2)
  assert full.windows() == ((3, 16, 16), (3, 16, 16))


def test_unknown_suite_is_a_usage_error():
  assert bench_main.selected('peer, remat') == ['peer', 'remat']
  assert bench_main.selected('all')[0] == 'matmul_peak'
  with pytest.raises(app.UsageError, match='unknown'):
    bench_main.selected('peer,fastest')


def test_peak_bytes_counts_what_a_function_keeps():
  small = jax.jit(lambda x: x * 2).lower(jax.ShapeDtypeStruct(
      (256, 256), 'float32')).compile()
  big = jax.jit(lambda x: (x @ x.T) @ x).lower(jax.ShapeDtypeStruct(
      (2048, 256), 'float32')).compile()
  assert timing.peak_bytes(small) >= 2 * 256 * 256 * 4
  assert timing.peak_bytes(big) > 2048 * 2048 * 4  # the [2048, 2048] temp


def test_profile_names_model_parts():
  from walt.benchmark import profile  # pylint: disable=g-import-not-at-top
  assert profile.part('jit(step)/transpose(jvp(Denoiser))/closed_call/'
                      'layers/spatial/attention/query/dot_general') == (
                          'B attention/query')
  assert profile.part('jit(step)/jvp(DiT)/block_3/mlp_in/dot_general') == (
      'F mlp_in')
  hlo = ('  %fusion.3 = f32[2]{0} add(%a, %b), metadata={op_name="jit(step)/'
         'jvp(Denoiser)/mlp_in/add"}\n')
  assert profile.op_names(hlo) == {'fusion.3': 'jit(step)/jvp(Denoiser)/'
                                   'mlp_in/add'}
