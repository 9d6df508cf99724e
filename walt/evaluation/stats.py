"""Feature statistics for FVD / FID / IS, in float64 on the host.

- `FeatureStats`: streaming mean and covariance (Chan et al.'s pairwise update,
  so batches of any size merge without holding the features and without the
  cancellation of a raw sum of outer products).
- `frechet_distance`: Frechet distance between two Gaussians, with the trace of
  the matrix square root taken from the eigenvalues of the symmetric PSD
  matrix `sqrt(S1) S2 sqrt(S1)` (no complex parts, no `sqrtm` iteration).
- `inception_score`: exp E_x KL(p(y|x) || p(y)) over disjoint splits.
- `mean_std`: mean and (population) std over repeated groups.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from walt import storage
from walt import weight_files


@dataclasses.dataclass
class FeatureStats:
  """Running count, mean `[d]` and centred scatter `[d, d]` (float64)."""
  dim: int
  count: int = 0
  mean: np.ndarray | None = None
  scatter: np.ndarray | None = None

  def __post_init__(self):
    if self.mean is None:
      self.mean = np.zeros(self.dim, np.float64)
    if self.scatter is None:
      self.scatter = np.zeros((self.dim, self.dim), np.float64)

  @classmethod
  def from_moments(cls, mean, covariance, count: int) -> 'FeatureStats':
    """Stats with a given mean and (ddof=1) covariance, e.g. a reference
    `.npz`; `count` (>= 2) only weighs later merges."""
    mean = np.asarray(mean, np.float64)
    count = max(int(count), 2)
    return cls(len(mean), count, mean,
               np.asarray(covariance, np.float64) * (count - 1))

  def add(self, features) -> 'FeatureStats':
    """Adds a batch of features `[n, d]` (any float dtype)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[1] != self.dim:
      raise ValueError(f'features of shape {x.shape}, expected [n, {self.dim}]')
    if not np.all(np.isfinite(x)):
      raise ValueError('non-finite features: check the feature network input')
    if not len(x):
      return self
    mean = x.mean(axis=0)
    centred = x - mean
    self._merge(len(x), mean, centred.T @ centred)
    return self

  def merge(self, other: 'FeatureStats') -> 'FeatureStats':
    """Adds the statistics of another stream (e.g. another host)."""
    if other.dim != self.dim:
      raise ValueError(f'cannot merge {other.dim}-d into {self.dim}-d stats')
    if other.count:
      self._merge(other.count, other.mean, other.scatter)
    return self

  def _merge(self, n: int, mean: np.ndarray, scatter: np.ndarray) -> None:
    total = self.count + n
    delta = mean - self.mean
    self.scatter = (self.scatter + scatter
                    + np.outer(delta, delta) * (self.count * n / total))
    self.mean = self.mean + delta * (n / total)
    self.count = total

  @property
  def covariance(self) -> np.ndarray:
    """Unbiased (ddof=1) covariance, as `np.cov(x, rowvar=False)`."""
    if self.count < 2:
      raise ValueError(f'covariance needs >= 2 samples, have {self.count}')
    return self.scatter / (self.count - 1)

  def save(self, path: str) -> None:
    """`.npz` with `mu`, `sigma` (the ADM / pytorch-fid reference keys) and
    the count."""
    with storage.open(path, 'wb') as f:
      np.savez(f, mu=self.mean, sigma=self.covariance, count=self.count)


def load_reference(path: str, dim: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
  """`(mu, sigma)` from a reference `.npz` (read without pickle): ADM
  reference batches and pytorch-fid statistics store `mu` `[d]` and `sigma`
  `[d, d]`; `dim`: the feature size `d` they must have."""
  data = weight_files.load_npz(path)
  if 'mu' not in data or 'sigma' not in data:
    raise ValueError(f'{path} holds {sorted(data)}; expected `mu` and '
                     '`sigma` (an ADM reference batch or pytorch-fid stats)')
  mu, sigma = data['mu'], data['sigma']
  if dim is None:
    if mu.ndim != 1:
      raise ValueError(f'the reference statistics {path}: mu: expected '
                       f'shape (d,), found {mu.shape}')
    dim = mu.shape[0]
  weight_files.check_shapes({'mu': mu, 'sigma': sigma},
                            {'mu': (dim,), 'sigma': (dim, dim)},
                            f'the reference statistics {path}')
  return np.asarray(mu, np.float64), np.asarray(sigma, np.float64)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh((matrix + matrix.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
  """tr(sqrt(S1 S2)) for symmetric PSD S1, S2.

  S1 S2 is similar to the symmetric PSD sqrt(S1) S2 sqrt(S1), so the trace of
  its square root is the sum of the square roots of that matrix's eigenvalues.
  """
  root = _psd_sqrt(sigma1)
  inner = root @ sigma2 @ root
  w = np.linalg.eigvalsh((inner + inner.T) / 2)
  return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr(sqrt(S1 S2)), in float64."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
    raise ValueError(f'mismatched statistics: {mu1.shape} / {mu2.shape}, '
                     f'{sigma1.shape} / {sigma2.shape}')
  diff = mu1 - mu2
  value = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
           - 2.0 * trace_sqrt_product(sigma1, sigma2))
  return float(max(value, 0.0))


def stats_frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
  return frechet_distance(a.mean, a.covariance, b.mean, b.covariance)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def inception_score(logits, num_splits: int = 10) -> tuple[float, float]:
  """Mean and std of exp(E_x KL(p(y|x) || p(y))) over `num_splits` disjoint
  consecutive splits of `logits` `[n, classes]` (the ADM / Salimans et al.
  protocol; pass log-probabilities or logits)."""
  logits = np.asarray(logits, np.float64)
  n = len(logits)
  if num_splits < 1 or n < num_splits:
    raise ValueError(f'{n} samples cannot form {num_splits} splits')
  log_p = _log_softmax(logits)
  scores = []
  for part in np.array_split(log_p, num_splits):
    m = part.max(axis=0)
    log_py = m + np.log(np.exp(part - m).mean(axis=0))  # log mean p(y|x)
    p = np.exp(part)
    # 0 log 0 = 0: confident predictions have exact zeros.
    terms = np.where(p > 0, p * (part - log_py), 0.0)
    scores.append(np.exp(terms.sum(axis=1).mean()))
  return float(np.mean(scores)), float(np.std(scores))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and population std of repeated measurements (e.g. 4 x 10k FVD)."""
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std())
