r"""Representation diagnostics and frozen-feature evaluations for self-supervised learning (SimSiam, ...).

Collapse statistics of a batch of embeddings z_BD (SimSiam §4.1; RankMe, Garrido et al. 2023; dimensional
collapse, Jing et al. 2022, arXiv 2110.09348):

    collapse_std(z)   = (1/D) sum_j std_i( z_ij / ||z_i|| )          (std over the batch, ddof 0)
                        ~ 1/sqrt(D) for isotropic Gaussian z; 0 when every z_i points the same way

Three rank statistics, all from the spectrum of one Gram matrix (``gram_eigenvalues``), side by side:

    singular_value_rank(z) = exp H(s / sum s)         s_k = singular values of z (not centred; RankMe)
    covariance_rank(z)     = exp H(lam / sum lam)     lam_k = eigenvalues of the covariance of z (centred)
                                                      = s_k(z - mean)^2 / B
    top_k_variance(z, k)   = sum_{k' <= k} lam_k' / sum lam   (the variance fraction of the top-k principal
                                                      components)

with H(p) = - sum_k p_k log p_k; 1 <= rank <= min(B, D), rank-1 collapse -> 1, r equal directions -> r.

Which one a collapse claim uses: a *variance* statement ("z spans ~2 directions", "rank <= 2") uses
``covariance_rank`` and ``top_k_variance``: they weigh directions by the variance they hold, lam ~ s^2, which is
what a dimensional collapse removes (Jing et al. 2022 read it off the covariance spectrum). ``singular_value_rank``
weighs by s and so counts weak directions more: a z whose top-3 principal components hold 99.5% of the variance
has a covariance rank ~2 but a singular-value rank ~5. It is reported for comparison with RankMe only; a threshold
calibrated on one statistic must not be applied to another. ``top_k_variance`` is the most direct collapse test
("the top k components hold >= X% of the variance"); ``collapse_std`` -> 0 tests the complete collapse to a point.

Cost: each statistic is one ``eigvalsh`` of the smaller of Z^T Z (D x D) and Z Z^T (B x B) (same non-zero
spectrum), cheaper than an SVD of z_BD. In float32 the Gram's eigenvalues carry an absolute error ~ eps lam_max,
so eigenvalues below n eps lam_max (n = the Gram's size; ``numpy.linalg.matrix_rank``'s tolerance) count as 0.

Frozen-feature evaluations (features f(x) of a trained or untrained network):

  knn_accuracy      cosine-similarity kNN with the training set as the memory bank (InstDisc / SimSiam's
                    monitor): the k most similar training features vote for their labels with weights
                    exp(sim / T) (T = None: one vote each); the class with the largest total wins
                    (ties: the lowest class index).
  linear_probe      multinomial logistic regression on features standardised with the training mean/std:
                    minimise  mean_i CE(W f_i + b, y_i) + (l2 / 2) ||W||_F^2  by full-batch L-BFGS
                    (optax.lbfgs, a fixed number of iterations, deterministic); accuracy on the test set.

BatchNorm statistics for frozen features: ``population_batch_stats`` replaces a network's running averages
by the exact statistics of a data set taken as one batch (every layer normalised in train mode by the
statistics of the whole set; "precise BN", Wu & Johnson 2021). This is how an *untrained* network gets
meaningful BN statistics (its running averages are still the initial (0, 1)), and it is applied alike to
every checkpoint so that all points of a curve are measured the same way.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

# ----------------------------------------------------------------------------------- Collapse statistics.


def l2_normalize(x, axis=-1, eps=1e-12):
  """x / max(||x||, eps), written as x * rsqrt(max(sum x^2, eps^2)) so that the gradient at x = 0 is finite
  (the derivative of jnp.linalg.norm at 0 is 0/0)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def collapse_std(z_BD):
  """Mean over channels of the std over the batch of z/||z|| (module docstring)."""
  zn_BD = l2_normalize(z_BD.astype(jnp.float32))
  return jnp.mean(jnp.std(zn_BD, axis=0))


