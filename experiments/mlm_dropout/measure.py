"""Measurements of the MLM/MAE study besides training (issues #8, #17): representation drift under Su's embedding
correction (with a file-level SE), the test set's classes and files, Su's MAE mask identity checked by exact
enumeration. The step-time benchmark is benchmarks/mlm_step_time.py. Used by experiments/mlm_dropout/study.py."""
from __future__ import annotations

import os

import numpy as np

from kexue_jax import config_lib

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                       "mlm_dropout")
DROPS = (0.0, 0.1, 0.15, 0.25, 0.5)
CORRECTION_R = 0.15


def load_config(name: str, arg: str = ""):
  """configs/mlm_dropout/<name> with its argument string (e.g. "mode=mae,rate=0.5")."""
  return config_lib.load_config(os.path.join(CONFIGS, name) + f":{arg}")


def cos_dist(a, b):
  """1 - cos(a, b) along the last axis."""
  a = a / np.linalg.norm(a, axis=-1, keepdims=True)
  b = b / np.linalg.norm(b, axis=-1, keepdims=True)
  return 1.0 - (a * b).sum(-1)


def drift_study(pre_config, workdir: str, test_config, mc_draws: int = 8, batch: int = 64) -> dict:
  """Su's consistency question on the clean test windows of `test_config` (report_template.md: "Representation
  drift"), for the MLM encoder of the `pre_config` run in `workdir` with and without the correction at its rate.

  Means over byte positions: 1 - cos between final hidden states h (corrected vs plain; the mean h̄ over `mc_draws`
  BERT maskings vs each), KL(P̄ || P) of the MLM distributions, the unmasked accuracy. kl_gain: the mean over
  windows of KL(P̄||P plain) - KL(P̄||P corrected), with its file-clustered SE (evals/clustered.py) and per-file
  means; it is linear in P̄, so few draws add variance (which the SE covers), not bias.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from kexue_jax.evals import clustered  # pylint: disable=g-import-not-at-top
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  task = mlm.MLMTask(pre_config)
  state, _ = checkpoint.load_state(workdir)
  plain = state["params"]
  corrected = mlm.correct_params(plain, task.rate, mask_frac=task.mask_frac, random_frac=task.random_frac)
  ev = list(pipeline.make_eval_iter(test_config.data, split=test_config.data.eval_split, global_batch_size=batch))
  tokens, file_N = (np.concatenate([b[k] for b in ev]) for k in ("tokens", "file"))

  @jax.jit
  def forward(params, tok):
    logits, h = task.model.apply({"params": params}, tok, return_hidden=True)
    return jax.nn.log_softmax(logits, -1), h.astype(jnp.float32)

  @jax.jit
  def masked_forward(params, tok, key):
    inp, _ = mlm.bert_mask(key, tok, tok < mlm.NUM_BYTES, rate=task.rate, mask_frac=task.mask_frac,
                           random_frac=task.random_frac)
    return forward(params, inp)

  sums, count, gain_N = {}, 0.0, []
  for i in range(0, len(tokens), batch):
    tok = jnp.asarray(tokens[i:i + batch])
    byte = np.asarray(tok) < mlm.NUM_BYTES
    lp_p, h_p = (np.asarray(x, np.float64) for x in forward(plain, tok))
    lp_c, h_c = (np.asarray(x, np.float64) for x in forward(corrected, tok))
    h_mc, p_mc = 0.0, 0.0
    for k in range(mc_draws):
      lp_k, h_k = (np.asarray(x, np.float64) for x in masked_forward(plain, tok, jax.random.key(1000 + k)))
      h_mc, p_mc = h_mc + h_k / mc_draws, p_mc + np.exp(lp_k) / mc_draws
    log_pmc = np.log(np.maximum(p_mc, 1e-30))
    tok_np = np.asarray(tok)
    vals = {
        "cos_dist_corrected_vs_plain": cos_dist(h_c, h_p),
        "cos_dist_mc_vs_plain": cos_dist(h_mc, h_p),
        "cos_dist_mc_vs_corrected": cos_dist(h_mc, h_c),
        "kl_mc_vs_plain": (p_mc * (log_pmc - lp_p)).sum(-1),
        "kl_mc_vs_corrected": (p_mc * (log_pmc - lp_c)).sum(-1),
        "acc_unmasked_plain": (lp_p.argmax(-1) == tok_np).astype(np.float64),
        "acc_unmasked_corrected": (lp_c.argmax(-1) == tok_np).astype(np.float64),
    }
    for k, v in vals.items():
      sums[k] = sums.get(k, 0.0) + float(v[byte].sum())
    count += float(byte.sum())
    gain_BL = vals["kl_mc_vs_plain"] - vals["kl_mc_vs_corrected"]
    gain_N.append((gain_BL * byte).sum(-1) / byte.sum(-1))
  out = {k: v / count for k, v in sums.items()}
  gain_N = np.concatenate(gain_N)
  files = np.unique(file_N)
  out["kl_gain"], out["kl_gain_se"] = clustered.cluster_mean_se(gain_N, file_N)
  out.update(kl_gain_by_file={str(f): float(gain_N[file_N == f].mean()) for f in files}, mc_draws=mc_draws,
             num_windows=int(len(tokens)), num_files=int(len(files)), correction_r=task.rate)
  return out


def eval_set(config) -> dict:
  """The fine-tuning config's classes, its evaluation windows per class and each window's file, in the order
  of the evaluation batches (what evals/outcomes.py scores)."""
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  ev = list(pipeline.make_eval_iter(config.data, split=config.data.eval_split, global_batch_size=config.batch_size,
                                    num_batches=config.num_eval_batches))
  labels, files = (np.concatenate([b[k] for b in ev]) for k in ("label", "file"))
  return {"classes": list(config.data.classes), "eval_files": files.tolist(),
          "eval_counts": np.bincount(labels, minlength=len(config.data.classes)).tolist()}


def mask_identity(n: int = 8, kept: int = 6) -> dict:
  """E[M~_1 * ... * M~_n] = the all-p matrix (https://kexue.fm/archives/8770), by exact enumeration in float64.

  M~_i is the n x n all-ones matrix when token i is kept and the all-ones matrix with column i zeroed when it is
  dropped; the elementwise product over i therefore has column j equal to keep_j. Two mask laws: i.i.d.
  keep_i ~ Bernoulli(p) (Su's dropout view; all 2^n masks weighted by p^k (1-p)^(n-k)) and exactly `kept` of n
  kept, a uniform subset (DropToken / the MAE encoder; all C(n, kept) subsets, p = kept / n). Returns the
  largest |E - p| of each and max |Norm(pA) - A| for a random row-stochastic A (Norm: row renormalisation).
  """
  import itertools  # pylint: disable=g-import-not-at-top

  def product(keep):   # the elementwise product of the M~_i
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
