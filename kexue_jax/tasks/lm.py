"""Causal language modelling: next-token cross-entropy and accuracy.

Batches hold ``tokens_BT`` with ``T = L + 1``: inputs are ``tokens[:, :-1]``, targets ``tokens[:, 1:]``;
an optional ``weights_BL`` (1 = count this target) masks padding. The loss is the mean over counted targets of

    CE_t = -log softmax(f(x_{<=t}))[x_{t+1}].
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from kexue_jax import models
from kexue_jax.tasks import base


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """``config.task`` of the "lm" task: no options (the model and data configs say everything)."""


class LMTask(base.Task):
  """Next-token prediction with any causal model returning float32 ``logits_BLV``."""

  unit = "tokens"  # throughput is reported as tokens_per_sec

  def __init__(self, config: ml_collections.ConfigDict):
    base.task_config(LMConfig, config.task)  # an unknown task key is an error
    self.model = models.build_model(config.model)

  @staticmethod
  def _split(batch):
    tokens_BT = batch["tokens"]
    inputs_BL, targets_BL = tokens_BT[:, :-1], tokens_BT[:, 1:]
    weights_BL = batch.get("weights")
    weights_BL = (jnp.ones(targets_BL.shape, jnp.float32) if weights_BL is None
                  else weights_BL[:, -targets_BL.shape[1]:].astype(jnp.float32))
    return inputs_BL, targets_BL, weights_BL

  def init(self, rng, batch):
    inputs_BL, _, _ = self._split(batch)
    return self.model.init({"params": rng}, inputs_BL, deterministic=True)

  def _token_stats(self, logits_BLV, targets_BL, weights_BL):
    ce_BL = optax.softmax_cross_entropy_with_integer_labels(logits_BLV.astype(jnp.float32), targets_BL)
    correct_BL = (jnp.argmax(logits_BLV, -1) == targets_BL).astype(jnp.float32)
    return ce_BL * weights_BL, correct_BL * weights_BL

  def loss(self, variables, batch, rng) -> tuple[jax.Array, dict[str, Any]]:
    inputs_BL, targets_BL, weights_BL = self._split(batch)
    logits_BLV = self.model.apply(variables, inputs_BL, deterministic=False, rngs={"dropout": rng})
    ce_BL, correct_BL = self._token_stats(logits_BLV, targets_BL, weights_BL)
    count = jnp.maximum(weights_BL.sum(), 1.0)
    loss = ce_BL.sum() / count
    return loss, {"metrics": {"accuracy": correct_BL.sum() / count}, "mutable": {}}

  def evaluate(self, variables, batch):
    inputs_BL, targets_BL, weights_BL = self._split(batch)
    logits_BLV = self.model.apply(variables, inputs_BL, deterministic=True)
    ce_BL, correct_BL = self._token_stats(logits_BLV, targets_BL, weights_BL)
    count = weights_BL.sum()
    return {"loss": (ce_BL.sum(), count), "accuracy": (correct_BL.sum(), count)}

  def units_per_example(self, batch) -> int:
    return int(batch["tokens"].shape[1] - 1)