def gram_eigenvalues(z_BD, *, center: bool):
  """Eigenvalues (descending, float32[min(B, D)]) of C = (1/B) Z^T Z, Z = z (minus its batch mean if center), via
  eigvalsh of the smaller Gram matrix; values below n eps lam_max (module docstring) are set to 0."""
  z = z_BD.astype(jnp.float32)
  if center:
    z = z - jnp.mean(z, axis=0, keepdims=True)
  b, d = z.shape
  gram = z.T @ z if d <= b else z @ z.T
  lam = jnp.linalg.eigvalsh(gram)[::-1] / b
  tol = gram.shape[0] * jnp.finfo(jnp.float32).eps * jnp.maximum(lam[0], 0.0)
  return jnp.where(lam > tol, lam, 0.0)


def entropy_rank(w, eps=1e-30):
  """exp(- sum_k p_k log p_k), p = w / sum w, for non-negative weights w (terms with p_k = 0 are 0)."""
  p = w / jnp.maximum(jnp.sum(w), eps)
  safe = jnp.where(p > 0, p, 1.0)
  return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(safe), 0.0)))


def singular_value_rank(z_BD):
  """exp H of the normalised singular values of z_BD, not centred (RankMe; module docstring)."""
  return entropy_rank(jnp.sqrt(gram_eigenvalues(z_BD, center=False)))


effective_rank = singular_value_rank  # the name used by the first SimSiam report


def covariance_rank(z_BD):
  """exp H of the normalised eigenvalues of the covariance of z_BD (module docstring): the collapse statistic."""
  return entropy_rank(gram_eigenvalues(z_BD, center=True))


def _top_k_fraction(lam, k: int):
  return jnp.sum(lam[:k]) / jnp.maximum(jnp.sum(lam), 1e-30)


def top_k_variance(z_BD, k: int):
  """Fraction of the total variance of z_BD held by its top-k principal components (module docstring)."""
  return _top_k_fraction(gram_eigenvalues(z_BD, center=True), k)


def rank_statistics(z_BD, *, top_k: int = 3, prefix: str = "") -> dict[str, jax.Array]:
  """{prefix + name: value} of collapse_std, the three rank statistics and top-k variance (module docstring),
  from two eigvalsh (uncentred and centred Gram)."""
  lam_c = gram_eigenvalues(z_BD, center=True)
  return {f"{prefix}std": collapse_std(z_BD),
          f"{prefix}sv_rank": entropy_rank(jnp.sqrt(gram_eigenvalues(z_BD, center=False))),
          f"{prefix}cov_rank": entropy_rank(lam_c),
          f"{prefix}top{top_k}_var": _top_k_fraction(lam_c, top_k)}


# --------------------------------------------------------------------------------- BatchNorm statistics.


def population_batch_stats(apply_train: Callable[[Any, Any], Any], variables: dict[str, Any], x) -> Any:
  """The 'batch_stats' a network would have if its running averages were the statistics of all of `x`.

  `apply_train(variables, x) -> new batch_stats` runs the network in training mode (batch statistics,
  `mutable=['batch_stats']`). A BatchNorm layer updates r <- m r + (1 - m) s with s the statistic of the
  batch; two passes from r = 0 and r = 1 give a = (1 - m) s and b = m + (1 - m) s, so m = b - a (taken as
  the median over each layer's entries, one momentum per layer) and s = a / (1 - m), without knowing m.
  Training-mode activations do not depend on r, so both passes see identical activations.
  """
  stats = variables["batch_stats"]
  a = apply_train({**variables, "batch_stats": jax.tree.map(jnp.zeros_like, stats)}, x)
  b = apply_train({**variables, "batch_stats": jax.tree.map(jnp.ones_like, stats)}, x)

  def solve(a_leaf, b_leaf):
    m = jnp.median(b_leaf - a_leaf)
    return a_leaf / (1.0 - m)

  return jax.tree.map(solve, a, b)


def batched_apply(fn: Callable[[Any], Any], x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
  """np.concatenate of fn(x[i:i + batch_size]) over the batches (the last one may be smaller)."""
  outs = [np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)]
  return np.concatenate(outs, axis=0)


