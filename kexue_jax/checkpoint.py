"""The only place that talks to orbax: train state + data-iterator state, async saves, preemption, resume.

Layout: ``WORKDIR/checkpoints/<step>/{state, data_iter, _CHECKPOINT_METADATA, ...}``. Orbax writes each step
into a temporary directory and renames it only when complete, so a save interrupted half-way is never
listed as a step (``latest_step`` ignores it) and stale temporaries are cleaned up on the next start.

Preemption (SIGTERM from a TPU maintenance event or ``kill``, SIGINT from Ctrl-C, a Colab disconnect):
``PreemptionWatcher`` turns the signal into a flag; the loop saves a checkpoint at the current step,
waits for it to be written and exits cleanly. In multi-process runs the decision must be taken by all
processes at the same step, so there it is delegated to orbax's ``reached_preemption`` (the JAX
coordination service's preemption sync point).
"""
from __future__ import annotations

import contextlib
import logging as pylogging
import signal
import threading
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be read back."""


class Checkpointer:
  """A thin wrapper over ``ocp.CheckpointManager`` that saves {state, data_iter} together."""

  def __init__(self, workdir: str | epath.Path, *, max_to_keep: int = 3, async_save: bool = True,
               best_metric: str | None = None, best_mode: str = "min", read_only: bool = False):
    """``best_metric`` (e.g. ``"eval/loss"``): keep the ``max_to_keep`` checkpoints best by that metric
    (``best_mode`` "min" or "max"; orbax ``BestN``) plus always the latest one (to resume from), instead of the
    ``max_to_keep`` latest. Only saves given ``metrics`` (``save(..., metrics=...)``) compete for best.
    ``read_only``: only restore (eval-only mode): never create, clean up or delete anything, so a run still
    training in the same workdir is left alone."""
    self.directory = epath.Path(workdir) / "checkpoints"
    self.best_metric = best_metric
    policy = None
    if best_metric:
      if best_mode not in ("min", "max"):
        raise ValueError(f"config.best_checkpoint_mode must be 'min' or 'max', got {best_mode!r}.")
      policy = ocp.checkpoint_managers.AnyPreservationPolicy([
          ocp.checkpoint_managers.LatestN(n=1),
          ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min",
                                        n=max_to_keep, keep_checkpoints_without_metrics=False)])
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if policy else max_to_keep,
            preservation_policy=policy,
            enable_async_checkpointing=async_save,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            read_only=read_only,
        ),
        item_names=("state", "data_iter"),
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, data_iter: Any, *, force: bool = False,
           metrics: dict[str, float] | None = None) -> bool:
    """Saves ``{state, data_iter}`` at ``step``; ``metrics`` (the step's evaluation) rank it for ``best_metric``."""
    if self.best_metric and metrics is not None and self.best_metric not in metrics:
      raise ValueError(f"config.best_checkpoint_metric={self.best_metric!r} is not among the evaluation's "
                       f"metrics {sorted(metrics)}; set it to one of them.")
    args = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
      args["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
    return self.manager.save(step, args=ocp.args.Composite(**args), force=force,
                             metrics=metrics if self.best_metric else None)

  def restore(self, abstract_state: Any, data_iter: Any, step: int | None = None) -> tuple[Any, int] | None:
    """Restores the latest (or given) step into ``abstract_state``'s shardings; ``None`` if there is none.

    ``abstract_state`` is a tree of ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)``: orbax reads each
    array straight into that sharding, so a run saved on 8 devices resumes on 1 and vice versa.
    ``data_iter`` (a grain iterator) is restored in place.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iter is not None:
      args["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # orbax raises many types (ValueError, FileNotFoundError, tensorstore errors...).
      raise CheckpointError(
          f"The checkpoint at {self.directory / str(step)} cannot be restored: {type(e).__name__}: {e}\n"
          f"If it is corrupt, delete that step directory to resume from the previous checkpoint "
          f"(steps present: {list(self.manager.all_steps())}), or use a new --workdir to start afresh. "
          f"If the model/optimizer config changed since it was written, the saved state no longer fits.") from e
    return restored["state"], step

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


class PreemptionWatcher:
  """Turns SIGTERM / SIGINT into a flag the training loop polls once per step.

  A second SIGINT while the final checkpoint is being written restores the default handler, so Ctrl-C
  twice still kills a stuck run.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, manager: ocp.CheckpointManager | None = None):
    self._event = threading.Event()
    self._manager = manager
    self._previous = {}
    self.signal_name: str | None = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)
    self._previous.clear()

  def _handle(self, signum, frame):
    del frame
    self.signal_name = signal.Signals(signum).name
    logging.warning("Received %s: will save a checkpoint at the current step and exit.", self.signal_name)
    self._event.set()
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1 and self._manager is not None:
      return bool(self._manager.reached_preemption(step))
    return self._event.is_set()


