"""Su's "MAE is attention dropout" identities (https://kexue.fm/archives/8770), numerically, with the kept
positions of nn/token_drop.py: dropping key j is the elementwise product A * M with the column mask
M_ij = m_j followed by row renormalisation, E over masks of M is the all-p matrix (p = the keep probability;
the [CLS] column is always kept), so E[A * M] = pA and Norm(pA) = A."""
import jax
import jax.numpy as jnp
import numpy as np

from kexue_jax import vocab
from kexue_jax.nn import token_drop


def _norm(x):
  return x / x.sum(-1, keepdims=True)


def test_expected_column_mask_is_p_and_norm_of_pa_is_a():
  L, rate, draws = 13, 0.25, 4000
  K = token_drop.num_kept(L, rate)
  p = (K - 1) / (L - 1)
  assert p == 1 - rate                              # L - 1 = 12 bytes, 9 kept: no rounding
  tokens = np.arange(L, dtype=np.int32)[None]
  tokens[0, 0] = vocab.CLS_ID
  keep = jax.vmap(lambda k: token_drop.keep_drop_indices(k, jnp.asarray(tokens), K)[0][0])(
      jax.random.split(jax.random.key(0), draws))
  m_DL = np.zeros((draws, L))
  m_DL[np.arange(draws)[:, None], np.asarray(keep)] = 1.0
  M_mean = np.broadcast_to(m_DL.mean(0)[None, :], (L, L))          # E[M_ij] = E[m_j] for every row i
  want = np.full((L, L), p)
  want[:, 0] = 1.0
  assert np.abs(M_mean - want).max() < 5 * np.sqrt(p * (1 - p) / draws)
  # A row-stochastic attention matrix: dropping key j == Norm(A * M) (softmax over the kept keys only).
  S = np.random.default_rng(0).normal(size=(L, L))
  A = _norm(np.exp(S))
  m = m_DL[0].astype(bool)
  np.testing.assert_allclose(_norm(np.exp(S[:, m])), _norm(A * m[None, :])[:, m], rtol=1e-13)
  # E over masks of A * M = p A on the byte columns (Monte Carlo), and Norm(p A) = A exactly.
  AM_mean = (A[None] * m_DL[:, None, :]).mean(0)
  np.testing.assert_array_less(np.abs(AM_mean[:, 1:] - p * A[:, 1:]),
                               5 * A[:, 1:] * np.sqrt(p * (1 - p) / draws))
  np.testing.assert_allclose(_norm(p * A), A, rtol=1e-14)
  # i.i.d. Bernoulli(p) keep masks (Su's dropout view) give the same all-p expectation.
  bern = np.random.default_rng(1).random((draws, L)) < p
  assert np.abs(bern.mean(0) - p).max() < 5 * np.sqrt(p * (1 - p) / draws)