# ----------------------------------------------------------------------------------------------- kNN.


@functools.partial(jax.jit, static_argnames="k")
def _topk_sims(q_QD, bank_ND, k: int):
  sims = l2_normalize(q_QD) @ l2_normalize(bank_ND).T
  return jax.lax.top_k(sims, k)


def knn_predict(train_feats, train_labels, test_feats, *, k: int = 20, temperature: float | None = 0.1,
                num_classes: int | None = None, chunk: int = 2048) -> np.ndarray:
  """Predicted labels of the test features (module docstring). Shapes [N, D], [N], [Q, D] -> [Q]."""
  train_labels = np.asarray(train_labels)
  num_classes = int(num_classes or train_labels.max() + 1)
  k = min(int(k), len(train_labels))
  bank = jnp.asarray(train_feats, jnp.float32)
  preds = []
  for i in range(0, len(test_feats), chunk):
    sims, idx = _topk_sims(jnp.asarray(test_feats[i:i + chunk], jnp.float32), bank, k)
    sims, idx = np.asarray(sims, np.float64), np.asarray(idx)
    w = np.ones_like(sims) if temperature is None else np.exp(sims / temperature)
    votes = np.zeros((len(idx), num_classes))
    np.add.at(votes, (np.arange(len(idx))[:, None], train_labels[idx]), w)
    preds.append(np.argmax(votes, axis=1))
  return np.concatenate(preds)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, **kw) -> float:
  return float(np.mean(knn_predict(train_feats, train_labels, test_feats, **kw) == np.asarray(test_labels)))


# -------------------------------------------------------------------------------------- Linear probe.


def standardize(train_feats, test_feats, eps=1e-6):
  """(f - mean_train) / (std_train + eps) for both sets."""
  mu = train_feats.mean(0, keepdims=True)
  sd = train_feats.std(0, keepdims=True) + eps
  return (train_feats - mu) / sd, (test_feats - mu) / sd


def probe_objective(params, x_ND, y_N, l2: float):
  """mean CE(x W + b, y) + (l2 / 2) ||W||^2."""
  logits = x_ND @ params["w"] + params["b"]
  logp = jax.nn.log_softmax(logits, axis=-1)
  ce = -jnp.mean(jnp.take_along_axis(logp, y_N[:, None], axis=-1))
  return ce + 0.5 * l2 * jnp.sum(params["w"] ** 2)


def fit_logistic_regression(x_ND, y_N, num_classes: int, *, l2: float = 1e-4, steps: int = 300):
  """Full-batch L-BFGS on probe_objective; returns {'w': [D, K], 'b': [K]} (float32, deterministic)."""
  x_ND = jnp.asarray(x_ND, jnp.float32)
  y_N = jnp.asarray(y_N, jnp.int32)
  params = {"w": jnp.zeros((x_ND.shape[1], num_classes), jnp.float32), "b": jnp.zeros((num_classes,), jnp.float32)}
  fun = lambda p: probe_objective(p, x_ND, y_N, l2)
  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(fun)

  def body(carry, _):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=fun)
    return (optax.apply_updates(p, updates), state), value

  (params, _), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
  return params


_fit_jit = jax.jit(fit_logistic_regression, static_argnames=("num_classes", "steps"))


def linear_probe(train_feats, train_labels, test_feats, test_labels, *, num_classes: int | None = None,
                 l2: float = 1e-4, steps: int = 300) -> dict[str, float]:
  """{'test_accuracy', 'train_accuracy'} of the probe (module docstring)."""
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  num_classes = int(num_classes or max(train_labels.max(), test_labels.max()) + 1)
  xtr, xte = standardize(np.asarray(train_feats, np.float64), np.asarray(test_feats, np.float64))
  params = _fit_jit(xtr.astype(np.float32), train_labels, num_classes, l2=l2, steps=steps)
  w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
  acc = lambda x, y: float(np.mean(np.argmax(x @ w + b, axis=1) == y))
  return {"test_accuracy": acc(xte, test_labels), "train_accuracy": acc(xtr, train_labels)}
