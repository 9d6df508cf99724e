"""Frechet distance, streaming statistics, Inception Score."""

import numpy as np
import pytest
import scipy.linalg

from walt.evaluation import stats


def _random_cov(rng, d, rank=None):
  a = rng.normal(size=(d, rank or 2 * d))
  return a @ a.T / (rank or 2 * d)


def _scipy_fd(mu1, s1, mu2, s2):
  """The pytorch-fid / ADM computation: scipy sqrtm of the product."""
  covmean, _ = scipy.linalg.sqrtm(s1 @ s2, disp=False)
  covmean = covmean.real
  diff = mu1 - mu2
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def _fd_of_features(a, b):
  """FD of two feature sets `[n, d]`, computed another way (exact when
  n < d, where sqrtm struggles): for centred A, B, S1 S2 has the nonzero
  eigenvalues of M M^T / c, M = A B^T, c = (n1 - 1)(n2 - 1), so
  tr sqrt(S1 S2) is the sum of M's singular values over sqrt(c)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  ca, cb = a - a.mean(0), b - b.mean(0)
  na, nb = len(a) - 1, len(b) - 1
  tr_sqrt = np.linalg.svd(ca @ cb.T, compute_uv=False).sum() / np.sqrt(na * nb)
  diff = a.mean(0) - b.mean(0)
  return float(diff @ diff + np.sum(ca ** 2) / na + np.sum(cb ** 2) / nb
               - 2 * tr_sqrt)


def test_frechet_distance_closed_forms():
  rng = np.random.default_rng(0)
  d = 6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  # Isotropic: FD = |mu1 - mu2|^2 + d (a - b)^2 for a^2 I vs b^2 I.
  a, b = 1.5, 0.5
  expected = np.sum((mu1 - mu2) ** 2) + d * (a - b) ** 2
  got = stats.frechet_distance(mu1, a * a * np.eye(d), mu2, b * b * np.eye(d))
  np.testing.assert_allclose(got, expected, rtol=1e-12)
  # Commuting diagonal covariances: sum (sqrt(s1) - sqrt(s2))^2.
  s1, s2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
  np.testing.assert_allclose(
      stats.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)), expected,
      rtol=1e-12)
  # 1-D: (m1 - m2)^2 + (sd1 - sd2)^2.
  np.testing.assert_allclose(
      stats.frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]), 9.0 + 1.0)


def test_frechet_distance_matches_scipy_sqrtm():
  rng = np.random.default_rng(1)
  for d in (3, 16, 64):
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    np.testing.assert_allclose(stats.frechet_distance(mu1, s1, mu2, s2),
                               _scipy_fd(mu1, s1, mu2, s2), rtol=1e-8)
  # Rank-deficient covariances (fewer samples than dimensions), where the
  # naive sqrtm picks up imaginary parts.
  s1, s2 = _random_cov(rng, 32, rank=8), _random_cov(rng, 32, rank=8)
  mu = rng.normal(size=32)
  np.testing.assert_allclose(stats.frechet_distance(mu, s1, mu, s2),
                             _scipy_fd(mu, s1, mu, s2), rtol=1e-6)


def test_frechet_distance_of_few_samples_in_many_dimensions():
  """Fewer samples than dimensions (the sprites eval: 16 clips, 128-d
  features): rank-deficient covariances, against the SVD form."""
  rng = np.random.default_rng(7)
  for n1, n2, d in ((16, 16, 128), (10, 24, 64), (40, 40, 32)):
    a = np.maximum(rng.normal(size=(n1, d)) + 0.3, 0)  # ReLU-like features
    b = np.maximum(rng.normal(size=(n2, d)), 0)
    got = stats.stats_frechet_distance(stats.FeatureStats(d).add(a),
                                       stats.FeatureStats(d).add(b))
    assert got == pytest.approx(_fd_of_features(a, b), rel=1e-6)


def test_frechet_distance_of_identical_stats_is_zero():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(500, 20)) @ rng.normal(size=(20, 20))
  s = stats.FeatureStats(20).add(x)
  assert stats.stats_frechet_distance(s, s) == pytest.approx(0.0, abs=1e-8)
  with pytest.raises(ValueError, match='mismatched'):
    stats.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_frechet_distance_grows_with_shift_and_noise():
  """Features against themselves moved by a shift s (same covariance): FD
  is exactly s^2; against themselves plus noise: FD grows with its size."""
  rng = np.random.default_rng(5)
  x = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))
  u = rng.normal(size=8)
  u /= np.linalg.norm(u)
  s = lambda y: stats.FeatureStats(8).add(y)
  base = s(x)
  for shift in (0.5, 1.0, 2.0):
    assert stats.stats_frechet_distance(base, s(x + shift * u)) == (
        pytest.approx(shift ** 2, rel=1e-9))
  noise = rng.normal(size=x.shape)
  fds = [stats.stats_frechet_distance(base, s(x + sigma * noise))
         for sigma in (0.0, 0.1, 0.3, 1.0)]
  assert fds[0] == pytest.approx(0.0, abs=1e-9)
  assert 0 < fds[1] < fds[2] < fds[3], fds


def test_sampled_gaussians_approach_the_closed_form():
  """FD of the streamed statistics of samples from two known Gaussians
  tends to the Gaussians' FD (computed with scipy)."""
  rng = np.random.default_rng(6)
  d = 4
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
  exact = _scipy_fd(mu1, s1, mu2, s2)
  a = stats.FeatureStats(d)
  b = stats.FeatureStats(d)
  for _ in range(10):
    a.add(rng.multivariate_normal(mu1, s1, 20_000))
    b.add(rng.multivariate_normal(mu2, s2, 20_000))
  assert stats.stats_frechet_distance(a, b) == pytest.approx(exact, rel=0.02)


