"""kexue_jax/evals/ssl.py: the three rank statistics against NumPy float64 on matrices with a known spectrum
(rank 1, rank k, isotropic), and the linear probe scored on held-out data."""
import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax.evals import ssl

B, D = 256, 64


def np_entropy_rank(w):
  p = np.asarray(w, np.float64) / np.sum(w)
  p = p[p > 0]
  return float(np.exp(-np.sum(p * np.log(p))))


def np_stats(z, k):
  """Literal float64 definitions: SVD of z (uncentred) and eigenvalues of np.cov (centred, ddof 0)."""
  s = np.linalg.svd(z, compute_uv=False)
  lam = np.sort(np.linalg.eigvalsh(np.cov(z, rowvar=False, ddof=0)))[::-1]
  lam = np.where(lam > lam[0] * 1e-12, lam, 0.0)  # float64 rounding of exact zeros
  return {"sv_rank": np_entropy_rank(s), "cov_rank": np_entropy_rank(lam), "top_var": lam[:k].sum() / lam.sum()}


def with_spectrum(s, seed=0):
  """z = U diag(s) V^T with orthonormal U whose columns are orthogonal to the ones vector (so z has zero batch
  mean: uncentred singular values s, covariance eigenvalues s^2 / B) and orthonormal V."""
  rng = np.random.default_rng(seed)
  g = rng.normal(size=(B, len(s)))
  u, _ = np.linalg.qr(g - g.mean(0))
  v, _ = np.linalg.qr(rng.normal(size=(D, len(s))))
  return (u * s) @ v.T


CASES = {  # name: (singular values, k, expected sv rank, expected cov rank, expected top-k variance)
    "rank1": ([5.0], 1, 1.0, 1.0, 1.0),
    "rank4_equal": ([2.0] * 4, 3, 4.0, 4.0, 0.75),
    "rank3_unequal": ([4.0, 2.0, 1.0], 1, np_entropy_rank([4, 2, 1]), np_entropy_rank([16, 4, 1]), 16 / 21),
    "isotropic": ([3.0] * D, 3, float(D), float(D), 3 / D),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rank_statistics_known_spectrum(name):
  s, k, sv_rank, cov_rank, top_var = CASES[name]
  z = with_spectrum(np.asarray(s))
  ref = np_stats(z, k)
  # The NumPy float64 reference reproduces the analytic values of the constructed spectrum ...
  np.testing.assert_allclose([ref["sv_rank"], ref["cov_rank"], ref["top_var"]], [sv_rank, cov_rank, top_var],
                             rtol=1e-9)
  # ... and the float32 eigvalsh-of-Gram statistics match it (float32 eigensolver: relative 1e-4).
  zj = jnp.asarray(z, jnp.float32)
  got = ssl.rank_statistics(zj, top_k=k, prefix="z/")
  np.testing.assert_allclose(float(got["z/sv_rank"]), sv_rank, rtol=1e-4)
  np.testing.assert_allclose(float(got["z/cov_rank"]), cov_rank, rtol=1e-4)
  np.testing.assert_allclose(float(got[f"z/top{k}_var"]), top_var, rtol=1e-4)
  np.testing.assert_allclose(float(ssl.singular_value_rank(zj)), sv_rank, rtol=1e-4)
  np.testing.assert_allclose(float(ssl.covariance_rank(zj)), cov_rank, rtol=1e-4)
  np.testing.assert_allclose(float(ssl.top_k_variance(zj, k)), top_var, rtol=1e-4)
  np.testing.assert_allclose(float(got["z/std"]), np.std(z / np.linalg.norm(z, axis=1, keepdims=True), 0).mean(),
                             rtol=1e-4)


def test_rank_statistics_generic_and_wide():
  """A generic matrix with a non-zero mean (centring matters) and a wide one (B < D: the B x B Gram)."""
  rng = np.random.default_rng(1)
  for shape in ((B, D), (32, 96)):
    z = rng.normal(size=shape) * np.geomspace(3, 0.1, shape[1]) + 0.5
    ref = np_stats(z, 3)
    got = ssl.rank_statistics(jnp.asarray(z, jnp.float32))
    np.testing.assert_allclose([float(got["sv_rank"]), float(got["cov_rank"]), float(got["top3_var"])],
                               [ref["sv_rank"], ref["cov_rank"], ref["top_var"]], rtol=1e-4)


def test_sv_rank_overstates_a_variance_collapse():
  """The issue's case: three directions hold 99.5% of the variance; the covariance rank is ~2 while the
  singular-value rank is larger (it weighs directions by s, not s^2)."""
  s = np.concatenate([[10.0, 6.0, 3.0], np.full(D - 3, 0.1)])  # top-3: 99.6%, cov rank 2.3, sv rank 10
  z = jnp.asarray(with_spectrum(s), jnp.float32)
  ref = np_stats(with_spectrum(s), 3)
  assert ref["top_var"] > 0.995 and ref["cov_rank"] < 2.5 and ref["sv_rank"] > 4 * ref["cov_rank"]
  np.testing.assert_allclose(float(ssl.covariance_rank(z)), ref["cov_rank"], rtol=1e-4)
  np.testing.assert_allclose(float(ssl.singular_value_rank(z)), ref["sv_rank"], rtol=1e-4)


def test_linear_probe_scores_held_out_data():
  """Fit on one sample, score on a disjoint one drawn from the same distribution: the test accuracy is the
  float64 accuracy of the fitted (W, b) on the held-out set (standardised with the *training* statistics), and
  differs from the training accuracy (noisy labels: the probe cannot score the two sets alike)."""
  rng = np.random.default_rng(2)

  def sample(n):
    x = rng.normal(size=(n, 6)) * [1, 2, 1, 1, 3, 1] + [0, 1, 0, 0, -2, 0]
    y = (x[:, 0] + 0.5 * x[:, 1] - 0.5 + 0.7 * rng.normal(size=n) > 0).astype(int) + 2 * (x[:, 2] > 0.3)
    return x, y

  (xtr, ytr), (xte, yte) = sample(300), sample(200)
  out = ssl.linear_probe(xtr, ytr, xte, yte, l2=1e-3, steps=200)
  params = ssl._fit_jit(*((ssl.standardize(xtr, xte)[0]).astype(np.float32), ytr), 4, l2=1e-3, steps=200)  # pylint: disable=protected-access
  w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
  mu, sd = xtr.mean(0), xtr.std(0) + 1e-6  # standardised with the training set only
  acc_te = np.mean(np.argmax(((xte - mu) / sd) @ w + b, axis=1) == yte)
  acc_tr = np.mean(np.argmax(((xtr - mu) / sd) @ w + b, axis=1) == ytr)
  assert out["test_accuracy"] == pytest.approx(acc_te) and out["train_accuracy"] == pytest.approx(acc_tr)
  assert 0.6 < out["test_accuracy"] < 0.95 and out["test_accuracy"] != out["train_accuracy"]
