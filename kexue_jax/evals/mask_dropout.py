r"""MLM and MAE seen as dropout (Su Jianlin, https://kexue.fm/archives/8770): two measurements of the view.

``drift``: Su's consistency question. Dropout trains a network whose prediction at inference is meant to be the
average over masks; an MLM is pre-trained on BERT-masked inputs (Devlin et al. 2019, arXiv 1810.04805: rate r,
80% [MASK] / 10% random / 10% kept) but fine-tuned and used on clean ones. Su's correction replaces every
embedding E_i by its expectation under the masking, E_i <- (1 - r) E_i + r (0.8 E_[MASK] + 0.1 E_i + 0.1 Avg E)
(``tasks.mlm.embedding_correction``). On clean windows x, with h the final hidden states and P the MLM
distribution, P̄ = (1/K) sum_k P(x masked by draw k) and h̄ likewise over K Monte-Carlo maskings, means over the
byte positions of

    1 - cos(h_corr, h),  1 - cos(h̄, h),  1 - cos(h̄, h_corr),  KL(P̄ || P),  KL(P̄ || P_corr),
    the unmasked MLM accuracy [argmax P = x] of the plain and the corrected model;

and per window w the KL gain g_w = mean over its bytes of KL(P̄ || P) - KL(P̄ || P_corr) (> 0: the corrected
model is closer to the masked-input average), averaged over windows with a file-clustered SE
(evals/clustered.py). g is linear in P̄, so a few draws add variance (which the SE covers), not bias.

``mask_identity``: E over masks of the elementwise product M̃_1 ⊗ … ⊗ M̃_n is the all-p matrix (Su's identity
behind "MAE = attention dropout"), checked by exact enumeration in float64.
"""
from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from kexue_jax.evals import clustered
from kexue_jax.tasks import mlm


def cos_dist(a, b):
  """1 - cos(a, b) along the last axis."""
  a = a / np.linalg.norm(a, axis=-1, keepdims=True)
  b = b / np.linalg.norm(b, axis=-1, keepdims=True)
  return 1.0 - (a * b).sum(-1)


def drift(task: mlm.MLMTask, params, tokens_NL: np.ndarray, file_N: np.ndarray, *, mc_draws: int = 8,
          batch: int = 64) -> dict:
  """The measurements of the module docstring for the MLM ``task`` with ``params`` (plain) and the params
  corrected at the task's mask rate, on clean windows tokens_NL cut from files file_N (>= 2 files). Masking
  draw k of every batch uses the key jax.random.key(1000 + k)."""
  corrected = mlm.correct_params(params, task.rate, mask_frac=task.mask_frac, random_frac=task.random_frac)

  @jax.jit
  def forward(params, tok):
    logits, h = task.model.apply({"params": params}, tok, return_hidden=True)
    return jax.nn.log_softmax(logits, -1), h.astype(jnp.float32)

  @jax.jit
  def masked_forward(params, tok, key):
    inp, _ = mlm.bert_mask(key, tok, tok < mlm.NUM_BYTES, rate=task.rate, mask_frac=task.mask_frac,
                           random_frac=task.random_frac)
    return forward(params, inp)

  f64 = lambda outs: tuple(np.asarray(x, np.float64) for x in outs)
  sums, count, gain_N = {}, 0.0, []
  for i in range(0, len(tokens_NL), batch):
    tok = jnp.asarray(tokens_NL[i:i + batch])
    byte = np.asarray(tok) < mlm.NUM_BYTES
    (lp_p, h_p), (lp_c, h_c) = f64(forward(params, tok)), f64(forward(corrected, tok))
    h_mc, p_mc = 0.0, 0.0
    for k in range(mc_draws):
      lp_k, h_k = f64(masked_forward(params, tok, jax.random.key(1000 + k)))
      h_mc, p_mc = h_mc + h_k / mc_draws, p_mc + np.exp(lp_k) / mc_draws
    log_pmc = np.log(np.maximum(p_mc, 1e-30))
    vals = {
        "cos_dist_corrected_vs_plain": cos_dist(h_c, h_p),
        "cos_dist_mc_vs_plain": cos_dist(h_mc, h_p),
        "cos_dist_mc_vs_corrected": cos_dist(h_mc, h_c),
        "kl_mc_vs_plain": (p_mc * (log_pmc - lp_p)).sum(-1),
        "kl_mc_vs_corrected": (p_mc * (log_pmc - lp_c)).sum(-1),
        "acc_unmasked_plain": (lp_p.argmax(-1) == np.asarray(tok)).astype(np.float64),
        "acc_unmasked_corrected": (lp_c.argmax(-1) == np.asarray(tok)).astype(np.float64),
    }
    for k, v in vals.items():
      sums[k] = sums.get(k, 0.0) + float(v[byte].sum())
    count += float(byte.sum())
    gain_BL = vals["kl_mc_vs_plain"] - vals["kl_mc_vs_corrected"]
    gain_N.append((gain_BL * byte).sum(-1) / byte.sum(-1))
  out = {k: v / count for k, v in sums.items()}
  gain_N, files = np.concatenate(gain_N), np.unique(file_N)
  out["kl_gain"], out["kl_gain_se"] = clustered.cluster_mean_se(gain_N, file_N)
  out.update(kl_gain_by_file={str(f): float(gain_N[file_N == f].mean()) for f in files}, mc_draws=mc_draws,
             num_windows=int(len(tokens_NL)), num_files=int(len(files)), correction_r=task.rate)
  return out


def mask_identity(n: int = 8, kept: int = 6) -> dict:
  """E[M̃_1 ⊗ ... ⊗ M̃_n] = the all-p matrix (module docstring), by exact enumeration in float64.

  M̃_i is the n x n all-ones matrix when token i is kept and the all-ones matrix with column i zeroed when it is
  dropped; the elementwise product over i therefore has column j equal to keep_j. Two mask laws: i.i.d.
  keep_i ~ Bernoulli(p) (Su's dropout view; all 2^n masks weighted by p^k (1-p)^(n-k)) and exactly `kept` of n
  kept, a uniform subset (DropToken / the MAE encoder; all C(n, kept) subsets, p = kept / n). Returns the
  largest |E - p| of each and max |Norm(pA) - A| for a random row-stochastic A (Norm: row renormalisation).
  """
  def product(keep):   # the elementwise product of the M̃_i
    out = np.ones((n, n))
    for i in np.flatnonzero(~np.asarray(keep, bool)):
      out[:, i] = 0.0
    return out

  p = kept / n
  masks = list(itertools.product((0, 1), repeat=n))
  bern = sum(p ** sum(m) * (1 - p) ** (n - sum(m)) * product(m) for m in masks)
  subsets = [m for m in masks if sum(m) == kept]
  fixed = sum(product(m) for m in subsets) / len(subsets)
  a = np.exp(np.random.default_rng(0).normal(size=(n, n)))
  a /= a.sum(-1, keepdims=True)
  pa = p * a
  return {"n": n, "p": p, "bernoulli_masks": len(masks), "subsets": len(subsets),
          "max_dev_bernoulli": float(np.abs(bern - p).max()), "max_dev_subsets": float(np.abs(fixed - p).max()),
          "max_dev_norm": float(np.abs(pa / pa.sum(-1, keepdims=True) - a).max())}
