"""Per-example outcomes of a trained classifier on its evaluation set, for standard errors at the file level.

``classification_outcomes(config, workdir)`` reads the run's checkpoint (``checkpoint.load_state``), runs the
task's ``predict(variables, batch) -> logits_BC`` (tasks/mlm.py ``DropTokenClassifyTask``) over exactly the
evaluation batches the training loop averages (``config.data.eval_split``, ``config.batch_size``,
``config.num_eval_batches``) and returns NumPy arrays with one entry per evaluation example:

  pred, label, correct (float64 0/1), and every other integer feature of the batches of shape [B] (the
  ``stdlib_packages`` view: ``file``, the source index of the window's file; feed ``correct`` and ``file`` to
  kexue_jax/evals/clustered.py).
"""
from __future__ import annotations

import jax
import ml_collections
import numpy as np

from kexue_jax import checkpoint
from kexue_jax import tasks
from kexue_jax.data import pipeline


def classification_outcomes(config: ml_collections.ConfigDict, workdir: str, *,
                            step: int | None = None) -> dict[str, np.ndarray]:
  """{pred, label, correct, <per-example int features>}: one entry per evaluation example (module docstring)."""
  task = tasks.get_task(config)
  if not hasattr(task, "predict"):
    raise ValueError(f"task {config.task.name!r} has no predict(variables, batch) -> logits; per-example "
                     "outcomes need one (tasks/mlm.py DropTokenClassifyTask has).")
  state, _ = checkpoint.load_state(workdir, step)
  variables = {"params": state["params"], **state.get("extra", {})}
  predict = jax.jit(task.predict)
  out: dict[str, list[np.ndarray]] = {}
  for batch in pipeline.make_eval_iter(config.data, split=config.data.eval_split,
                                       global_batch_size=config.batch_size, num_batches=config.num_eval_batches):
    pred_B = np.argmax(np.asarray(predict(variables, batch)), axis=-1)
    out.setdefault("pred", []).append(pred_B)
    for name, value in batch.items():
      value = np.asarray(value)
      if value.ndim == 1 and np.issubdtype(value.dtype, np.integer):
        out.setdefault(name, []).append(value)
  result = {k: np.concatenate(v) for k, v in out.items()}
  result["correct"] = (result["pred"] == result["label"]).astype(np.float64)
  return result

