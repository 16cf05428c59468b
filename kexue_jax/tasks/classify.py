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
examples (one optimizer), `task.semi_schedule = "joint"`. The weighting differs: Adam normalises each of Su's
two steps on its own, so his KL step stays about half his CE step however small either gradient gets, while in
the joint step beta is the ratio of the two gradients, and once the few labelled examples are fitted (CE -> 0)
the KL gradient takes over. So Su's beta = 4 does not carry over to the joint step (experiments/rdrop: the beta
arms). `semi_schedule = "alternate"` is Su's scheme: the task has two phases (tasks/base.py), the train step
first updates on the labelled loss (phase 0: the loss of `passes` and alpha on the labelled rows alone), then
on L_u = (beta / 2) * mean_unlabelled kl (phase 1: two passes of the unlabelled rows; "duplicate" when `passes`
is "single"), each phase with its own optimizer (`config.optimizer.alternate`, e.g. Su's half learning rate
for the KL step). Adam is invariant to the scale of a loss, so there beta hardly matters.

Two passes in one jitted step (`task.passes`):
  "duplicate"   one forward pass on [x; x] (2B rows, one dropout key): Su's implementation. Dropout draws an
                independent mask per element, so rows i and B + i get independent masks. BatchNorm sees the
                duplicated batch (for a BN layer with no dropout before it, [x; x] has the statistics of x).
  "split_keys"  two forward passes on x with keys split from the step key (BatchNorm: statistics per pass;
                the updated running statistics are those of the second pass).
  "single"      one pass, plain dropout (alpha must be 0, no unlabelled data): the usual baseline.
Both two-pass forms have the same distribution of (z1, z2); tests check they agree.

The two-pass control is alpha = 0 with a two-pass form: the same duplicated batch as R-Drop and
L = ce = 1/2 [CE(z1, y) + CE(z2, y)] (the KL is logged, not trained on). Against plain dropout ("single") R-Drop
changes two things, the KL term and the number of dropout passes averaged into the gradient; against this control
it changes only the KL term, which is what Su's "dropout twice" argument is about.

Consistency diagnostic (Su's "model average vs weight average", article section on train/inference
consistency), in `evaluate`: with P0 the dropout-off prediction and Pbar = (1/K) sum_k P_k the mean of K
dropout-on passes (Monte-Carlo model average; BatchNorm in inference mode),

    consistency_kl       = KL(Pbar || P0)
    consistency_disagree = [argmax Pbar != argmax P0]
    mc_accuracy, mc_loss = accuracy and CE of Pbar
    dropout_kl           = 1/2 [KL(P_1 || P_2) + KL(P_2 || P_1)]   (the R-Drop term on test data)

dropout_kl is the consistency gap between two dropout passes (P_1, P_2 = the first two of the K passes); it is
computed for every arm, the one-pass baseline included, since evaluation does not depend on `task.passes`.

all returned as (sum, count) over the batch. The K passes use a fixed key (`task.eval_seed`), so evaluation is
deterministic.

Models: anything in `models.MODELS` returning (logits_BK, features) from `model(x, train=..., [dropout=...])`
-- `mlp` (nn/mlp.py), `cnn1d`, `vit` -- on batches {"x", "label"}; and `transformer_encoder` on
{"tokens", "label"}, wrapped in `nn.classifiers.EncoderClassifier` (hidden states -> heads.ClassifierHead).
A model whose `__call__` has a `dropout` argument gets it (MC dropout with BatchNorm in inference mode);
otherwise `train` is set to the dropout state, which is exact for models whose `train` only toggles dropout.

Data views for these batches (classification_inmemory, classification_semi, text_bytes, standin_tokens,
standin_images) live in kexue_jax/data/array_views.py and kexue_jax/data/text_views.py.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from kexue_jax import models
from kexue_jax.nn import classifiers
from kexue_jax.tasks import base

PASSES = ("duplicate", "split_keys", "single")
SEMI_SCHEDULES = ("joint", "alternate")


