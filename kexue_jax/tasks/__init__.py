"""Task registry: ``config.task.name`` -> a task object (see ``tasks/base.py`` for the interface)."""
from __future__ import annotations

from typing import Callable

import ml_collections

from kexue_jax.tasks import base
from kexue_jax.tasks import classify
from kexue_jax.tasks import lm
from kexue_jax.tasks import simsiam
from kexue_jax.tasks import mlm

TASKS: dict[str, Callable[[ml_collections.ConfigDict], base.Task]] = {
    "lm": lm.LMTask,
    "classify": classify.ClassifyTask,
    "simsiam": simsiam.SimSiamTask,
    "mlm": mlm.MLMTask,
    "droptoken_classify": mlm.DropTokenClassifyTask,
}


def get_task(config: ml_collections.ConfigDict) -> base.Task:
  name = config.task.name
  if name not in TASKS:
    raise ValueError(f"unknown task.name {name!r}; available tasks: {sorted(TASKS)}.")
  return TASKS[name](config)
