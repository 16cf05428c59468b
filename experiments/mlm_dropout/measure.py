"""Measurements of the MLM/MAE study besides training (issue #8): step-time benchmark, representation drift under
Su's embedding correction, evaluation class counts. Used by experiments/mlm_dropout/study.py."""
from __future__ import annotations

import os
import time

import numpy as np

from kexue_jax import config_lib

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs",
                       "mlm_dropout")
DROPS = (0.0, 0.1, 0.15, 0.25, 0.5)
CORRECTION_R = 0.15


def _config(name: str, arg: str = ""):
  return config_lib.load_config(os.path.join(CONFIGS, name) + f":{arg}")


# ------------------------------------------------------------------------------------ Step-time benchmark.


def _grad_step_fn(config):
  """(jitted forward+backward of task.loss, params, batch) on one fixed training batch."""
  import jax  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from kexue_jax import tasks  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  task = tasks.get_task(config)
  batch = next(pipeline.make_train_iter(config.data, seed=0, global_batch_size=config.batch_size))
  params = nn.unbox(task.init(jax.random.key(0), batch))["params"]
  fn = jax.jit(jax.grad(lambda p, b, r: task.loss({"params": p}, b, r)[0]))
  return fn, params, batch


def time_steps(configs: dict, rounds: int = 5, steps: int = 5) -> dict[str, float]:
  """{name: median seconds per forward+backward step}: all programs compiled first, then `rounds` interleaved
  rounds of `steps` steps each (so a change of machine load hits every setting alike)."""
  import jax  # pylint: disable=g-import-not-at-top
  fns = {k: _grad_step_fn(c) for k, c in configs.items()}
  key = jax.random.key(0)
  for fn, p, b in fns.values():
    jax.block_until_ready(fn(p, b, key))
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for k, (fn, p, b) in fns.items():
      t0 = time.perf_counter()
      for i in range(steps):
        out = fn(p, b, jax.random.fold_in(key, i))
      jax.block_until_ready(out)
      times[k].append((time.perf_counter() - t0) / steps)
  return {k: float(np.median(v)) for k, v in times.items()}


def timing_study(steps: int = 5, rounds: int = 5, extra: str = "") -> dict:
  """Median step times of fine-tuning at every DropToken ratio and of MLM / MAE-style pre-training
  (``extra``: more config arguments, e.g. ",runlocal")."""
  ft = {str(p): _config("finetune.py", f"drop={p:g}" + extra) for p in DROPS}
  pre = {"mlm": _config("pretrain.py", "mode=mlm" + extra), "mae": _config("pretrain.py", "mode=mae" + extra)}
  for r in (0.5, 0.75):
    pre[f"mae@{r:g}"] = _config("pretrain.py", f"mode=mae,rate={r:g}" + extra)
    pre[f"mlm@{r:g}"] = _config("pretrain.py", f"mode=mlm,rate={r:g}" + extra)
  return {"droptoken": time_steps(ft, rounds, steps), "pretrain": time_steps(pre, rounds, steps)}


# ------------------------------------------------------------------------------------ Representation drift.


def drift_study(mlm_workdir: str, num_windows: int = 256, mc_draws: int = 16, batch: int = 64,
                extra: str = "") -> dict:
  """Su's consistency question on unmasked text, for the MLM encoder with and without the correction.

  On `num_windows` validation windows x (clean, never masked), with h(x; E) the final hidden states and P(x; E)
  the MLM predictive distribution, at byte positions:
    cos_dist_corrected_vs_plain  mean 1 - cos(h(x; E_corr), h(x; E)): how far the correction moves the states;
    cos_dist_mc_vs_{plain,corrected}  mean 1 - cos(hbar, h(x; .)) with hbar = mean over `mc_draws` BERT
        maskings x~ of h(x~; E): the "model average" the pre-training actually fits, against the "weight
        average" without / with the correction (Su: the corrected one is the right inference model);
    kl_mc_vs_{plain,corrected}   mean KL(Pbar || P(x; .)), Pbar = mean of P(x~; E) over the maskings;
    acc_unmasked_{plain,corrected}  argmax P(x; .) == x_i (copying the visible byte).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  config = _config("pretrain.py", "mode=mlm" + extra)
  task = mlm.MLMTask(config)
  state, _ = checkpoint.load_state(mlm_workdir)
  plain = state["params"]
  corrected = mlm.correct_params(plain, CORRECTION_R, mask_frac=task.mask_frac, random_frac=task.random_frac)
  ev = pipeline.make_eval_iter(config.data, split="validation", global_batch_size=batch,
                               num_batches=max(1, num_windows // batch))
  tokens = np.concatenate([b["tokens"] for b in ev])

  @jax.jit
  def forward(params, tok):
    logits, h = task.model.apply({"params": params}, tok, return_hidden=True)
    return jax.nn.log_softmax(logits, -1), h.astype(jnp.float32)

  @jax.jit
  def masked_forward(params, tok, key):
    inp, _ = mlm.bert_mask(key, tok, tok < mlm.NUM_BYTES, rate=task.rate, mask_frac=task.mask_frac,
                           random_frac=task.random_frac)
    return forward(params, inp)

  def cos_dist(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return 1.0 - (a * b).sum(-1)

  sums = {}
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
      s = sums.setdefault(k, [0.0, 0.0])
      s[0] += float(v[byte].sum())
      s[1] += float(byte.sum())
  out = {k: s / c for k, (s, c) in sums.items()}
  out.update(mc_draws=mc_draws, num_windows=int(len(tokens)), correction_r=CORRECTION_R)
  return out


def eval_class_counts(extra: str = "") -> tuple[list[str], list[int]]:
  """The task's classes and the number of evaluation windows of each."""
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  config = _config("finetune.py", extra.lstrip(","))
  ev = pipeline.make_eval_iter(config.data, split=config.data.eval_split, global_batch_size=config.batch_size)
  labels = np.concatenate([b["label"] for b in ev])
  return list(config.data.classes), np.bincount(labels, minlength=len(config.data.classes)).tolist()
