"""The task interface: the only thing the training loop knows about an objective.

A task is built from the config and offers three pure functions::

  init(rng, batch)              -> variables          # {'params': ..., other collections (batch_stats)}
  loss(variables, batch, rng)   -> (loss, aux)         # aux = {'metrics': {name: scalar}, 'mutable': {...}}
  evaluate(variables, batch)    -> {name: (sum, count)}

``loss`` is differentiated with respect to ``variables['params']`` only; ``aux['mutable']`` holds the
updated non-parameter collections (e.g. BatchNorm statistics), which the loop carries in the train state.
``evaluate`` returns *sums and counts* so the loop can average exactly over any number of batches and
devices. Parameters may carry logical-axis annotations (``nn.with_logical_partitioning``).

Two hooks have defaults here (a task inheriting ``Task`` overrides what it needs):
``adapt_init_params(loaded) -> loaded`` transforms the parameters a fresh run loads through
``config.init_from`` (default: unchanged; tasks/mlm.py: the embedding correction; see ``train._init_from``).
``grad_norm_groups = {name: (top-level param keys, ...)}`` makes the loop log the gradient norm of each group
as ``grad_norm/<name>`` (default: none; tasks/simsiam.py: predictor vs encoder).

A task may train several objectives in turn: ``phases = n`` (default 1) makes the loop call
``loss(variables, batch, rng, phase=i)`` for i = 0..n-1 inside each step, one update each, phase i's gradient at
the parameters phase i - 1 left (``train.make_train_step``); ``config.optimizer.alternate`` gives each phase an
optimizer of its own (``optim.alternate``; tasks/classify.py: Su's alternating semi-supervised R-Drop).

Each task reads ``config.task`` through a frozen dataclass of its own (``task_config``): its fields and
defaults are the task's options, and an unknown key is an error naming the known ones.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Mapping, Protocol, TypeVar

import jax
import ml_collections

Batch = dict[str, jax.Array]
Variables = dict[str, Any]
ConfigT = TypeVar("ConfigT")


def task_config(cls: type[ConfigT], task_cfg: ml_collections.ConfigDict | Mapping[str, Any]) -> ConfigT:
  """``config.task`` (minus ``name``) -> the task's config dataclass ``cls``; unknown keys are an error."""
  values = dict(task_cfg.to_dict() if isinstance(task_cfg, ml_collections.ConfigDict) else task_cfg)
  name = values.pop("name", None)
  known = [f.name for f in dataclasses.fields(cls)]
  unknown = sorted(set(values) - set(known))
  if unknown:
    raise ValueError(f"unknown config.task keys {unknown} for task {name!r}; its keys are {known}.")
  return cls(**values)


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

  # Optional hooks (module docstring), with their defaults.
  grad_norm_groups: Mapping[str, tuple[str, ...]] = types.MappingProxyType({})
  phases: int = 1

  def adapt_init_params(self, params: Any) -> Any:
    """Parameters loaded through ``config.init_from``, transformed before use (default: unchanged)."""
    return params
