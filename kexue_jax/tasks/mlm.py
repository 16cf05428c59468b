r"""MLM and MAE seen as dropout (https://kexue.fm/archives/8770): pre-training, embedding correction, DropToken.

Vocabulary (byte level): bytes 0..255, [CLS] = 256, [PAD] = 257 (the ids of tasks/classify.py), [MASK] = 258;
`VOCAB_SIZE` = 259. Every sequence is [CLS] + bytes (+ [PAD]); [CLS] and [PAD] are never masked, [CLS] is
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

Data views (registered with `kexue_jax.data.preprocess.register` when this module is imported)
---------------------------------------------------------------------------------------------
  cls_windows       {"tokens": int32[seq_len]} = [CLS] + seq_len - 1 bytes of a document (`lm_windows`
                    sampling: uniform windows for training, consecutive windows for evaluation).
  stdlib_packages   {"tokens": [CLS] + seq_len - 1 bytes, "label"}: which top-level standard-library package
                    (`data.classes`, in label order) a window of source comes from, read from the `path`
                    feature of `python_stdlib_text`. Files of other packages are dropped. Training: a class
                    uniformly at random, then a uniform window of that class's files; evaluation: per class the
                    first `data.eval_per_class` of its consecutive windows taken at evenly spaced indices.
                    The builder splits by file (hash of the path), so train and eval share no file.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from typing import Any

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from kexue_jax import models
from kexue_jax.data import preprocess
from kexue_jax.nn import heads
from kexue_jax.nn import layers
from kexue_jax.nn import transformer
from kexue_jax.tasks import classify

NUM_BYTES = 256
CLS_ID, PAD_ID, MASK_ID = classify.CLS_ID, classify.PAD_ID, 258
VOCAB_SIZE = 259
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


def _pretraining_mode(workdir) -> str | None:
  """task.mode of the run in `workdir` (its config.json), None if unknown."""
  path = os.path.join(str(workdir), "config.json") if workdir else ""
  if not path or not os.path.exists(path):
    return None
  with open(path) as f:
    return ((json.load(f).get("task") or {}).get("mode"))


def num_kept(length: int, drop_rate: float, num_fixed: int = 1) -> int:
  """K = num_fixed + round((1 - drop_rate)(length - num_fixed)): tokens left after dropping (>= num_fixed)."""
  if not 0.0 <= drop_rate < 1.0:
    raise ValueError(f"drop rate must be in [0, 1), got {drop_rate}.")
  k = num_fixed + int(round((1.0 - drop_rate) * (length - num_fixed)))
  if drop_rate > 0 and k == length:
    raise ValueError(f"drop rate {drop_rate} drops no token of a sequence of {length} (round((1 - rate) * "
                     f"{length - num_fixed}) = {length - num_fixed}); raise the rate or the sequence length.")
  return k


def keep_drop_indices(rng, tokens_BL, num_keep: int, *, num_fixed: int = 1, pad_id: int = PAD_ID):
  """(keep_BK, drop_BM): sorted positions kept / dropped, K = num_keep, M = L - K, per example.

  The first `num_fixed` positions ([CLS]) are always kept; among the others a uniformly random subset is kept
  (argsort of uniform noise, as MAE); [PAD] positions are dropped before any real token.
  """
  B, L = tokens_BL.shape
  if not num_fixed <= num_keep <= L:
    raise ValueError(f"num_keep={num_keep} must be in [{num_fixed}, {L}].")
  noise_BL = jax.random.uniform(rng, (B, L))
  noise_BL = jnp.where(tokens_BL == pad_id, 2.0, noise_BL)
  noise_BL = jnp.where(jnp.arange(L) < num_fixed, -1.0, noise_BL)
  order_BL = jnp.argsort(noise_BL, axis=1)
  return jnp.sort(order_BL[:, :num_keep], axis=1), jnp.sort(order_BL[:, num_keep:], axis=1)


def gather_BK(x_BL, idx_BK):
  """x[b, idx[b, k]] for x of shape [B, L] or [B, L, ...]."""
  idx = idx_BK.reshape(idx_BK.shape + (1,) * (x_BL.ndim - 2))
  return jnp.take_along_axis(x_BL, idx, axis=1)


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


class MaskedLM(nn.Module):
  """BERT-style MLM: the encoder sees the corrupted sequence; logits_BLV at every position."""
  encoder: transformer.TransformerEncoder

  def __call__(self, tokens_BL, *, deterministic: bool = True, return_hidden: bool = False):
    return self.encoder(tokens_BL, padding_mask_BL=tokens_BL != PAD_ID, deterministic=deterministic,
                        return_hidden=return_hidden)


class MAEModel(nn.Module):
  """MAE-style: encoder on kept tokens (original positions), light decoder with a mask vector.

  __call__(tokens_BL, keep_BK, drop_BM) -> logits_BMV at the dropped positions. The decoder input is
  Dense(encoder output) scattered to the kept positions and the learned `mask_embedding` elsewhere; its
  blocks attend over all L positions (RoPE with positions 0..L-1, [PAD] keys masked).
  """
  encoder: transformer.TransformerEncoder
  decoder_layers: int = 1
  decoder_mlp_dim: int | None = None

  @nn.compact
  def __call__(self, tokens_BL, keep_BK, drop_BM, *, deterministic: bool = True):
    enc = self.encoder
    kept_BK = gather_BK(tokens_BL, keep_BK)
    h_BKD = enc.hidden(kept_BK, positions_BL=keep_BK, padding_mask_BL=kept_BK != PAD_ID,
                       deterministic=deterministic)
    D = h_BKD.shape[-1]
    h_BKD = layers.dense(D, ("embed", "mlp"), dtype=enc.dtype, param_dtype=enc.param_dtype,
                         name="enc_to_dec")(h_BKD)
    mask_D = self.param("mask_embedding", nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed",)),
                        (D,), enc.param_dtype)
    B, L = tokens_BL.shape
    x_BLD = jnp.broadcast_to(mask_D.astype(h_BKD.dtype), (B, L, D))
    x_BLD = x_BLD.at[jnp.arange(B)[:, None], keep_BK].set(h_BKD)
    positions_BL = jnp.broadcast_to(jnp.arange(L), (B, L))
    attn = dataclasses.replace(transformer.per_layer_configs(enc.attention, enc.num_layers)[-1], causal=False)
    for i in range(self.decoder_layers):
      x_BLD = transformer.Block(num_heads=enc.num_heads, head_dim=enc.head_dim,
                                mlp_dim=self.decoder_mlp_dim or enc.mlp_dim, attention=attn, norm="pre",
                                norm_type=enc.norm_type, dropout_rate=enc.dropout_rate, dtype=enc.dtype,
                                param_dtype=enc.param_dtype, name=f"dec_block{i}")(
                                    x_BLD, positions_BL, tokens_BL != PAD_ID, deterministic)
    x_BLD = layers.make_norm(enc.norm_type, dtype=enc.dtype, param_dtype=enc.param_dtype,
                             module_name="dec_norm")(x_BLD)
    x_BMD = gather_BK(x_BLD, drop_BM)
    return layers.dense(VOCAB_SIZE, ("embed", "vocab"), dtype=jnp.float32, param_dtype=enc.param_dtype,
                        name="dec_head")(x_BMD.astype(jnp.float32))


class DropTokenClassifier(nn.Module):
  """Encoder + [CLS] linear head; DropToken (module docstring) when `drop` is on. Returns logits_BC."""
  encoder: transformer.TransformerEncoder
  num_classes: int
  drop_token: float = 0.0
  head_dropout_rate: float = 0.0
  pool: str = "first"   # "first": the [CLS] state; "mean": the mean over the (kept) tokens

  @nn.compact
  def __call__(self, tokens_BL, *, train: bool = False, drop: bool | None = None, keep_BK=None):
    """drop (default: train) samples the kept positions from the 'droptoken' rng; `keep_BK` gives them
    explicitly (sorted, [CLS] first). The kept positions are sown as intermediates/keep_BK."""
    drop = train if drop is None else drop
    positions_BL = jnp.broadcast_to(jnp.arange(tokens_BL.shape[1]), tokens_BL.shape)
    if keep_BK is None and drop and self.drop_token > 0:
      keep_BK, _ = keep_drop_indices(self.make_rng("droptoken"), tokens_BL,
                                     num_kept(tokens_BL.shape[1], self.drop_token))
    if keep_BK is not None:
      self.sow("intermediates", "keep_BK", keep_BK)
      tokens_BL, positions_BL = gather_BK(tokens_BL, keep_BK), keep_BK
    mask_BL = tokens_BL != PAD_ID
    h_BLD = self.encoder.hidden(tokens_BL, positions_BL=positions_BL, padding_mask_BL=mask_BL,
                                deterministic=not train)
    return heads.ClassifierHead(self.num_classes, pool=self.pool, dropout_rate=self.head_dropout_rate,
                                name="head")(h_BLD, padding_mask_BL=mask_BL, deterministic=not train)


# --------------------------------------------------------------------------------------- Pre-training.


def _ce_and_correct(logits_NV, targets_N, weights_N):
  ce_N = optax.softmax_cross_entropy_with_integer_labels(logits_NV.astype(jnp.float32), targets_N)
  correct_N = (jnp.argmax(logits_NV, -1) == targets_N).astype(jnp.float32)
  return jnp.sum(ce_N * weights_N), jnp.sum(correct_N * weights_N), jnp.sum(weights_N)


class MLMTask:
  """Pre-training: mode "mlm" (BERT 80/10/10) or "mae" (encoder on kept tokens + light decoder).

  config.task: name="mlm", mode, mask_rate (0.15), mask_frac (0.8), random_frac (0.1) [mlm],
  decoder_layers (1), decoder_mlp_dim (None = model.mlp_dim) [mae], eval_seed (fixed masks for evaluation).
  Batches: {"tokens": int32[B, L]} = [CLS] + bytes (the `cls_windows` view).
  """

  unit = "tokens"

  def __init__(self, config: ml_collections.ConfigDict):
    t = config.task
    self.mode = t.get("mode", "mlm")
    if self.mode not in MODES:
      raise ValueError(f"unknown task.mode {self.mode!r}; expected one of {MODES}.")
    self.rate = float(t.get("mask_rate", 0.15))
    self.mask_frac = float(t.get("mask_frac", 0.8))
    self.random_frac = float(t.get("random_frac", 0.1))
    _check_rates(self.rate, self.mask_frac, self.random_frac)
    if self.rate <= 0:
      raise ValueError(f"task.mask_rate must be > 0 for pre-training, got {self.rate}.")
    self.eval_seed = int(t.get("eval_seed", 0))
    encoder = build_encoder(config.model)
    if self.mode == "mlm":
      self.model = MaskedLM(encoder)
    else:
      layers_ = int(t.get("decoder_layers", 1))
      if layers_ < 1:
        raise ValueError(f"task.decoder_layers must be >= 1, got {layers_}.")
      self.model = MAEModel(encoder, decoder_layers=layers_, decoder_mlp_dim=t.get("decoder_mlp_dim", None))

  def _sums(self, variables, tokens_BL, rng, *, deterministic: bool, dropout_rng=None):
    """(ce_sum, correct_sum, count) over the predicted positions."""
    rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
    if self.mode == "mlm":
      inputs_BL, selected_BL = bert_mask(rng, tokens_BL, tokens_BL < NUM_BYTES, rate=self.rate,
                                         mask_frac=self.mask_frac, random_frac=self.random_frac)
      logits_BLV = self.model.apply(variables, inputs_BL, deterministic=deterministic, rngs=rngs)
      return _ce_and_correct(logits_BLV, tokens_BL, selected_BL.astype(jnp.float32))
    keep_BK, drop_BM = keep_drop_indices(rng, tokens_BL, num_kept(tokens_BL.shape[1], self.rate))
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
    ce, correct, count = self._sums(variables, batch["tokens"], jax.random.key(self.eval_seed),
                                    deterministic=True)
    return {"loss": (ce, count), "accuracy": (correct, count)}

  def units_per_example(self, batch) -> int:
    return int(batch["tokens"].shape[1])


# ---------------------------------------------------------------------------------------- Fine-tuning.


class DropTokenClassifyTask:
  """Fine-tuning classification with DropToken; the encoder may start from a pre-training run.

  config.task: name="droptoken_classify", num_classes, drop_token (p in [0, 1)), head_dropout_rate,
  pool ("first" = the [CLS] state, "mean" = the mean of the token states; MLM never trains [CLS]),
  correction_r (0: none; > 0: Su's correction of the loaded token embedding, needs config.init_from),
  mask_frac / random_frac (those of the pre-training, for the correction).
  Pre-trained weights: config.init_from = {workdir: the pre-training run, mapping: (("encoder", "encoder"),)}.
  """

  unit = "examples"

  def __init__(self, config: ml_collections.ConfigDict):
    t = config.task
    self.drop_token = float(t.get("drop_token", 0.0))
    if not 0.0 <= self.drop_token < 1.0:
      raise ValueError(f"task.drop_token must be in [0, 1), got {self.drop_token}.")
    self.correction_r = float(t.get("correction_r", 0.0))
    self.mask_frac = float(t.get("mask_frac", 0.8))
    self.random_frac = float(t.get("random_frac", 0.1))
    _check_rates(self.correction_r, self.mask_frac, self.random_frac, what="task.correction_r")
    init_from = config.get("init_from") or {}
    if self.correction_r and not init_from.get("workdir"):
      raise ValueError(f"task.correction_r={self.correction_r} corrects a pre-trained embedding: set "
                       "config.init_from.workdir to the pre-training run (or correction_r=0).")
    if self.correction_r and _pretraining_mode(init_from.get("workdir")) == "mae":
      raise ValueError("task.correction_r > 0 with an MAE-style checkpoint: its encoder never sees [MASK], so "
                       "the [MASK] row is untrained and the correction would mix in a random vector. Use an "
                       "MLM checkpoint or correction_r=0.")
    classes = (config.get("data") or {}).get("classes")
    if classes is not None and len(classes) != int(t.num_classes):
      raise ValueError(f"task.num_classes={t.num_classes} but data.classes has {len(classes)} entries; make "
                       "them equal.")
    pool = t.get("pool", "first")
    if pool not in heads.POOLINGS:
      raise ValueError(f"unknown task.pool {pool!r}; expected one of {heads.POOLINGS}.")
    self.model = DropTokenClassifier(build_encoder(config.model), num_classes=int(t.num_classes),
                                     drop_token=self.drop_token,
                                     head_dropout_rate=float(t.get("head_dropout_rate", 0.0)), pool=pool)

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

  def evaluate(self, variables, batch):
    logits_BC = self.model.apply(variables, batch["tokens"], train=False)
    labels_B = batch["label"]
    n = jnp.asarray(labels_B.shape[0], jnp.float32)
    correct = jnp.sum((jnp.argmax(logits_BC, -1) == labels_B).astype(jnp.float32))
    return {"loss": (jnp.sum(classify.cross_entropy_B(logits_BC, labels_B)), n), "accuracy": (correct, n)}

  def units_per_example(self, batch) -> int:
    del batch
    return 1


# ------------------------------------------------------------------------------------------ Data views.


def _prepend_cls(example):
  tokens = np.asarray(example["tokens"], np.int32)
  return {"tokens": np.concatenate([np.array([CLS_ID], np.int32), tokens])}


@preprocess.register("cls_windows")
def cls_windows(source, data_cfg, *, train: bool, seed: int):
  """{"tokens": [CLS] + seq_len - 1 bytes}: `lm_windows` of seq_len - 1 bytes with [CLS] in front."""
  seq_len = int(data_cfg.seq_len)
  if seq_len < 3:
    raise ValueError(f"data.seq_len must be >= 3 for [CLS] + bytes, got {seq_len}.")
  inner = ml_collections.ConfigDict(data_cfg.to_dict())
  inner.seq_len = seq_len - 2  # lm_windows yields seq_len + 1 tokens
  return preprocess.get("lm_windows")(source, inner, train=train, seed=seed).map(_prepend_cls)


def package_of(path) -> str | None:
  """Top-level package of a stdlib relative path ('asyncio/tasks.py' -> 'asyncio'); None for a module."""
  path = path.decode("utf-8") if isinstance(path, bytes) else str(path)
  return path.split("/", 1)[0] if "/" in path else None


class PackageWindows:
  """Documents of the chosen packages: bytes, class ids, and window samplers (see module docstring)."""

  def __init__(self, source, classes, window: int):
    self.classes, self.window = tuple(classes), int(window)
    index = {c: i for i, c in enumerate(self.classes)}
    texts, labels = [], []
    for i in range(len(source)):
      ex = source[i]
      label = index.get(package_of(ex["path"]))
      text = preprocess._as_bytes(ex["text"])  # pylint: disable=protected-access
      if label is not None and len(text) >= self.window:
        texts.append(text)
        labels.append(label)
    missing = sorted(set(self.classes) - {self.classes[l] for l in labels})
    if missing:
      raise ValueError(f"classes {missing} have no file of >= {self.window} bytes in this split; choose "
                       "data.classes present in both splits (experiments/mlm_dropout/README: package_counts).")
    self.texts, self.labels = texts, np.array(labels, np.int64)
    # Per class: cumulative number of window starts over its documents.
    self.docs_of = [np.flatnonzero(self.labels == c) for c in range(len(self.classes))]
    self.ends_of = [np.cumsum([len(texts[d]) - self.window + 1 for d in docs]) for docs in self.docs_of]

  def example(self, doc: int, start: int) -> dict[str, np.ndarray]:
    body = self.texts[doc][start:start + self.window].astype(np.int32)
    return {"tokens": np.concatenate([np.array([CLS_ID], np.int32), body]),
            "label": np.asarray(self.labels[doc], np.int32)}

  def sample(self, index, rng: np.random.Generator):
    del index
    c = int(rng.integers(len(self.classes)))
    u = int(rng.integers(self.ends_of[c][-1]))
    k = int(np.searchsorted(self.ends_of[c], u, side="right"))
    start = u - (int(self.ends_of[c][k - 1]) if k else 0)
    return self.example(int(self.docs_of[c][k]), start)

  def eval_windows(self, per_class: int) -> np.ndarray:
    """(doc, start) int64[N, 2]: per class, `per_class` of its consecutive windows at evenly spaced indices."""
    out = []
    for docs in self.docs_of:
      wins = [(d, s) for d in docs for s in range(0, len(self.texts[d]) - self.window + 1, self.window)]
      take = np.unique(np.linspace(0, len(wins) - 1, min(per_class, len(wins))).round().astype(int))
      out.extend(wins[i] for i in take)
    return np.array(out, np.int64).reshape(-1, 2)

  def read(self, doc_start):
    return self.example(int(doc_start[0]), int(doc_start[1]))


@preprocess.register("stdlib_packages")
def stdlib_packages(source, data_cfg, *, train: bool, seed: int):
  """Package-of-origin classification of byte windows (module docstring)."""
  classes = tuple(data_cfg.classes)
  if len(classes) < 2:
    raise ValueError(f"data.classes needs >= 2 packages, got {classes}.")
  pw = PackageWindows(source, classes, int(data_cfg.seq_len) - 1)
  if train:
    per_class = int(data_cfg.get("train_per_class", 0) or 0)
    if per_class < 0:
      raise ValueError(f"data.train_per_class must be >= 0 (0 = every window), got {per_class}.")
    if not per_class:
      return grain.MapDataset.range(sys.maxsize).random_map(pw.sample, seed=seed)
    # A fixed labelled pool (the low-resource regime where pre-training should pay off), drawn uniformly with
    # replacement: per class, `per_class` non-overlapping windows at evenly spaced indices of its files.
    pool = pw.eval_windows(per_class)
    return grain.MapDataset.range(sys.maxsize).random_map(
        lambda i, rng: pw.read(pool[int(rng.integers(len(pool)))]), seed=seed)
  return grain.MapDataset.source(pw.eval_windows(int(data_cfg.get("eval_per_class", 64)))).map(pw.read)


@functools.lru_cache(maxsize=None)
def package_counts(data_dir: str | None = None, splits: tuple[str, ...] = ("train", "validation", "test")):
  """{split: {package: number of files}} of python_stdlib_text (for choosing `data.classes`)."""
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  out = {}
  for split in splits:
    src = pipeline.get_data_source("python_stdlib_text", split, data_dir)
    counts: dict[str, int] = {}
    for i in range(len(src)):
      pkg = package_of(src[i]["path"])
      if pkg is not None:
        counts[pkg] = counts.get(pkg, 0) + 1
    out[split] = counts
  return out
