"""The task interface: the only thing the training loop knows about an objective.

A task is built from the config and offers three pure functions::

  init(rng, batch)              -> variables          # {'params': ..., other collections (batch_stats)}
  loss(variables, batch, rng)   -> (loss, aux)         # aux = {'metrics': {name: scalar}, 'mutable': {...}}
  evaluate(variables, batch)    -> {name: (sum, count)}

``loss`` is differentiated with respect to ``variables['params']`` only; ``aux['mutable']`` holds the
updated non-parameter collections (e.g. BatchNorm statistics), which the loop carries in the train state.
``evaluate`` returns *sums and counts* so the loop can average exactly over any number of batches and
devices. Parameters may carry logical-axis annotations (``nn.with_logical_partitioning``).
Optional: ``adapt_init_params(loaded) -> loaded`` transforms the parameters a fresh run loads through
``config.init_from`` (e.g. tasks/mlm.py's embedding correction; see ``train._init_from``).
Optional: ``grad_norm_groups = {name: (top-level param keys, ...)}`` makes the loop log the gradient norm of
each group as ``grad_norm/<name>`` (tasks/simsiam.py: predictor vs encoder).
"""
from __future__ import annotations

from typing import Any, Protocol

import jax

Batch = dict[str, jax.Array]
Variables = dict[str, Any]


class Task(Protocol):
  """Pure functions of one objective (see module docstring)."""

  unit: str  # what units_per_example counts ("tokens", "examples"): metrics report `<unit>_per_sec`

  def init(self, rng: jax.Array, batch: Batch) -> Variables:
    ...

  def loss(self, variables: Variables, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict[str, Any]]:
    ...

  def evaluate(self, variables: Variables, batch: Batch) -> dict[str, tuple[jax.Array, jax.Array]]:
    ...

  def units_per_example(self, batch: Batch) -> int:
    """Tokens (LM) or 1 (classification): for throughput reporting."""
    ...