@dataclasses.dataclass(frozen=True)
class ClassifyConfig:
  """``config.task`` of the "classify" task (module docstring)."""
  rdrop_alpha: float = 0.0                 # alpha; 0 = no R-Drop term
  passes: str = "duplicate"                # one of PASSES
  unlabelled_alpha: float | None = None    # beta (weight of the unlabelled KL); None = alpha
  semi_schedule: str = "joint"             # unlabelled data: one joint step or Su's alternating steps
  mc_passes: int = 20                      # K dropout passes of the consistency diagnostic
  eval_seed: int = 0
  # Text models (transformer_encoder) only: the head over the encoder states.
  num_classes: int | None = None
  pool: str = "first"                      # "first" = [CLS] state, "mean" = mean over the tokens
  head_dropout_rate: float = 0.0


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


def build_classifier(config: ml_collections.ConfigDict) -> nn.Module:
  """config.model -> a module with `(inputs, train=, [dropout=]) -> (logits_BK, features)`."""
  from kexue_jax.nn import transformer  # pylint: disable=g-import-not-at-top
  model = models.build_model(config.model)
  if isinstance(model, transformer.TransformerEncoder):
    t = base.task_config(ClassifyConfig, config.task)
    if t.num_classes is None:
      raise ValueError("a transformer_encoder classifier needs config.task.num_classes.")
    model = classifiers.EncoderClassifier(encoder=model, num_classes=int(t.num_classes), pool=t.pool,
                                          head_dropout_rate=float(t.head_dropout_rate))
  return model


def _accepts_dropout_flag(model: nn.Module) -> bool:
  return "dropout" in inspect.signature(type(model).__call__).parameters


# -------------------------------------------------------------------------------------------- The task.


class ClassifyTask(base.Task):
  """Supervised / semi-supervised classification with optional R-Drop (see module docstring).

  config.task: name="classify" and the fields of `ClassifyConfig`.
  """

  unit = "examples"

  def __init__(self, config: ml_collections.ConfigDict):
    t = base.task_config(ClassifyConfig, config.task)
    self.alpha = float(t.rdrop_alpha)
    self.passes = t.passes
    self.beta = self.alpha if t.unlabelled_alpha is None else float(t.unlabelled_alpha)
    self.mc_passes = int(t.mc_passes)
    self.eval_seed = int(t.eval_seed)
    if self.passes not in PASSES:
      raise ValueError(f"unknown task.passes {self.passes!r}; expected one of {PASSES}.")
    if self.passes == "single" and self.alpha:
      raise ValueError(f"task.passes='single' is plain dropout; it needs task.rdrop_alpha=0, got {self.alpha}.")
    if t.semi_schedule not in SEMI_SCHEDULES:
      raise ValueError(f"unknown task.semi_schedule {t.semi_schedule!r}; expected one of {SEMI_SCHEDULES}.")
    self.phases = 2 if t.semi_schedule == "alternate" else 1   # phase 0: labelled loss, 1: unlabelled KL
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
  def loss(self, variables, batch, rng, phase: int = 0) -> tuple[jax.Array, dict[str, Any]]:
    key = self._key(batch)
    inputs, labels_B = batch[key], batch["label"]
    unlabelled = batch.get(f"{key}_unlabelled")
    apply_fn = lambda x, r: self._apply(variables, x, train=True, dropout=True, rng=r)
    if self.phases == 2:   # Su's alternating scheme (module docstring)
      if unlabelled is None:
        raise ValueError("task.semi_schedule='alternate' needs unlabelled inputs: data.preprocess="
                         "'classification_semi' with data.num_labelled > 0.")
      if phase == 1:
        z1, z2, mutable = two_pass_logits(apply_fn, unlabelled, rng,
                                          "duplicate" if self.passes == "single" else self.passes)
        kl_u = jnp.mean(symmetric_kl_B(z1, z2))
        return 0.5 * self.beta * kl_u, {"metrics": {"kl_unlabelled": kl_u}, "mutable": mutable}
      unlabelled = None   # phase 0: the labelled rows alone
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
