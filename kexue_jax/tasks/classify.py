r"""Classification with R-Drop ("dropout twice", https://kexue.fm/archives/8496; Liang et al., arXiv 2106.14448).

The loss
--------
Two forward passes of the same example with independent dropout masks give P1 = softmax(z1), P2 = softmax(z2).
The paper and Su's article write, per labelled example (x, y),

    L_paper = -log P1(y) - log P2(y) + alpha * 1/2 [KL(P1 || P2) + KL(P2 || P1)].

Su's Keras code (bojone/r-drop: each row duplicated, `mean(CE over 2B rows) + alpha/4 * mean(KL12 + KL21)`)
minimises exactly 1/2 L_paper, and so do we. With

    ce = 1/2 [CE(z1, y) + CE(z2, y)],        kl = 1/2 [KL(P1 || P2) + KL(P2 || P1)]   (the paper's L^KL),

the loss is the batch mean of

    L = ce + (alpha / 2) * kl  =  1/2 L_paper,

so `alpha` means the same as the paper's and Su's alpha (Su: 4; paper: 1-5). The official README's
`ce + alpha_R * kl` is ours with alpha = 2 alpha_R. The symmetric KL is computed stably from log-probabilities:
KL(P1||P2) + KL(P2||P1) = sum_k (p1_k - p2_k)(log p1_k - log p2_k). Both passes carry gradients (nothing is
stopped), as in the paper and Su's code.

Semi-supervised mode (Su's extension, bojone/r-drop `sentiment_ssl.py`): when the batch also holds unlabelled
inputs (`x_unlabelled` / `tokens_unlabelled`), they get the KL term only, with their own weight beta
(`task.unlabelled_alpha`):  L += (beta / 2) * mean_unlabelled kl. beta = 4 is exactly Su's unlabelled loss
mean(KL12 + KL21) = 2 kl. Su alternated a labelled step (plain CE, i.e. alpha = 0) and an unlabelled step with a
second Adam at half the learning rate; we take one joint step on a batch of B labelled and B unlabelled
examples (one optimizer), which is the same objective up to the relative step sizes.

Two passes in one jitted step (`task.passes`):
  "duplicate"   one forward pass on [x; x] (2B rows, one dropout key): Su's implementation. Dropout draws an
                independent mask per element, so rows i and B + i get independent masks. BatchNorm sees the
                duplicated batch (for a BN layer with no dropout before it, [x; x] has the statistics of x).
  "split_keys"  two forward passes on x with keys split from the step key (BatchNorm: statistics per pass;
                the updated running statistics are those of the second pass).
  "single"      one pass, plain dropout (alpha must be 0, no unlabelled data): the usual baseline.
Both two-pass forms have the same distribution of (z1, z2); tests check they agree.

Consistency diagnostic (Su's "model average vs weight average", article section on train/inference
consistency), in `evaluate`: with P0 the dropout-off prediction and Pbar = (1/K) sum_k P_k the mean of K
dropout-on passes (Monte-Carlo model average; BatchNorm in inference mode),

    consistency_kl       = KL(Pbar || P0)
    consistency_disagree = [argmax Pbar != argmax P0]
    mc_accuracy, mc_loss = accuracy and CE of Pbar
    dropout_kl           = 1/2 [KL(P_1 || P_2) + KL(P_2 || P_1)]   (the R-Drop term on test data)

all returned as (sum, count) over the batch. The K passes use a fixed key (`task.eval_seed`), so evaluation is
deterministic.

Models: anything in `models.MODELS` returning (logits_BK, features) from `model(x, train=..., [dropout=...])`
-- `mlp` (nn/mlp.py), `cnn1d`, `vit` -- on batches {"x", "label"}; and `transformer_encoder` on
{"tokens", "label"}, wrapped here in `EncoderClassifier` (encoder hidden states -> heads.ClassifierHead).
A model whose `__call__` has a `dropout` argument gets it (MC dropout with BatchNorm in inference mode);
otherwise `train` is set to the dropout state, which is exact for models whose `train` only toggles dropout.

Data views (registered with `kexue_jax.data.preprocess.register` when this module is imported):
  classification_inmemory  `classification` with the split read once into memory (MNIST-1D: the TFDS
                        reader costs more than a training step).
  classification_semi   train: {"x", "label", "x_unlabelled"}: labelled = the first `data.num_labelled`
                        examples of the train split (Su: the first 1%), unlabelled = the rest, each
                        reshuffled per epoch; eval: plain `classification`. A reduced labelled set without
                        unlabelled data is just TFDS slicing: `data.train_split = "train[:1000]"`.
  text_bytes            {"tokens": int32[seq_len], "label"}: [CLS] + UTF-8 bytes of `data.text_key`,
                        truncated, padded with PAD (vocab = 258: bytes, CLS = 256, PAD = 257).
  standin_tokens        MNIST-1D as a byte sequence ([CLS] + 40 quantised values, padded): an offline
                        stand-in with the text configs' batch format, for `runlocal` only.
  standin_images        MNIST-1D as images float32[H, W, C] (outer product of the signal resampled to H=W,
                        tiled over C): an offline stand-in with CIFAR's batch format, for `runlocal` only.
"""
from __future__ import annotations

