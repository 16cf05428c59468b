"""File-level (clustered) standard errors: CR1 against a hand computation and the i.i.d. formula; the cluster
(and seed x cluster) bootstrap against its closed-form variance for balanced clusters."""
import numpy as np
import pytest

from kexue_jax.evals import clustered


def test_cluster_mean_se_literal():
  # y = 1,0 | 1,1 | 0,1: mean 2/3, cluster residual sums -1/3, 2/3, -1/3,
  # se^2 = G/(G-1) * (1/9 + 4/9 + 1/9) / N^2 = 3/2 * 2/3 / 36 = 1/36.
  mean, se = clustered.cluster_mean_se([1, 0, 1, 1, 0, 1], ["a", "a", "b", "b", "c", "c"])
  assert mean == pytest.approx(2 / 3, rel=1e-15) and se == pytest.approx(1 / 6, rel=1e-15)


def test_singleton_clusters_give_the_iid_se():
  y = np.random.default_rng(0).normal(size=37)
  mean, se = clustered.cluster_mean_se(y, np.arange(37))
  assert mean == pytest.approx(y.mean(), rel=1e-14)
  assert se == pytest.approx(y.std(ddof=1) / np.sqrt(37), rel=1e-12)


def test_cluster_bootstrap_matches_its_closed_form():
  """Equal cluster sizes m: the bootstrap mean is the mean of G drawn cluster means, so its variance is
  var_pop(cluster means) / G = (G - 1) / G * CR1^2. Monte Carlo: the SE of an SE from R resamples is
  about se / sqrt(2 (R - 1))."""
  rng = np.random.default_rng(1)
  G, m, R = 12, 5, 20_000
  cluster = np.repeat(np.arange(G), m)
  y = rng.normal(size=G)[cluster] + 0.5 * rng.normal(size=G * m)
  _, cr1 = clustered.cluster_mean_se(y, cluster)
  mean, se = clustered.cluster_bootstrap_se(y, cluster, num_resamples=R, seed=0)
  want = np.sqrt((G - 1) / G) * cr1
  assert mean == pytest.approx(y.mean(), rel=1e-14)
  assert abs(se - want) < 5 * want / np.sqrt(2 * (R - 1))


def test_seed_and_cluster_bootstrap_adds_both_variances():
  """y_sn = a_s + b_g(n), equal cluster sizes: a resample's mean is mean(drawn a) + mean(drawn b), independent,
  so its variance is var_pop(a) / S + var_pop(b) / G."""
  rng = np.random.default_rng(2)
  S, G, m, R = 5, 10, 3, 20_000
  cluster = np.repeat(np.arange(G), m)
  a, b = rng.normal(size=S), rng.normal(size=G)
  y = a[:, None] + b[cluster][None, :]
  mean, se = clustered.cluster_bootstrap_se(y, cluster, num_resamples=R, seed=0)
  want = np.sqrt(a.var() / S + b.var() / G)
  assert mean == pytest.approx(y.mean(), rel=1e-14)
  assert abs(se - want) < 5 * want / np.sqrt(2 * (R - 1))


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match=">= 2 clusters"):
    clustered.cluster_mean_se([1.0, 2.0], [0, 0])
  with pytest.raises(ValueError, match="N = len"):
    clustered.cluster_bootstrap_se(np.zeros((2, 3)), [0, 1])
  with pytest.raises(ValueError, match="shape \\[N\\]"):
    clustered.cluster_mean_se(np.zeros((2, 3)), [0, 1, 1])
