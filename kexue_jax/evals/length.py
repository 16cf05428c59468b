"""Length extrapolation: test sets and the evaluation of a trained LM checkpoint at longer lengths under an
inference-time method (length_methods.py), as in Su's tables (kexue.fm/archives/9603 ... 9948).

Test sets (held-out `test` split of the built-in byte-level corpus, fixed order, no randomness but the seeded
segment lengths):
  non-repeated  contiguous windows of L + 1 bytes (stride L inside each document, as the engine's eval
                windows), `num` of them taken evenly spaced over the whole split.
  repeated      for each non-repeated window, its first s bytes tiled to L + 1 bytes ("重复", 9603). For
                L > N, s ~ U{N, ..., L/2} (seeded), so every copy sits at least N tokens back -- farther than
                any distance seen in training (<= N-1): copying needs long-range retrieval beyond L_train.
                For L = N (the copy check), s ~ U{N/4, ..., N/2}, i.e. copies within the trained range.
                `copy_acc` is the accuracy on the targets at positions >= s (the predictable copies).
  random copy   printable random bytes (32..126), a segment of s ~ U{N/4, ..., N/2} tiled to N + 1: accuracy on
                the copy targets (positions >= s). Nothing but copying predicts them (chance ~1%), so this
                isolates the in-context copy ("induction") ability that the repeated column presupposes.
  growing       the last N targets of a long document, scored with C = N, 2N, 4N, 8N tokens of context
                (Su's later protocol, 9948 / bojone/rerope eval_loss.py): "longer context, lower loss".

Metrics per window: next-token accuracy (Su's metric) and cross-entropy (nats/byte), averaged over
  all           every target of the window (Su's tables, 9603), and, for L > N, over
  tail          the targets predicted at query positions i >= N (0-based; the target is token i + 1): the last
                L - N targets, exactly where distances >= N occur and where log n-dagger (n = i + 1 > N) changes
                the query; at L = N the tail is empty and "all" stands for it. For log n-dagger the gain over
                its checkpoint's plain RoPE therefore is tail = all x L / (L - N) (8/7 at 8x): the protocol
                rescales the gain but cannot hide a 3-8x larger one.
The third protocol ("last", 9948 / eval_loss.py) is the growing set above. Per-window values are kept so that
methods can be compared *paired* on the same windows.

MLM at longer lengths (Su's first log-n table, kexue.fm/archives/8823): ``mlm_set`` = [CLS] + L - 1 held-out
bytes per window, ``mlm_window_stats`` = per-window accuracy / cross-entropy over the BERT-masked bytes, with the
masks of the MLM task's own evaluation (tasks/mlm.py: window k masked from fold_in(key(eval_seed), k)).
"""
from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from kexue_jax import checkpoint
from kexue_jax import config_lib
from kexue_jax import models
from kexue_jax import vocab
from kexue_jax.data import pipeline
from kexue_jax.data import preprocess
from kexue_jax.evals import length_methods

DATASET = "python_stdlib_text"


@functools.lru_cache(maxsize=4)
def documents(split: str, name: str = DATASET, text_key: str = "text") -> preprocess.Documents:
  """All documents of a split (the built-in corpus by default; any TFDS text dataset prepared as array_record)."""
  return preprocess.Documents(pipeline.get_data_source(name, split), text_key)


def _evenly(n_total: int, num: int) -> np.ndarray:
  if n_total < num:
    raise ValueError(f"only {n_total} test windows available, {num} requested; lower the number of windows.")
  return np.unique(np.linspace(0, n_total - 1, num).round().astype(np.int64))


def nonrepeated_set(docs, length: int, num: int) -> np.ndarray:
  """int32[num, length + 1] contiguous held-out windows."""
  windows = preprocess.eval_windows(docs.lengths, length)
  idx = _evenly(len(windows), num)
  return np.stack([docs.window(int(d), int(s), length + 1) for d, s in windows[idx]]).astype(np.int32)