import inspect
import sys
from typing import Any

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from kexue_jax import models
from kexue_jax.data import preprocess
from kexue_jax.nn import heads

PASSES = ("duplicate", "split_keys", "single")
CLS_ID, PAD_ID, TEXT_VOCAB_SIZE = 256, 257, 258


# ---------------------------------------------------------------------------------------------- The loss.


def cross_entropy_B(logits_BK, labels_B):
  """-log softmax(z)[y] per example (float32)."""
  logp_BK = jax.nn.log_softmax(logits_BK.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(logp_BK, labels_B[:, None].astype(jnp.int32), axis=-1)[:, 0]


def kl_B(logits_p_BK, logits_q_BK):
  """KL(P || Q) = sum_k p_k (log p_k - log q_k) per example, P = softmax(z_p), Q = softmax(z_q)."""
  logp = jax.nn.log_softmax(logits_p_BK.astype(jnp.float32), axis=-1)
  logq = jax.nn.log_softmax(logits_q_BK.astype(jnp.float32), axis=-1)
  return jnp.sum(jnp.exp(logp) * (logp - logq), axis=-1)


def symmetric_kl_B(logits1_BK, logits2_BK):
  """The paper's L^KL: 1/2 [KL(P1||P2) + KL(P2||P1)] = 1/2 sum_k (p1 - p2)(log p1 - log p2)."""
  logp1 = jax.nn.log_softmax(logits1_BK.astype(jnp.float32), axis=-1)
  logp2 = jax.nn.log_softmax(logits2_BK.astype(jnp.float32), axis=-1)
  return 0.5 * jnp.sum((jnp.exp(logp1) - jnp.exp(logp2)) * (logp1 - logp2), axis=-1)


def rdrop_loss(logits1_BK, logits2_BK, labels_B, alpha: float):
  """mean_i [ce_i + (alpha/2) kl_i] = 1/2 L_paper (module docstring). Returns (loss, {'ce', 'kl'})."""
  ce = 0.5 * jnp.mean(cross_entropy_B(logits1_BK, labels_B) + cross_entropy_B(logits2_BK, labels_B))
  kl = jnp.mean(symmetric_kl_B(logits1_BK, logits2_BK))
  return ce + 0.5 * alpha * kl, {"ce": ce, "kl": kl}


def two_pass_logits(apply_fn, x, rng, passes: str = "duplicate"):
  """(z1, z2, mutable): two dropout passes of the same inputs in one traced computation.

  `apply_fn(x, rng) -> (logits, mutable)`; x is an array or a pytree of arrays with a leading batch axis.
  """
  if passes == "duplicate":
    b = jax.tree.leaves(x)[0].shape[0]
    logits, mutable = apply_fn(jax.tree.map(lambda a: jnp.concatenate([a, a], axis=0), x), rng)
    return logits[:b], logits[b:], mutable
  if passes == "split_keys":
    rng1, rng2 = jax.random.split(rng)
    z1, _ = apply_fn(x, rng1)
    z2, mutable = apply_fn(x, rng2)
    return z1, z2, mutable
  raise ValueError(f"two passes need task.passes in {PASSES[:2]}, got {passes!r}.")


# ----------------------------------------------------------------------------- Consistency diagnostic.


def consistency_sums(logits0_BK, probs_mc_BK, logits_a_BK, logits_b_BK, labels_B):
  """{name: (sum, count)} of the diagnostic in the module docstring (Pbar = probs_mc_BK)."""
  logp0 = jax.nn.log_softmax(logits0_BK.astype(jnp.float32), axis=-1)
  logpbar = jnp.log(jnp.maximum(probs_mc_BK, 1e-30))
  n = jnp.asarray(labels_B.shape[0], jnp.float32)
  pred_mc = jnp.argmax(probs_mc_BK, -1)
  per_example = {
      "consistency_kl": jnp.sum(probs_mc_BK * (logpbar - logp0), axis=-1),
      "consistency_disagree": (pred_mc != jnp.argmax(logits0_BK, -1)).astype(jnp.float32),
      "mc_accuracy": (pred_mc == labels_B).astype(jnp.float32),
      "mc_loss": -jnp.take_along_axis(logpbar, labels_B[:, None].astype(jnp.int32), axis=-1)[:, 0],
      "dropout_kl": symmetric_kl_B(logits_a_BK, logits_b_BK),
  }
  return {k: (jnp.sum(v), n) for k, v in per_example.items()}


# ------------------------------------------------------------------------------------- Model adapter.


class EncoderClassifier(nn.Module):
  """TransformerEncoder hidden states -> heads.ClassifierHead (pool 'first' = the [CLS] token).

  tokens_BL equal to `pad_id` are padding (never attended to, not pooled). Returns (logits_BK, pooled_BD).
  """
  encoder: nn.Module
  num_classes: int
  pool: str = "first"
  head_dropout_rate: float = 0.0
  pad_id: int = PAD_ID

  @nn.compact
  def __call__(self, tokens_BL, *, train: bool = False, dropout: bool | None = None):
    dropout = train if dropout is None else dropout
    mask_BL = tokens_BL != self.pad_id
    h_BLD = self.encoder.hidden(tokens_BL, padding_mask_BL=mask_BL, deterministic=not dropout)
    logits_BK = heads.ClassifierHead(self.num_classes, pool=self.pool, dropout_rate=self.head_dropout_rate,
                                     name="head")(h_BLD, padding_mask_BL=mask_BL, deterministic=not dropout)
    return logits_BK, heads.pool_tokens(h_BLD.astype(jnp.float32), mask_BL, self.pool)


def build_classifier(config: ml_collections.ConfigDict) -> nn.Module:
  """config.model -> a module with `(inputs, train=, [dropout=]) -> (logits_BK, features)`."""
  from kexue_jax.nn import transformer  # pylint: disable=g-import-not-at-top
  model = models.build_model(config.model)
  if isinstance(model, transformer.TransformerEncoder):
    t = config.task
    model = EncoderClassifier(encoder=model, num_classes=int(t.num_classes), pool=t.get("pool", "first"),
                              head_dropout_rate=float(t.get("head_dropout_rate", 0.0)))
  return model


def _accepts_dropout_flag(model: nn.Module) -> bool:
  return "dropout" in inspect.signature(type(model).__call__).parameters


# -------------------------------------------------------------------------------------------- The task.


class ClassifyTask:
  """Supervised / semi-supervised classification with optional R-Drop (see module docstring).

  config.task: name="classify", rdrop_alpha (alpha), passes, unlabelled_alpha (beta; None = alpha),
  mc_passes (K), eval_seed, and for text models num_classes / pool / head_dropout_rate.
  """

  unit = "examples"

  def __init__(self, config: ml_collections.ConfigDict):
    t = config.task
    self.alpha = float(t.get("rdrop_alpha", 0.0))
    self.passes = t.get("passes", "duplicate")
    beta = t.get("unlabelled_alpha", None)
    self.beta = self.alpha if beta is None else float(beta)
    self.mc_passes = int(t.get("mc_passes", 20))
    self.eval_seed = int(t.get("eval_seed", 0))
    if self.passes not in PASSES:
      raise ValueError(f"unknown task.passes {self.passes!r}; expected one of {PASSES}.")
    if self.passes == "single" and self.alpha:
      raise ValueError(f"task.passes='single' is plain dropout; it needs task.rdrop_alpha=0, got {self.alpha}.")
    if self.mc_passes < 2:
      raise ValueError(f"task.mc_passes must be >= 2 (dropout_kl compares two passes), got {self.mc_passes}.")
    self.model = build_classifier(config)
    self._dropout_flag = _accepts_dropout_flag(self.model)

  # -- forward
  @staticmethod
  def _key(batch):
    return "tokens" if "tokens" in batch else "x"

  def _apply(self, variables, inputs, *, train: bool, dropout: bool, rng=None):
    """(logits_BK float32, updated mutable collections or {})."""
    kwargs = {"train": train, "dropout": dropout} if self._dropout_flag else {
        # No separate flag: `train` toggles dropout. Exact without BatchNorm; with BatchNorm keep `train`.
        "train": train if "batch_stats" in variables else dropout}
    mutable = ["batch_stats"] if (train and "batch_stats" in variables) else False
    rngs = {"dropout": rng} if rng is not None else {}
    out = self.model.apply(variables, inputs, rngs=rngs, mutable=mutable, **kwargs)
    (logits, _), new = (out, {}) if mutable is False else out
    return logits.astype(jnp.float32), dict(new)

  def init(self, rng, batch):
    inputs = batch[self._key(batch)]
    return self.model.init({"params": rng, "dropout": rng}, inputs, train=False)

  # -- training
  def loss(self, variables, batch, rng) -> tuple[jax.Array, dict[str, Any]]:
    key = self._key(batch)
    inputs, labels_B = batch[key], batch["label"]
    unlabelled = batch.get(f"{key}_unlabelled")
    apply_fn = lambda x, r: self._apply(variables, x, train=True, dropout=True, rng=r)
    if self.passes == "single":
      if unlabelled is not None:
        raise ValueError("unlabelled data needs the KL term: set task.passes to 'duplicate' or 'split_keys'.")
      logits_BK, mutable = apply_fn(inputs, rng)
      loss = jnp.mean(cross_entropy_B(logits_BK, labels_B))
      metrics = {"ce": loss, "accuracy": jnp.mean((jnp.argmax(logits_BK, -1) == labels_B).astype(jnp.float32))}
      return loss, {"metrics": metrics, "mutable": mutable}
    b = inputs.shape[0]
    x = inputs if unlabelled is None else jnp.concatenate([inputs, unlabelled], axis=0)
    z1, z2, mutable = two_pass_logits(apply_fn, x, rng, self.passes)
    loss, metrics = rdrop_loss(z1[:b], z2[:b], labels_B, self.alpha)
    if unlabelled is not None:
      kl_u = jnp.mean(symmetric_kl_B(z1[b:], z2[b:]))
      loss = loss + 0.5 * self.beta * kl_u
      metrics["kl_unlabelled"] = kl_u
    metrics["accuracy"] = jnp.mean((jnp.argmax(z1[:b], -1) == labels_B).astype(jnp.float32))
    return loss, {"metrics": metrics, "mutable": mutable}

  # -- evaluation
  def evaluate(self, variables, batch):
    inputs, labels_B = batch[self._key(batch)], batch["label"]
    logits0_BK, _ = self._apply(variables, inputs, train=False, dropout=False)
    keys = jax.random.split(jax.random.key(self.eval_seed), self.mc_passes)

    def one_pass(carry, i):  # one scan body (compiles once): sum of probabilities, logits of passes 0 and 1
      probs_sum_BK, za_BK, zb_BK = carry
      logits_BK, _ = self._apply(variables, inputs, train=False, dropout=True, rng=keys[i])
      za_BK = jnp.where(i == 0, logits_BK, za_BK)
      zb_BK = jnp.where(i == 1, logits_BK, zb_BK)
      return (probs_sum_BK + jax.nn.softmax(logits_BK, axis=-1), za_BK, zb_BK), None

    zeros_BK = jnp.zeros_like(logits0_BK)
    (probs_sum_BK, za_BK, zb_BK), _ = jax.lax.scan(one_pass, (zeros_BK, zeros_BK, zeros_BK),
                                                   jnp.arange(self.mc_passes))
    n = jnp.asarray(labels_B.shape[0], jnp.float32)
    ce = cross_entropy_B(logits0_BK, labels_B)
    correct = (jnp.argmax(logits0_BK, -1) == labels_B).astype(jnp.float32)
    out = {"loss": (jnp.sum(ce), n), "accuracy": (jnp.sum(correct), n)}
    out.update(consistency_sums(logits0_BK, probs_sum_BK / self.mc_passes, za_BK, zb_BK, labels_B))
    return out

  def units_per_example(self, batch) -> int:
    del batch
    return 1


# ------------------------------------------------------------------------------------------ Data views.


def _labelled(example):
  return preprocess.classification_example(example)


def load_arrays(source) -> dict[str, np.ndarray]:
  """{x: float32[N, ...], label: int32[N]}: a whole (small) split read into memory at once.

  Reading a TFDS array_record source example by example inside the input pipeline costs ~0.1-0.2 ms per
  example, more than a training step of an MNIST-1D-sized model; one bulk read of 4000 examples takes ~0.1 s.
  """
  getitems = getattr(source, "__getitems__", None)
  raw = getitems(list(range(len(source)))) if getitems else [source[i] for i in range(len(source))]
  examples = [_labelled(e) for e in raw]
  return {k: np.stack([e[k] for e in examples]) for k in ("x", "label")}


class EpochShuffled:
  """index -> row of `arrays[start:stop]`, reshuffled every epoch: epoch e = index // n is the permutation
  `default_rng([seed, e]).permutation(n)` (a pure function of the index, so iterator state is an index).
  The permutation of the current epoch is kept, so a sequential read costs O(1) per example.
  """

  def __init__(self, arrays: dict[str, np.ndarray], seed: int, start: int = 0, stop: int | None = None):
    self.arrays, self.seed, self.start = arrays, int(seed), start
    self.n = (len(next(iter(arrays.values()))) if stop is None else stop) - start
    self._cache = (-1, None)  # (epoch, permutation): one tuple, swapped atomically (grain reads in threads)

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    epoch, pos = divmod(int(index), self.n)
    cache = self._cache
    if cache[0] != epoch:
      cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
      self._cache = cache
    row = self.start + int(cache[1][pos])
    return {k: v[row] for k, v in self.arrays.items()}


class _Rows:
  """A random-access source over in-memory arrays."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self.arrays = arrays

  def __len__(self):
    return len(next(iter(self.arrays.values())))

  def __getitem__(self, i):
    return {k: v[i] for k, v in self.arrays.items()}


@preprocess.register("classification_inmemory")
def classification_inmemory(source, data_cfg, *, train: bool, seed: int):
  """`classification` read once into memory; train: reshuffled every epoch (`EpochShuffled`)."""
  del data_cfg
  arrays = load_arrays(source)
  if not train:
    return grain.MapDataset.source(_Rows(arrays))
  return grain.MapDataset.range(sys.maxsize).map(EpochShuffled(arrays, seed))


class _SemiExample:
  """index -> {x, label} of the labelled stream and {x_unlabelled} of the unlabelled stream."""

  def __init__(self, labelled: EpochShuffled, unlabelled: EpochShuffled):
    self.labelled, self.unlabelled = labelled, unlabelled

  def __call__(self, i):
    return {**self.labelled(i), "x_unlabelled": self.unlabelled(i)["x"]}


@preprocess.register("classification_semi")
def classification_semi(source, data_cfg, *, train: bool, seed: int):
  """Labelled first `num_labelled` examples + unlabelled rest, in memory (module docstring)."""
  arrays = load_arrays(source)
  if not train:
    return grain.MapDataset.source(_Rows(arrays))
  n = int(data_cfg.num_labelled)
  if not 0 < n < len(source):
    raise ValueError(f"data.num_labelled={n} must be in (0, {len(source)}) for a split of {len(source)}.")
  return grain.MapDataset.range(sys.maxsize).map(
      _SemiExample(EpochShuffled(arrays, seed, 0, n), EpochShuffled(arrays, seed + 1, n)))


def bytes_to_tokens(text, seq_len: int) -> np.ndarray:
  """int32[seq_len]: [CLS] + UTF-8 bytes (truncated), then PAD."""
  data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
  body = np.frombuffer(data, np.uint8)[:seq_len - 1].astype(np.int32)
  out = np.full((seq_len,), PAD_ID, np.int32)
  out[0] = CLS_ID
  out[1:1 + len(body)] = body
  return out


class _TextExample:

  def __init__(self, seq_len: int, text_key: str):
    self.seq_len, self.text_key = seq_len, text_key

  def __call__(self, example):
    return {"tokens": bytes_to_tokens(example[self.text_key], self.seq_len),
            "label": np.asarray(example["label"], np.int32)}


def _maybe_shuffle(ds, train: bool, seed: int):
  return ds.shuffle(seed=seed).repeat() if train else ds


@preprocess.register("text_bytes")
def text_bytes(source, data_cfg, *, train: bool, seed: int):
  """Byte tokens of a TFDS text-classification dataset (module docstring)."""
  fn = _TextExample(int(data_cfg.seq_len), data_cfg.get("text_key", "text"))
  return _maybe_shuffle(grain.MapDataset.source(source), train, seed).map(fn)


class _StandinTokens:

  def __init__(self, seq_len: int):
    self.seq_len = seq_len

  def __call__(self, example):
    ex = _labelled(example)
    q = np.clip(np.round((ex["x"].reshape(-1) + 4.0) * 32.0), 0, 255).astype(np.uint8)
    return {"tokens": bytes_to_tokens(q.tobytes(), self.seq_len), "label": ex["label"]}


@preprocess.register("standin_tokens")
def standin_tokens(source, data_cfg, *, train: bool, seed: int):
  """MNIST-1D (or any {x, label} source) as byte tokens, [CLS] + quantised values: runlocal stand-in."""
  return _maybe_shuffle(grain.MapDataset.source(source), train, seed).map(_StandinTokens(int(data_cfg.seq_len)))


class _StandinImages:

  def __init__(self, shape):
    self.shape = tuple(int(s) for s in shape)

  def __call__(self, example):
    ex = _labelled(example)
    h, w, c = self.shape
    x = ex["x"].reshape(-1)
    grid = np.linspace(0, len(x) - 1, max(h, w))
    s = np.interp(grid, np.arange(len(x)), x).astype(np.float32)
    img = np.outer(s[:h], s[:w]).astype(np.float32)
    return {"x": np.repeat(img[:, :, None], c, axis=-1), "label": ex["label"]}


@preprocess.register("standin_images")
def standin_images(source, data_cfg, *, train: bool, seed: int):
  """MNIST-1D as float32[H, W, C] images (outer product of the resampled signal): runlocal stand-in."""
  fn = _StandinImages(data_cfg.image_shape)
  return _maybe_shuffle(grain.MapDataset.source(source), train, seed).map(fn)