class _DropMessage(pylogging.Filter):
  def __init__(self, text: str):
    super().__init__()
    self.text = text

  def filter(self, record):
    return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_item_metadata_warning():
  """Reading one item of a CheckpointManager step with a StandardCheckpointer makes orbax warn that the item
  folder has no step-level `_CHECKPOINT_METADATA` (it lives one level up); the read itself is complete."""
  f = _DropMessage("Metadata file does not exist")
  logger = pylogging.getLogger("absl")
  logger.addFilter(f)
  try:
    yield
  finally:
    logger.removeFilter(f)


def load_state(workdir: str | epath.Path, step: int | None = None) -> tuple[dict[str, Any], int]:
  """Reads a run's saved train state as host numpy arrays, without knowing its structure in advance.

  For study drivers and notebooks that evaluate a finished run (e.g. the same parameters under another
  position method): ``state['params']`` feeds ``model.apply({'params': ...}, ...)`` directly.
  """
  directory = epath.Path(workdir) / "checkpoints"
  if not directory.exists():
    raise FileNotFoundError(f"no checkpoints in {directory}: train the run first (python -m kexue_jax.main "
                            f"--config ... --workdir {workdir}).")
  if step is None:
    steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    if not steps:
      raise FileNotFoundError(f"{directory} holds no finished checkpoint.")
    step = steps[-1]
  path = directory / str(step) / "state"
  try:
    with _quiet_item_metadata_warning(), ocp.StandardCheckpointer() as checkpointer:
      metadata = checkpointer.metadata(path).item_metadata
      target = jax.tree.map(lambda m: np.zeros(m.shape, m.dtype), metadata,
                            is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
      state = checkpointer.restore(path, target)
  except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types
    raise CheckpointError(f"The checkpoint at {path} cannot be read: {type(e).__name__}: {e}") from e
  return jax.tree.map(np.asarray, state), step


def _under(key: str, prefix: str) -> bool:
  return not prefix or key == prefix or key.startswith(prefix + "/")


def load_params_mapped(target_params: Any, workdir: str | epath.Path, *, step: int | None = None,
                       mapping=(("", ""),)) -> dict[str, Any]:
  """Parameters of another run's checkpoint, renamed into the structure of ``target_params``.

  ``mapping`` is a sequence of ``(src_prefix, dst_prefix)`` pairs of '/'-joined parameter paths ("" = the
  whole tree): every leaf of ``target_params`` under ``dst_prefix`` is read from the same relative path under
  ``src_prefix`` in the source run (extra source leaves are ignored; a missing one or a shape mismatch is an
  error). Returns a nested dict holding only the mapped leaves, as host NumPy arrays in the target dtype.
  ``target_params`` may be abstract (``jax.ShapeDtypeStruct`` leaves). This is what ``config.init_from``
  does at the start of a run (fine-tuning from a pre-training run).
  """
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  state, step = load_state(workdir, step)
  flat_src = traverse_util.flatten_dict(state["params"], sep="/")
  flat_dst = traverse_util.flatten_dict(target_params, sep="/")
  loaded = {}
  for src_prefix, dst_prefix in mapping:
    keys = [k for k in flat_dst if _under(k, dst_prefix)]
    if not keys:
      raise ValueError(f"init_from mapping {(src_prefix, dst_prefix)}: no parameter under {dst_prefix!r} in "
                       f"this model (top-level: {sorted({k.split('/')[0] for k in flat_dst})}).")
    for k in keys:
      rel = k[len(dst_prefix):].lstrip("/")
      sk = "/".join(p for p in (src_prefix, rel) if p)
      if sk not in flat_src:
        raise ValueError(f"init_from: {workdir} (step {step}) has no parameter {sk!r} for {k!r} (mapping "
                         f"{(src_prefix, dst_prefix)}); its top-level keys are "
                         f"{sorted({s.split('/')[0] for s in flat_src})}.")
      if tuple(flat_src[sk].shape) != tuple(flat_dst[k].shape):
        raise ValueError(f"init_from: {sk!r} has shape {flat_src[sk].shape} in {workdir} but {k!r} needs "
                         f"{tuple(flat_dst[k].shape)}: the model configs differ.")
      loaded[k] = np.asarray(flat_src[sk], dtype=flat_dst[k].dtype)
  return traverse_util.unflatten_dict(loaded, sep="/")