def segment_lengths(length: int, train_length: int, num: int, seed: int = 0) -> np.ndarray:
  """Segment length s per repeated sample (see module docstring)."""
  rng = np.random.default_rng(seed + length)
  if length <= train_length:
    lo, hi = max(1, train_length // 4), max(1, train_length // 2)
  else:
    lo, hi = train_length, max(train_length, length // 2)
  return rng.integers(lo, hi + 1, size=num)


def repeated_set(nonrep_BT: np.ndarray, train_length: int, seed: int = 0):
  """(int32[num, L + 1] tiled segments, int64[num] segment lengths)."""
  num, t = nonrep_BT.shape
  seg = segment_lengths(t - 1, train_length, num, seed)
  out = np.stack([np.resize(row[:s], t) for row, s in zip(nonrep_BT, seg)]).astype(np.int32)
  return out, seg


def random_repeated_set(length: int, train_length: int, num: int, seed: int = 0):
  """(int32[num, length + 1] tiled random printable bytes, int64[num] segment lengths) (module docstring)."""
  seg = segment_lengths(length, train_length, num, seed)
  rng = np.random.default_rng(10_000 + seed)
  rows = [np.resize(rng.integers(32, 127, size=s), length + 1) for s in seg]
  return np.stack(rows).astype(np.int32), seg


def copy_accuracy(model_cfg, params, rep_BT: np.ndarray, seg) -> list[float]:
  """Per-window accuracy on the copy targets (target positions >= s) of a tiled set."""
  return _copy_acc(token_stats(model_cfg, params, rep_BT)[1], seg)


def _copy_acc(correct_BL, seg) -> list[float]:
  pos = np.arange(1, correct_BL.shape[1] + 1)[None, :]   # position of each target token
  mask = pos >= np.asarray(seg)[:, None]
  return _r((correct_BL * mask).sum(1) / np.maximum(mask.sum(1), 1))


def growing_set(docs, train_length: int, max_mult: int, num: int) -> np.ndarray:
  """int32[num, max_mult * N + 1]: the last max_mult * N + 1 bytes of `num` long documents."""
  need = max_mult * train_length + 1
  long_docs = np.flatnonzero(docs.lengths >= need)
  idx = _evenly(len(long_docs), num)
  return np.stack([docs.window(int(d), int(docs.lengths[d]) - need, need) for d in long_docs[idx]]
                  ).astype(np.int32)


_STATS_FNS: dict[str, object] = {}


def _stats_fn(model_cfg: dict):
  """A jitted (params, tokens_BT) -> (ce_BL, correct_BL) for this model config (cached by its JSON)."""
  key = json.dumps(model_cfg, sort_keys=True, default=str)
  if key not in _STATS_FNS:
    if len(_STATS_FNS) > 16:
      _STATS_FNS.clear()
    model = models.build_model(model_cfg)

    @jax.jit
    def stats(params, tokens_BT):
      logits_BLV = model.apply({"params": params}, tokens_BT[:, :-1])
      targets_BL = tokens_BT[:, 1:]
      ce_BL = optax.softmax_cross_entropy_with_integer_labels(logits_BLV.astype(jnp.float32), targets_BL)
      correct_BL = (jnp.argmax(logits_BLV, -1) == targets_BL).astype(jnp.float32)
      return ce_BL, correct_BL

    _STATS_FNS[key] = stats
  return _STATS_FNS[key]


def token_stats(model_cfg: dict, params, tokens_BT: np.ndarray, chunk: int = 0):
  """(ce, correct) float32[B, L] for every target, in calls of exactly `chunk` windows (0 = all at once).

  The last call is padded with dummy windows, so every call has the same shape (one compilation).
  """
  fn = _stats_fn(model_cfg)
  b = len(tokens_BT)
  chunk = chunk or b
  pad = (-b) % chunk
  if pad:
    tokens_BT = np.concatenate([tokens_BT, np.zeros((pad, tokens_BT.shape[1]), tokens_BT.dtype)])
  ces, cors = [], []
  for i in range(0, len(tokens_BT), chunk):
    ce, cor = jax.device_get(fn(params, jnp.asarray(tokens_BT[i:i + chunk])))
    ces.append(np.asarray(ce))
    cors.append(np.asarray(cor))
  return np.concatenate(ces)[:b], np.concatenate(cors)[:b]


def _r(x, nd=4):
  return [round(float(v), nd) for v in np.asarray(x)]


def _window_stats(ce_BL, cor_BL, train_length=None) -> dict:
  """Per-window mean accuracy / loss; with `train_length` N < L also over the tail (query positions >= N)."""
  out = {"acc": _r(cor_BL.mean(1)), "loss": _r(ce_BL.mean(1))}
  if train_length and ce_BL.shape[1] > train_length:
    out.update(tail_acc=_r(cor_BL[:, train_length:].mean(1)), tail_loss=_r(ce_BL[:, train_length:].mean(1)))
  return out


def evaluate_length(model_cfg, params, nonrep_BT, rep_BT, seg, growing_BT=None, train_length=None):
  """Per-window accuracy/loss on both sets at one length (repeated also over the copy targets only; with
  `train_length`, also over the tail, module docstring) and, if `growing_BT` (long documents cut to this length)
  is given, on their last `train_length` targets.

  All windows go through the model in equal-size calls of len(nonrep_BT) windows: one compilation per length.
  """
  parts = [nonrep_BT, rep_BT] + ([growing_BT] if growing_BT is not None else [])
  ce, cor = token_stats(model_cfg, params, np.concatenate(parts), chunk=len(nonrep_BT))
  n, r = len(nonrep_BT), len(rep_BT)
  out = {"nonrep": _window_stats(ce[:n], cor[:n], train_length),
         "rep": dict(_window_stats(ce[n:n + r], cor[n:n + r], train_length), copy_acc=_copy_acc(cor[n:n + r], seg))}
  if growing_BT is not None:
    t = train_length
    out["growing"] = {"loss": _r(ce[n + r:, -t:].mean(1)), "acc": _r(cor[n + r:, -t:].mean(1))}
  return out


def mlm_set(docs, length: int, num: int) -> np.ndarray:
  """int32[num, length]: [CLS] + length - 1 contiguous held-out bytes (the `cls_windows` layout at `length`)."""
  body = nonrepeated_set(docs, length - 2, num)
  return np.concatenate([np.full((len(body), 1), vocab.CLS_ID, np.int32), body], 1)


def mlm_window_stats(config, params, tokens_BL: np.ndarray) -> dict[str, list[float]]:
  """{"acc", "loss"} per window over its BERT-masked bytes (NaN: none masked), masked as the "mlm" task's
  evaluation masks window k as example k (all `task.eval_draws` draws): the same at any batch size."""
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  task = mlm.MLMTask(config)
  if task.mode != "mlm":
    raise ValueError(f"MLM length scoring needs task.mode='mlm', got {task.mode!r}.")
  one = lambda t_L, i: task.evaluate({"params": params}, {"tokens": t_L[None], "index": i[None]})
  out = jax.device_get(jax.jit(jax.vmap(one))(jnp.asarray(tokens_BL), jnp.arange(len(tokens_BL))))
  count = np.asarray(out["accuracy"][1], np.float64)
  mean = lambda s: np.where(count > 0, np.asarray(s, np.float64) / np.maximum(count, 1.0), np.nan)
  return {"acc": _r(mean(out["accuracy"][0])), "loss": _r(mean(out["loss"][0]))}


def ngram_baselines(train_docs, nonrep_BT: np.ndarray) -> dict[str, float]:
  """Accuracy of the unigram (most frequent byte) and bigram (argmax next byte | previous byte) predictors,
  counted on the training split, on the targets of the given windows."""
  buf = np.asarray(train_docs.buffer, np.int64)
  uni = np.bincount(buf, minlength=256)
  bi = np.bincount(buf[:-1] * 256 + buf[1:], minlength=256 * 256).reshape(256, 256)
  prev, targ = nonrep_BT[:, :-1].astype(np.int64), nonrep_BT[:, 1:].astype(np.int64)
  return {"unigram_acc": float(np.mean(targ == np.argmax(uni))),
          "bigram_acc": float(np.mean(np.argmax(bi, 1)[prev] == targ))}


# ------------------------------------------------------------------------------------------ A checkpoint's scores.

_SETS: dict = {}


def test_sets(data, windows: int, mults=(1, 2, 4, 8), extension: int = length_methods.EXTENSION) -> dict:
  """The test sets of one corpus (``config.data``) at N = data.seq_len: {"n", "sets": {L: (non-repeated, repeated,
  segment lengths)}, "growing", "random" (copy check at N), "baselines" (n-gram accuracies at N)}. ``windows``
  windows at extension x N, as many tokens at every length. Cached per corpus, length and size."""
  n = int(data.seq_len)
  key = (data.name, data.text_key, str(data.get("glob", "")), n, windows)
  if key not in _SETS:
    docs = documents("test", data.name, data.text_key)
    sets = {}
    for length in (n * m for m in mults):
      nonrep = nonrepeated_set(docs, length, windows * (extension * n // length))
      sets[length] = (nonrep, *repeated_set(nonrep, n))
    train_split = "train" if data.name == DATASET else "train[:2%]"   # a large catalog set: its first 2%
    _SETS[key] = dict(n=n, sets=sets, growing=growing_set(docs, n, max(mults), windows),
                      random=random_repeated_set(n, n, len(sets[n][0])),
                      baselines=ngram_baselines(documents(train_split, data.name, data.text_key), sets[n][0]))
  return _SETS[key]


def evaluate_method(model_cfg: dict, params, ts: dict, lengths, by_context: bool = False) -> dict:
  """{"by_length": {L: evaluate_length(...) with the growing documents cut to L}} over ``lengths`` (of the test
  sets ``ts``); with ``by_context`` also "growing": {L: the growing-context stats} (the same bytes by context)."""
  n, res = ts["n"], {"by_length": {}}
  for length in lengths:
    r = evaluate_length(model_cfg, params, *ts["sets"][length], ts["growing"][:, -(length + 1):], n)
    if by_context:
      res.setdefault("growing", {})[str(length)] = r["growing"]
    res["by_length"][str(length)] = r
  return res


def kept_checkpoints(run_dir: str):
  """(step, params) of every checkpoint kept in a ``train.run`` directory, oldest first."""
  for step in checkpoint.saved_steps(run_dir):
    yield step, checkpoint.load_state(run_dir, step)[0]["params"]


def copy_curve(model_cfg: dict, run_dir: str, ts: dict, lengths) -> list[dict]:
  """At every kept checkpoint of ``run_dir``: mean non-repeated / repeated / repeated-copy-target accuracy at each
  length (keys suffixed "_8x" beyond N) and the random-byte copy accuracy at N."""
  curve = []
  for step, params in kept_checkpoints(run_dir):
    row = {"step": step}
    for length in lengths:
      tag, r = "" if length == ts["n"] else "_8x", evaluate_length(model_cfg, params, *ts["sets"][length])
      row.update({f"nonrep_acc{tag}": float(np.mean(r["nonrep"]["acc"])), f"rep_acc{tag}": float(np.mean(r["rep"]["acc"])),
                  f"rep_copy_acc{tag}": float(np.mean(r["rep"]["copy_acc"]))})
    row["rand_copy_acc"] = float(np.mean(copy_accuracy(model_cfg, params, *ts["random"])))
    curve.append(row)
  return curve


def mlm_scores(config, params, windows: int) -> dict:
  """{L: per-window MLM accuracy / loss} at each config.study.test_length (Su's 8823 table), the same number of
  bytes per length (``windows`` at the longest)."""
  docs = documents("test", config.data.name, config.data.get("text_key", "text"))
  lengths = config_lib.to_dict(config.study)["test_lengths"]   # FieldReferences of data.seq_len, resolved
  return {str(L): mlm_window_stats(config, params, mlm_set(docs, L, windows * max(lengths) // L)) for L in lengths}