def test_streaming_stats_equal_batch_stats():
  rng = np.random.default_rng(3)
  x = (rng.normal(size=(1001, 12)) * 100 + 1e4).astype(np.float32)
  streamed = stats.FeatureStats(12)
  for chunk in np.array_split(x, [1, 7, 300, 301, 640]):  # incl. sizes 1, 0
    streamed.add(chunk)
  # Two hosts' streams merged == one stream.
  a = stats.FeatureStats(12).add(x[:400])
  merged = a.merge(stats.FeatureStats(12).add(x[400:]))
  x64 = x.astype(np.float64)
  for s in (streamed, merged):
    assert s.count == len(x)
    np.testing.assert_allclose(s.mean, x64.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(s.covariance, np.cov(x64, rowvar=False),
                               rtol=1e-10)
  with pytest.raises(ValueError, match='non-finite'):
    stats.FeatureStats(2).add([[0.0, np.nan]])
  with pytest.raises(ValueError, match='expected'):
    stats.FeatureStats(2).add(np.zeros((3, 5)))


def test_reference_stats_round_trip(tmp_path):
  rng = np.random.default_rng(4)
  s = stats.FeatureStats(5).add(rng.normal(size=(50, 5)))
  s.save(str(tmp_path / 'ref.npz'))
  mu, sigma = stats.load_reference(str(tmp_path / 'ref.npz'))
  np.testing.assert_allclose(mu, s.mean)
  np.testing.assert_allclose(sigma, s.covariance)
  np.savez(tmp_path / 'bad.npz', arr_0=np.zeros(3))
  with pytest.raises(ValueError, match='mu'):
    stats.load_reference(str(tmp_path / 'bad.npz'))


def test_inception_score():
  # Uniform predictions: p(y|x) = p(y), IS = 1 exactly.
  mean, std = stats.inception_score(np.zeros((100, 1000)), num_splits=10)
  assert mean == pytest.approx(1.0) and std == pytest.approx(0.0)
  # Confident, perfectly balanced predictions over k classes: IS = k.
  k = 8
  logits = np.full((80, k), -1e4)
  logits[np.arange(80), np.arange(80) % k] = 0.0
  mean, _ = stats.inception_score(logits, num_splits=2)
  assert mean == pytest.approx(k, rel=1e-6)
  # Confident but all one class: IS = 1.
  mean, _ = stats.inception_score(np.tile(logits[:1], (80, 1)), num_splits=4)
  assert mean == pytest.approx(1.0)
  with pytest.raises(ValueError, match='splits'):
    stats.inception_score(np.zeros((5, 3)), num_splits=10)


def test_mean_std():
  assert stats.mean_std([1.0, 3.0]) == (2.0, 1.0)
