r"""MLM and MAE seen as dropout (https://kexue.fm/archives/8770): pre-training, embedding correction, DropToken.

Vocabulary: kexue_jax.vocab (bytes 0..255, [CLS] = 256, [PAD] = 257, [MASK] = 258; `VOCAB_SIZE` = 259).
Every sequence is [CLS] + bytes (+ [PAD]); [CLS] and [PAD] are never masked, [CLS] is
never dropped, and [PAD] positions are dropped before any byte (MAE-style and DropToken).

BERT masking (`bert_mask`, task "mlm" with mode="mlm")
------------------------------------------------------
Each maskable position (a byte) is *selected* independently with probability `rate` (0.15). A selected token
becomes [MASK] with probability `mask_frac` (0.8), a uniformly random byte with probability `random_frac` (0.1),
and stays unchanged otherwise (0.1). The loss is the mean cross-entropy of the original byte over the selected
positions only. Masks are drawn in JAX from the step key, so a run is deterministic given its seed and the data
pipeline stays a plain window view.

MAE-style pre-training (task "mlm" with mode="mae")
---------------------------------------------------
Exactly M = (L - 1) - round((1 - rate)(L - 1)) of the L - 1 byte positions of every sequence are *dropped* (uniformly random
subset; MAE's argsort-of-noise sampling, [CLS] always kept). The encoder sees only the K = L - M kept tokens,
gathered to a [B, K] array with their *original* position ids (RoPE). A light decoder (`decoder_layers`
bidirectional blocks) gets the encoder outputs scattered back to their positions, a learned mask vector at the
dropped ones, and predicts the dropped bytes (cross-entropy over dropped positions only). Because a dropped
token is simply absent, this equals keeping all tokens and zeroing their attention *columns* in every layer
(Su's "MAE is attention dropout"; tested in tests/nn/test_transformer.py and tests/tasks/test_mlm.py).

Su's embedding correction (`embedding_correction`)
--------------------------------------------------
MLM is a dropout on the input embeddings: position i carries x_i with probability 1 - r, and with probability r
it carries 0.8 m + 0.1 x_i + 0.1 u (m = [MASK] embedding, u = a random token's embedding). "Turning the
dropout off" replaces the noisy input by its expectation, i.e. every row of the token embedding E becomes

    E_i <- (1 - r) E_i + r (0.8 E_[MASK] + 0.1 E_i + 0.1 mean_j E_j),

with mean_j over the tokens the random replacement draws from (here the 256 bytes; Su: the whole vocabulary,
which is the same thing for BERT, whose random replacement draws from the whole vocabulary). As in Su's
bert4keras snippet, *every* row is corrected, [CLS] and [PAD] included, although only bytes are ever masked:
the function is a literal transcription, not a refinement. The correction
is applied once to pre-trained parameters, before fine-tuning (`correct_params`, or `task.correction_r` of
the fine-tuning task, applied when `config.init_from` loads the checkpoint).

DropToken fine-tuning (task "droptoken_classify")
-------------------------------------------------
`DropTokenClassifier` drops input tokens during training only: [CLS] (position 0) is kept, and of the other
L - 1 positions exactly K - 1 = round((1 - p)(L - 1)) are kept, a uniformly random subset per example (so each
byte is dropped with probability p, up to rounding; a fixed K gives a fixed shape). The kept tokens are
gathered (a real gather: the encoder runs on [B, K], so a step gets cheaper) with their original position ids,
and the [CLS] state feeds a linear head. Inference uses all tokens. Gathering equals masking the dropped
attention columns (tested against a NumPy float64 transcription).

Evaluation (task "mlm"): each evaluation window's masks are drawn from fold_in(fold_in(key(eval_seed), index),
draw), `index` = the window's position in the evaluation set (the `index` feature of `cls_windows`), and the
sums of `eval_draws` independent draws are returned: independent across windows and batches, and the same for
any batch size or device count.

The correction needs r = the pre-training mask rate: with `config.init_from` a run whose config.json says
otherwise (or an MAE-style run) is refused; Su's higher-rate extension is pretrain.py:rate=0.4 or 0.5 followed
by finetune.py:correction=0.4 or 0.5.

Data views: `cls_windows` and `stdlib_packages` (kexue_jax/data/text_views.py; the file holdout, the per-file
cap and the file id of each test window). Per-window outcomes and file-level standard errors:
kexue_jax/evals/outcomes.py and kexue_jax/evals/clustered.py. Models: nn/masked_lm.py
(MaskedLM, MAEModel), nn/classifiers.py (DropTokenClassifier), nn/token_drop.py (the kept/dropped positions).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from kexue_jax import models
from kexue_jax.nn import heads
from kexue_jax.nn import transformer
from kexue_jax.nn.classifiers import DropTokenClassifier
from kexue_jax.nn.masked_lm import MAEModel, MaskedLM
from kexue_jax.nn.token_drop import gather_BK, keep_drop_indices, num_kept
from kexue_jax.tasks import base
from kexue_jax.tasks import classify
from kexue_jax.vocab import MASK_ID, NUM_BYTES, VOCAB_SIZE

MODES = ("mlm", "mae")
EMBEDDING_PATH = ("encoder", "embed", "embedding")  # the token embedding in every model of this module


# ------------------------------------------------------------------------------------------ Masking.


def _check_rates(rate: float, mask_frac: float, random_frac: float, what: str = "mask rate") -> None:
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"{what} must be in [0, 1), got {rate}.")
  if mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1.0 + 1e-9:
    raise ValueError(f"mask_frac={mask_frac} and random_frac={random_frac} must be >= 0 with sum <= 1.")


def bert_mask(rng, tokens_BL, maskable_BL, *, rate: float = 0.15, mask_frac: float = 0.8,
              random_frac: float = 0.1, mask_id: int = MASK_ID, num_random: int = NUM_BYTES):
  """BERT corruption (module docstring). Returns (inputs_BL, selected_BL bool).

  selected ~ Bernoulli(rate) at maskable positions; a selected token becomes `mask_id` w.p. mask_frac,
  a uniform draw from 0..num_random-1 w.p. random_frac, and is left unchanged otherwise.
  """
  _check_rates(rate, mask_frac, random_frac)
  k_sel, k_kind, k_rand = jax.random.split(rng, 3)
  selected_BL = (jax.random.uniform(k_sel, tokens_BL.shape) < rate) & maskable_BL
  u_BL = jax.random.uniform(k_kind, tokens_BL.shape)
  random_BL = jax.random.randint(k_rand, tokens_BL.shape, 0, num_random, tokens_BL.dtype)
  corrupted_BL = jnp.where(u_BL < mask_frac, jnp.asarray(mask_id, tokens_BL.dtype),
                           jnp.where(u_BL < mask_frac + random_frac, random_BL, tokens_BL))
  return jnp.where(selected_BL, corrupted_BL, tokens_BL), selected_BL


def _per_row(draw, keys_B, tokens_BL):
  """`draw(key, tokens_1L)` (returning [1, ...] arrays) applied row by row with one key per row."""
  out = jax.vmap(lambda k, t: draw(k, t[None]))(keys_B, tokens_BL)
  return jax.tree.map(lambda a: a[:, 0], out)


def _run_config(workdir) -> dict[str, Any]:
  """The config of the run in `workdir` (its config.json) as a dict, {} if unknown."""
  path = os.path.join(str(workdir), "config.json") if workdir else ""
  if not path or not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


# ---------------------------------------------------------------------------- Embedding correction.


def embedding_correction(E_VD, r: float, *, mask_id: int = MASK_ID, mask_frac: float = 0.8,
                         random_frac: float = 0.1, mean_rows: int = NUM_BYTES):
  """Su's correction, every row i: E_i <- (1-r) E_i + r (mask_frac E_m + keep_frac E_i + random_frac Ebar).

  keep_frac = 1 - mask_frac - random_frac (BERT: 0.1), Ebar = mean of rows 0..mean_rows-1 (the support of the
  random replacement). Works on NumPy or JAX arrays and keeps the dtype.
  """
  _check_rates(r, mask_frac, random_frac)
  keep_frac = 1.0 - mask_frac - random_frac
  xp = jnp if isinstance(E_VD, jax.Array) else np
  E = E_VD.astype(xp.float64 if xp is np else jnp.float32)
  mean_D = E[:mean_rows].mean(axis=0)
  out = (1.0 - r) * E + r * (mask_frac * E[mask_id][None] + keep_frac * E + random_frac * mean_D[None])
  return out.astype(E_VD.dtype)


def correct_params(params: dict[str, Any], r: float, *, path=EMBEDDING_PATH, **kwargs) -> dict[str, Any]:
  """A copy of a (nested dict) params tree with `embedding_correction` applied to the table at `path`."""
  out = dict(params)
  if len(path) == 1:
    out[path[0]] = embedding_correction(params[path[0]], r, **kwargs)
    return out
  if path[0] not in params:
    raise KeyError(f"no {'/'.join(path)} in the parameters (top-level keys: {sorted(params)}).")
  out[path[0]] = correct_params(params[path[0]], r, path=path[1:], **kwargs)
  return out


def load_corrected_params(workdir: str, r: float, *, step: int | None = None, **kwargs) -> dict[str, Any]:
  """The correction applied to a checkpoint: params of the run in `workdir` (NumPy), embedding corrected."""
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  state, _ = checkpoint.load_state(workdir, step)
  return correct_params(state["params"], r, **kwargs)


# ------------------------------------------------------------------------------------------- Models.


def build_encoder(model_cfg) -> transformer.TransformerEncoder:
  model = models.build_model(model_cfg)
  if not isinstance(model, transformer.TransformerEncoder):
    raise ValueError(f"the mlm tasks need model.name='transformer_encoder', got {model_cfg.get('name')!r}.")
  if model.vocab_size != VOCAB_SIZE:
    raise ValueError(f"model.vocab_size must be {VOCAB_SIZE} (256 bytes, [CLS], [PAD], [MASK]), "
                     f"got {model.vocab_size}.")
  return model


# --------------------------------------------------------------------------------------- Pre-training.


def _ce_and_correct(logits_NV, targets_N, weights_N):
  ce_N = optax.softmax_cross_entropy_with_integer_labels(logits_NV.astype(jnp.float32), targets_N)
  correct_N = (jnp.argmax(logits_NV, -1) == targets_N).astype(jnp.float32)
  return jnp.sum(ce_N * weights_N), jnp.sum(correct_N * weights_N), jnp.sum(weights_N)


@dataclasses.dataclass(frozen=True)
class MLMConfig:
  """``config.task`` of the "mlm" pre-training task (module docstring)."""
  mode: str = "mlm"                     # one of MODES
  mask_rate: float = 0.15               # mlm: selection probability; mae: fraction of bytes dropped
  mask_frac: float = 0.8                # mlm: selected -> [MASK]
  random_frac: float = 0.1              # mlm: selected -> a random byte (else unchanged)
  decoder_layers: int = 1               # mae: bidirectional decoder blocks
  decoder_mlp_dim: int | None = None    # mae: None = model.mlp_dim
  eval_seed: int = 0                    # evaluation masks: a fixed function of (eval_seed, example index, draw)
  eval_draws: int = 1                   # independent mask draws per evaluation example, summed (averaged)


class MLMTask(base.Task):
  """Pre-training: mode "mlm" (BERT 80/10/10) or "mae" (encoder on kept tokens + light decoder).

  config.task: name="mlm" and the fields of `MLMConfig`.
  Batches: {"tokens": int32[B, L]} = [CLS] + bytes (the `cls_windows` view).
  """

  unit = "tokens"

  def __init__(self, config: ml_collections.ConfigDict):
    t = base.task_config(MLMConfig, config.task)
    self.mode = t.mode
    if self.mode not in MODES:
      raise ValueError(f"unknown task.mode {self.mode!r}; expected one of {MODES}.")
    self.rate = float(t.mask_rate)
    self.mask_frac = float(t.mask_frac)
    self.random_frac = float(t.random_frac)
    _check_rates(self.rate, self.mask_frac, self.random_frac)
    if self.rate <= 0:
      raise ValueError(f"task.mask_rate must be > 0 for pre-training, got {self.rate}.")
    self.eval_seed = int(t.eval_seed)
    self.eval_draws = int(t.eval_draws)
    if self.eval_draws < 1:
      raise ValueError(f"task.eval_draws must be >= 1 mask draws per evaluation example, got {self.eval_draws}.")
    encoder = build_encoder(config.model)
    if self.mode == "mlm":
      self.model = MaskedLM(encoder)
    else:
      layers_ = int(t.decoder_layers)
      if layers_ < 1:
        raise ValueError(f"task.decoder_layers must be >= 1, got {layers_}.")
      self.model = MAEModel(encoder, decoder_layers=layers_, decoder_mlp_dim=t.decoder_mlp_dim)

  def _sums(self, variables, tokens_BL, rng, *, deterministic: bool, dropout_rng=None, per_row: bool = False):
    """(ce_sum, correct_sum, count) over the predicted positions. `rng`: one key, or (per_row) keys [B]."""
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    if self.mode == "mlm":
      mask = lambda k, t: bert_mask(k, t, t < NUM_BYTES, rate=self.rate, mask_frac=self.mask_frac,
                                    random_frac=self.random_frac)
      inputs_BL, selected_BL = _per_row(mask, rng, tokens_BL) if per_row else mask(rng, tokens_BL)
      logits_BLV = self.model.apply(variables, inputs_BL, deterministic=deterministic, rngs=rngs)
      return _ce_and_correct(logits_BLV, tokens_BL, selected_BL.astype(jnp.float32))
    draw = lambda k, t: keep_drop_indices(k, t, num_kept(tokens_BL.shape[1], self.rate))
    keep_BK, drop_BM = _per_row(draw, rng, tokens_BL) if per_row else draw(rng, tokens_BL)
    logits_BMV = self.model.apply(variables, tokens_BL, keep_BK, drop_BM, deterministic=deterministic, rngs=rngs)
    targets_BM = gather_BK(tokens_BL, drop_BM)
    return _ce_and_correct(logits_BMV, targets_BM, (targets_BM < NUM_BYTES).astype(jnp.float32))

  def init(self, rng, batch):
    tokens_BL = batch["tokens"]
    if self.mode == "mlm":
      return self.model.init({"params": rng}, tokens_BL)
    keep_BK, drop_BM = keep_drop_indices(rng, tokens_BL, num_kept(tokens_BL.shape[1], self.rate))
    return self.model.init({"params": rng}, tokens_BL, keep_BK, drop_BM)

  def loss(self, variables, batch, rng):
    mask_rng, dropout_rng = jax.random.split(rng)
    ce, correct, count = self._sums(variables, batch["tokens"], mask_rng, deterministic=False,
                                    dropout_rng=dropout_rng)
    count = jnp.maximum(count, 1.0)
    return ce / count, {"metrics": {"accuracy": correct / count, "predicted_frac":
                                    count / batch["tokens"].size}, "mutable": {}}

  def evaluate(self, variables, batch):
    """Sums over `eval_draws` mask draws. The masks of an example are drawn from
    fold_in(fold_in(key(eval_seed), index), draw), `index` = its position in the evaluation set (the `index`
    feature of `cls_windows`; the row within the batch when absent): independent across examples, batches and
    draws, and the same whatever the batch size or device count."""
    tokens_BL = batch["tokens"]
    index_B = batch.get("index", jnp.arange(tokens_BL.shape[0]))
    key_B = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(self.eval_seed), i))(index_B)
    ce = correct = count = 0.0
    for d in range(self.eval_draws):
      keys_B = jax.vmap(lambda k, d=d: jax.random.fold_in(k, d))(key_B)
      c, a, n = self._sums(variables, tokens_BL, keys_B, deterministic=True, per_row=True)
      ce, correct, count = ce + c, correct + a, count + n
    return {"loss": (ce, count), "accuracy": (correct, count)}

  def units_per_example(self, batch) -> int:
    return int(batch["tokens"].shape[1])


# ---------------------------------------------------------------------------------------- Fine-tuning.


@dataclasses.dataclass(frozen=True)
class DropTokenClassifyConfig:
  """``config.task`` of the "droptoken_classify" fine-tuning task (module docstring)."""
  num_classes: int | None = None        # required
  drop_token: float = 0.0               # p in [0, 1): DropToken rate during training
  head_dropout_rate: float = 0.0
  pool: str = "first"                   # "first" = the [CLS] state, "mean" = token mean (MLM never trains [CLS])
  correction_r: float = 0.0             # > 0: Su's correction of the loaded embedding (needs config.init_from)
  mask_frac: float = 0.8                # those of the pre-training, for the correction
  random_frac: float = 0.1


class DropTokenClassifyTask(base.Task):
  """Fine-tuning classification with DropToken; the encoder may start from a pre-training run.

  config.task: name="droptoken_classify" and the fields of `DropTokenClassifyConfig`.
  Pre-trained weights: config.init_from = {workdir: the pre-training run, mapping: (("encoder", "encoder"),)}.
  """

  unit = "examples"

  def __init__(self, config: ml_collections.ConfigDict):
    t = base.task_config(DropTokenClassifyConfig, config.task)
    if t.num_classes is None:
      raise ValueError("the droptoken_classify task needs config.task.num_classes.")
    self.drop_token = float(t.drop_token)
    if not 0.0 <= self.drop_token < 1.0:
      raise ValueError(f"task.drop_token must be in [0, 1), got {self.drop_token}.")
    self.correction_r = float(t.correction_r)
    self.mask_frac = float(t.mask_frac)
    self.random_frac = float(t.random_frac)
    _check_rates(self.correction_r, self.mask_frac, self.random_frac, what="task.correction_r")
    init_from = config.get("init_from") or {}
    if self.correction_r and not init_from.get("workdir"):
      raise ValueError(f"task.correction_r={self.correction_r} corrects a pre-trained embedding: set "
                       "config.init_from.workdir to the pre-training run (or correction_r=0).")
    pre_config = _run_config(init_from.get("workdir"))
    holdout = float((config.get("data") or {}).get("holdout_frac", 0.0) or 0.0)
    pre_holdout = float((pre_config.get("data") or {}).get("holdout_frac", 0.0) or 0.0)
    if holdout and pre_config and pre_holdout != holdout:
      raise ValueError(f"data.holdout_frac={holdout} but the pre-training run held out {pre_holdout}: its encoder "
                       f"read test files. Pre-train with pretrain.py:holdout={holdout}.")
    pre = (pre_config.get("task") or {}) if self.correction_r else {}
    if pre.get("mode") == "mae":
      raise ValueError("task.correction_r > 0 with an MAE-style checkpoint: its encoder never sees [MASK], so "
                       "the [MASK] row is untrained and the correction would mix in a random vector. Use an "
                       "MLM checkpoint or correction_r=0.")
    pre_r = pre.get("mask_rate")
    if pre_r is not None and abs(float(pre_r) - self.correction_r) > 1e-9:
      raise ValueError(f"task.correction_r={self.correction_r} but the checkpoint was pre-trained with mask_rate="
                       f"{pre_r}; Su's correction uses r = the pre-training mask rate: set correction={pre_r}.")
    classes = (config.get("data") or {}).get("classes")
    if classes is not None and len(classes) != int(t.num_classes):
      raise ValueError(f"task.num_classes={t.num_classes} but data.classes has {len(classes)} entries; make "
                       "them equal.")
    pool = t.pool
    if pool not in heads.POOLINGS:
      raise ValueError(f"unknown task.pool {pool!r}; expected one of {heads.POOLINGS}.")
    self.model = DropTokenClassifier(build_encoder(config.model), num_classes=int(t.num_classes),
                                     drop_token=self.drop_token,
                                     head_dropout_rate=float(t.head_dropout_rate), pool=pool)

  def adapt_init_params(self, params):
    """Called by the training loop on the parameters loaded through config.init_from (dest. naming)."""
    if not self.correction_r:
      return params
    return correct_params(params, self.correction_r, mask_frac=self.mask_frac, random_frac=self.random_frac)

  def init(self, rng, batch):
    return self.model.init({"params": rng}, batch["tokens"])

  def loss(self, variables, batch, rng):
    k_drop, k_tok = jax.random.split(rng)
    logits_BC = self.model.apply(variables, batch["tokens"], train=True,
                                 rngs={"dropout": k_drop, "droptoken": k_tok})
    ce_B = classify.cross_entropy_B(logits_BC, batch["label"])
    acc = jnp.mean((jnp.argmax(logits_BC, -1) == batch["label"]).astype(jnp.float32))
    return jnp.mean(ce_B), {"metrics": {"accuracy": acc}, "mutable": {}}

  def predict(self, variables, batch):
    """logits_BC on every token (inference: no DropToken, no dropout)."""
    return self.model.apply(variables, batch["tokens"], train=False)

  def evaluate(self, variables, batch):
    logits_BC = self.predict(variables, batch)
    labels_B = batch["label"]
    n = jnp.asarray(labels_B.shape[0], jnp.float32)
    correct = jnp.sum((jnp.argmax(logits_BC, -1) == labels_B).astype(jnp.float32))
    return {"loss": (jnp.sum(classify.cross_entropy_B(logits_BC, labels_B)), n), "accuracy": (correct, n)}

  def units_per_example(self, batch) -> int:
    del batch
    return 1
