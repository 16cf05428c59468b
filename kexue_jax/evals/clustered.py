r"""Standard errors of a mean when the observations come in clusters (e.g. test windows cut from the same file).

Windows of one file are not independent, so the window-level SE sqrt(s^2 / N) is too small; these estimators
treat the G clusters (files) as the independent units (Cameron & Miller, "A Practitioner's Guide to
Cluster-Robust Inference", J. Human Resources 2015, §II-III; Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, for the bootstrap).

``cluster_mean_se(y_N, cluster_N)``: the mean ybar = sum_i y_i / N and its cluster-robust (CR1) SE,

    se^2 = G / (G - 1) * sum_g ( sum_{i in g} (y_i - ybar) )^2 / N^2,

which is s^2 / N (s^2 with ddof 1) when every cluster holds one observation.

``cluster_bootstrap_se(y, cluster_N, num_resamples, seed)``: the bootstrap SE of the same mean, resampling
whole clusters with replacement (the statistic of a resample is the mean over the windows of the drawn
clusters, a cluster drawn twice counting twice). ``y`` may carry a leading seed axis, y_SN (the same N
windows evaluated by S independently trained models); then each resample also draws S seeds with
replacement, and the statistic is the mean over the drawn seeds and clusters: the SE covers both the
training-seed and the test-set sampling. For the difference of two arms evaluated on the same windows pass
y = a - b (paired by window; with seeds, paired by seed index only if the seeds are matched).
"""
from __future__ import annotations

import numpy as np


def _clusters(y, cluster_N):
  y = np.asarray(y, np.float64)
  cluster_N = np.asarray(cluster_N)
  if y.ndim not in (1, 2) or y.shape[-1] != cluster_N.shape[0] or cluster_N.ndim != 1:
    raise ValueError(f"y must be [N] or [S, N] with N = len(cluster_N); got y {y.shape}, "
                     f"cluster_N {cluster_N.shape}.")
  _, g_N = np.unique(cluster_N, return_inverse=True)
  num_g = int(g_N.max()) + 1 if g_N.size else 0
  if num_g < 2:
    raise ValueError(f"need observations from >= 2 clusters for a clustered SE, got {num_g}.")
  return y, g_N.reshape(-1), num_g


def cluster_mean_se(y_N, cluster_N) -> tuple[float, float]:
  """(mean, CR1 cluster-robust SE of the mean) of y_N with cluster labels cluster_N (module docstring)."""
  y_N, g_N, G = _clusters(y_N, cluster_N)
  if y_N.ndim != 1:
    raise ValueError(f"cluster_mean_se takes y_N of shape [N]; got {y_N.shape} (average seeds first or use "
                     "cluster_bootstrap_se).")
  N = y_N.shape[0]
  mean = float(y_N.mean())
  score_G = np.bincount(g_N, weights=y_N - mean, minlength=G)
  return mean, float(np.sqrt(G / (G - 1) * np.sum(score_G ** 2) / N ** 2))


def cluster_bootstrap_se(y, cluster_N, *, num_resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
  """(mean, bootstrap SE) resampling clusters (and seeds for y_SN) with replacement (module docstring)."""
  y_SN, g_N, G = _clusters(y, cluster_N)
  if num_resamples < 2:
    raise ValueError(f"num_resamples must be >= 2, got {num_resamples}.")
  y_SN = y_SN.reshape(-1, y_SN.shape[-1])
  S = y_SN.shape[0]
  sum_SG = np.stack([np.bincount(g_N, weights=row, minlength=G) for row in y_SN])
  count_G = np.bincount(g_N, minlength=G).astype(np.float64)
  rng = np.random.default_rng(seed)
  draws_RG = rng.integers(G, size=(num_resamples, G))
  weight_RG = np.stack([np.bincount(d, minlength=G) for d in draws_RG]).astype(np.float64)
  seeds_RS = rng.integers(S, size=(num_resamples, S)) if S > 1 else np.zeros((num_resamples, 1), np.int64)
  seed_sum_RG = sum_SG[seeds_RS].mean(axis=1)                     # mean over the drawn seeds, per cluster
  stats_R = np.sum(weight_RG * seed_sum_RG, axis=1) / (weight_RG @ count_G)
  return float(y_SN.mean()), float(np.std(stats_R, ddof=1))
