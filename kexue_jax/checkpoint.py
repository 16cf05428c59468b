"""The only place that talks to orbax: train state + data-iterator state, async saves, preemption, resume.

Layout: ``WORKDIR/checkpoints/<step>/{state, data_iter, _CHECKPOINT_METADATA, ...}``. Orbax writes each step
into a temporary directory and renames it only when complete, so a save interrupted half-way is never
listed as a step (``latest_step`` ignores it) and stale temporaries are cleaned up on the next start.

Preemption (SIGTERM from a TPU maintenance event or ``kill``, SIGINT from Ctrl-C, a Colab disconnect):
``PreemptionWatcher`` turns the signal into a flag; the loop saves a checkpoint at the current step,
waits for it to be written and exits cleanly. In multi-process runs the decision must be taken by all
processes at the same step: the flags are OR-ed across processes (``distributed.any_process``, a tiny
collective) every ``config.preemption_check_every_steps`` steps, so all stop at the first such step after any
of them got a signal; orbax's ``reached_preemption`` (the JAX coordination service's preemption sync point, a
local query its API wants at every step) is consulted too.

Integrity: every save records a content digest of each array and is refused if the state is not finite;
every restore verifies the digests and falls back to the newest good step (``Checkpointer``).
"""
from __future__ import annotations

import contextlib
import logging as pylogging
import signal
import sys
import threading
import time
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from kexue_jax import distributed


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be read back (or cannot be written)."""


class NonFiniteError(FloatingPointError):
  """The loss, the gradients or the state to be saved became NaN/Inf."""


# ---------------------------------------------------------------------------------------------- digests
def _key_name(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def leaf_paths(tree: Any) -> dict[str, Any]:
  """``{'a/b/0/c': leaf}``: the same names for a NamedTuple node and orbax's dict metadata of it."""
  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_name(k) for k in path): leaf for path, leaf in flat}


def _words(x: jax.Array) -> jax.Array:
  """The array's bytes as uint32 words (smaller dtypes zero-extended; 8-byte dtypes split in two)."""
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype == jnp.bool_:
    x = x.astype(jnp.uint8)
  size = jnp.dtype(x.dtype).itemsize
  unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32, 8: jnp.uint32}[size]
  w = jax.lax.bitcast_convert_type(x, unsigned)
  return w.astype(jnp.uint32).reshape(-1)


@jax.jit
def _digests_and_health(state):
  """Per-leaf content digest, plus whether every float is finite and the largest |parameter|.

  digest(w) = (sum_i w_i, sum_i w_i * (2654435761 * i + 1)) mod 2**32 over the array's uint32 words w_i.
  Integer sums are exact in any order, so the digest does not depend on the mesh or the process count;
  a flipped bit changes the first sum by +-2**b, never 0 mod 2**32, and a moved word changes the second.
  """
  def one(x):
    w = _words(x)
    i = jnp.arange(w.shape[0], dtype=jnp.uint32)
    return jnp.stack([jnp.sum(w, dtype=jnp.uint32),
                      jnp.sum(w * (i * jnp.uint32(2654435761) + jnp.uint32(1)), dtype=jnp.uint32)])

  digests = jax.tree.map(one, state)
  floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.inexact)]
  finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in floats])) if floats else jnp.asarray(True)
  params = [x for x in jax.tree.leaves(state.get("params", {})) if jnp.issubdtype(x.dtype, jnp.inexact)]
  max_abs = (jnp.max(jnp.stack([jnp.max(jnp.abs(x.astype(jnp.float32))) for x in params]))
             if params else jnp.asarray(0.0))
  return digests, finite, max_abs


def state_report(state: Any) -> tuple[dict[str, str], bool, float]:
  """``({leaf path: hex digest}, all floats finite, max |param|)`` of a (sharded, possibly multi-process)
  train state. A collective: every process must call it."""
  digests, finite, max_abs = jax.device_get(_digests_and_health(state))
  hexes = {k: "%08x%08x" % tuple(int(v) for v in np.asarray(d)) for k, d in leaf_paths(digests).items()}
  return hexes, bool(finite), float(max_abs)


# ---------------------------------------------------------------------------------------------- checkpointer
_META = "meta"  # JSON: {digests, finite, max_abs_param, data_state, process_count, run_status}
_DATA = "data_iter"  # grain's own per-process iterator state (kept for iterators with worker state)


def _simple_data_state(state: Any) -> bool:
  """Grain's in-process iterator state is ``{'next_index': k}``: the index of the next global batch, the
  same on every process, so it re-shards onto any process count (pipeline.make_train_iter)."""
  return isinstance(state, dict) and set(state) == {"next_index"}


class Checkpointer:
  """``ocp.CheckpointManager`` saving {state, data_iter, meta} together, verifying what it restores.

  * Every save records a content digest of every array (``state_report``) and refuses a state that is not
    finite (``NonFiniteError``): a checkpoint never holds NaN/Inf, and "the last checkpoint" can be
    described by what was checked.
  * Restore tries the newest step first; a step whose files cannot be read or whose digests do not match is
    moved to ``checkpoints.bad/`` with a one-line warning naming it, and the next older one is tried. A
    saved state that does not *fit* the config (shapes/structure) is an error, never skipped.
  * A save fails within ``write_timeout_s`` with one line when the directory cannot be written.
  """

  def __init__(self, workdir: str | epath.Path, *, max_to_keep: int | None = 3, async_save: bool = True,
               write_timeout_s: float = 600.0, best_metric: str | None = None, best_mode: str = "min",
               read_only: bool = False):
    """``max_to_keep`` 0 or None keeps every checkpoint. ``best_metric`` (e.g. ``"eval/loss"``): keep the
    ``max_to_keep`` checkpoints best by that metric (``best_mode`` "min" or "max"; orbax ``BestN``) plus always
    the latest one (to resume from), instead of the ``max_to_keep`` latest. Only saves given ``metrics``
    (``save(..., metrics=...)``) compete for best. ``read_only``: only restore (eval-only mode): never create,
    clean up, move or delete anything, so a run still training in the same workdir is left alone."""
    self.directory = epath.Path(workdir) / "checkpoints"
    self.bad_directory = epath.Path(workdir) / "checkpoints.bad"
    self.write_timeout_s = write_timeout_s
    self.best_metric = best_metric
    self.read_only = read_only
    self.checked: dict[int, dict[str, Any]] = {}  # step -> what was verified about it (finite, max |param|)
    _install_quiet_orbax_errors()
    policy = None
    if best_metric:
      if best_mode not in ("min", "max"):
        raise ValueError(f"config.best_checkpoint_mode must be 'min' or 'max', got {best_mode!r}.")
      policy = ocp.checkpoint_managers.AnyPreservationPolicy([
          ocp.checkpoint_managers.LatestN(n=1),
          ocp.checkpoint_managers.BestN(get_metric_fn=lambda m: m[best_metric], reverse=best_mode == "min",
                                        n=max_to_keep or None, keep_checkpoints_without_metrics=False)])
    self.manager = self._make_manager(max_to_keep or None, async_save, policy, read_only)

  def _make_manager(self, max_to_keep, async_save, policy, read_only):
    return ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=None if policy else max_to_keep,
            preservation_policy=policy,
            enable_async_checkpointing=async_save,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            read_only=read_only,
        ),
        # Explicit handlers (not just item names) so that `item_metadata` reads a step's array shapes
        # through this manager, without a second checkpointer whose event loop is closed under it.
        item_handlers={"state": ocp.StandardCheckpointHandler(), _DATA: grain.checkpoint.CheckpointHandler(),
                       _META: ocp.JsonCheckpointHandler()},
    )

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def describe(self, step: int | None) -> str:
    """What is known about checkpoint ``step``, in words (for error messages)."""
    if step is None:
      return "no checkpoint was written yet"
    info = self.checked.get(step)
    if info is None:
      return f"the last checkpoint is step {step} in {self.directory} (not re-checked)"
    return (f"the last checkpoint, step {step} in {self.directory}, was {info['how']}: all values finite, "
            f"max |parameter| = {info['max_abs_param']:.3g}")

  def run_status(self, step: int | None) -> dict[str, Any]:
    """The ``status`` saved with checkpoint ``step`` (``{}`` if none, or the step was not saved/restored here)."""
    return dict((self.checked.get(step) or {}).get("status") or {})

  # --------------------------------------------------------------------------------------------- save
  def _probe_writable(self) -> None:
    probe = self.directory / f".probe.{jax.process_index()}"
    try:
      probe.write_text("")
      probe.unlink()
    except OSError as e:
      raise CheckpointError(
          f"cannot write checkpoints to {self.directory} ({e.strerror or e}); {self.describe(self.latest_step())}."
          f" Fix the directory (permissions, free space) and rerun to resume.") from None

  def wait(self) -> None:
    """Waits for the async save in flight, at most ``write_timeout_s``."""
    done = threading.Event()
    error: list[BaseException] = []

    def target():
      try:
        self.manager.wait_until_finished()
      except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
        error.append(e)
      done.set()

    threading.Thread(target=target, daemon=True, name="kexue-ckpt-wait").start()
    if not done.wait(self.write_timeout_s):
      raise CheckpointError(
          f"writing a checkpoint to {self.directory} did not finish within {self.write_timeout_s:.0f} s "
          f"(directory unwritable or storage stalled); older checkpoints are untouched. Rerun to resume.")
    if error:
      raise CheckpointError(f"writing a checkpoint to {self.directory} failed: {type(error[0]).__name__}: "
                            f"{error[0]}; older checkpoints are untouched. Rerun to resume.") from error[0]

  def save(self, step: int, state: Any, data_iter: Any, *, force: bool = False,
           metrics: dict[str, float] | None = None, status: dict[str, Any] | None = None) -> bool:
    """Saves ``state`` (and the iterator position) as ``step`` after checking it is finite; ``metrics`` (the
    step's evaluation) rank it for ``best_metric``; ``status`` (JSON) is what the run knew about itself at
    that step (e.g. that it diverged), read back by ``run_status`` after a restore."""
    if self.best_metric and metrics is not None and self.best_metric not in metrics:
      raise ValueError(f"config.best_checkpoint_metric={self.best_metric!r} is not among the evaluation's "
                       f"metrics {sorted(metrics)}; set it to one of them.")
    digests, finite, max_abs = state_report(state)
    if not finite:
      raise NonFiniteError(
          f"The train state at step {step} holds NaN/Inf values, so it was not saved; "
          f"{self.describe(self.latest_step())}. Lower optimizer.learning_rate or set "
          f"optimizer.clip_grad_norm, then resume (or start afresh in a new --workdir).")
    self.wait()
    self._probe_writable()
    data_state = data_iter.get_state() if data_iter is not None else None
    meta = {"digests": digests, "finite": True, "max_abs_param": max_abs, "process_count": jax.process_count(),
            "data_state": data_state if _simple_data_state(data_state) else None, "run_status": status}
    args = {"state": ocp.args.StandardSave(state), _META: ocp.args.JsonSave(meta)}
    if data_iter is not None:
      args[_DATA] = grain.checkpoint.CheckpointSave(data_iter)
    saved = self.manager.save(step, args=ocp.args.Composite(**args), force=force,
                              metrics=metrics if self.best_metric else None)
    if saved:
      self.checked[step] = {"how": "checked when written", "max_abs_param": max_abs, "status": status}
    return saved

  # --------------------------------------------------------------------------------------------- restore
  def _step_dirs(self) -> list[int]:
    steps = set(self.manager.all_steps())
    if self.directory.exists():
      steps |= {int(p.name) for p in self.directory.iterdir() if p.name.isdigit() and p.is_dir()}
    return sorted(steps, reverse=True)

  def _saved_tree(self, step: int) -> dict[str, Any]:
    metadata = self.manager.item_metadata(step)
    metadata = metadata.get("state") if metadata is not None else None
    tree = leaf_paths(getattr(metadata, "tree", metadata)) if metadata is not None else {}
    if not tree:
      raise CheckpointError("its array metadata cannot be read")
    return tree

  def _fit(self, step: int, abstract_state: Any, adapters) -> tuple[Any, Any]:
    """``(abstract tree to read, convert)`` for checkpoint ``step``; ``CheckpointError`` if the config's state
    does not fit it (shapes or structure), naming the first difference."""
    saved = self._saved_tree(step)

    def differences(target):
      want = leaf_paths(target)
      diffs = [(k, saved.get(k), want.get(k)) for k in sorted(set(saved) | set(want))
               if k not in saved or k not in want or tuple(saved[k].shape) != tuple(want[k].shape)
               or np.dtype(saved[k].dtype) != np.dtype(want[k].dtype)]
      return sorted(diffs, key=lambda d: d[1] is None or d[2] is None)  # shape/dtype changes first

    for target, convert in ((abstract_state, None), *adapters):
      if not differences(target):
        return target, convert
    diffs = differences(abstract_state)
    k, a, b = diffs[0]
    shape = lambda m: "absent" if m is None else f"{np.dtype(m.dtype).name}{list(m.shape)}"  # noqa: E731
    raise _Misfit(f"the checkpoint at {self.directory / str(step)} does not fit this config: {k} is "
                  f"{shape(a)} in the checkpoint but {shape(b)} here ({len(diffs)} differences). The model or "
                  f"optimizer config changed since it was written: restore the old values or use a new --workdir.")

  def _restore_step(self, step, abstract_state, data_iter, adapters):
    target, convert = self._fit(step, abstract_state, adapters)
    step_dir = self.directory / str(step)
    has_meta = (step_dir / _META).exists()
    args = {"state": ocp.args.StandardRestore(target)}
    if has_meta:
      args[_META] = ocp.args.JsonRestore()
    restored = self.manager.restore(step, args=ocp.args.Composite(**args))
    state, meta = restored["state"], restored[_META] if has_meta else None
    digests, finite, max_abs = state_report(state)
    if meta is not None:
      bad = sorted(k for k, d in meta["digests"].items() if digests.get(k) != d)
      if bad or set(digests) != set(meta["digests"]):
        raise CheckpointError(f"content digest mismatch in {len(bad)} array(s), e.g. {bad[:1]}")
    if not finite:
      raise CheckpointError("it holds NaN/Inf values")
    if data_iter is not None:
      self._restore_data(step, data_iter, meta)
    self.checked[step] = {"how": "verified on restore" if meta is not None else
                          "read back (no digests: written by an older version)", "max_abs_param": max_abs,
                          "status": (meta or {}).get("run_status")}
    return (convert(state) if convert else state), step

  def _restore_data(self, step, data_iter, meta):
    if meta is not None and meta.get("data_state") is not None:
      data_iter.set_state(meta["data_state"])
      return
    saved_pc = meta.get("process_count") if meta else None
    if saved_pc is not None and saved_pc != jax.process_count():
      raise _Misfit(f"the checkpoint at {self.directory / str(step)} was written by {saved_pc} processes with a "
                    f"data iterator whose state is per process (data.num_workers > 0); it can only be resumed by "
                    f"{saved_pc} processes (this run has {jax.process_count()}).")
    restored = self.manager.restore(step, args=ocp.args.Composite(
        **{_DATA: grain.checkpoint.CheckpointRestore(data_iter)}))
    del restored

  def _set_aside(self, step: int) -> None:
    """Moves a bad step out of orbax's directory (kept for inspection); process 0 moves, all wait."""
    if jax.process_index() == 0:
      src = self.directory / str(step)
      if src.exists():
        self.bad_directory.mkdir(parents=True, exist_ok=True)
        dst = self.bad_directory / f"{step}.{time.strftime('%Y%m%d-%H%M%S')}"
        src.rename(dst)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"kexue_set_aside_{step}")
    self.manager.reload()

  def restore(self, abstract_state: Any, data_iter: Any, *, adapters=(),
              step: int | None = None) -> tuple[Any, int] | None:
    """Restores the newest good step into ``abstract_state``'s shardings; ``None`` if there is none.

    ``abstract_state`` is a tree of ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)``: orbax reads each
    array straight into that sharding, so a run saved on 8 devices resumes on 1 and vice versa, and on any
    number of processes. ``data_iter`` (a grain iterator) is positioned in place. ``adapters`` are
    ``(abstract tree, convert)`` pairs tried when the checkpoint does not fit ``abstract_state`` (e.g. an
    optimizer state without / with the non-finite guard's wrapper), ``convert`` mapping what was read to
    ``abstract_state``'s structure. ``step``: restore exactly that step (an error if it is absent or damaged).
    A read-only checkpointer never moves a damaged step; it skips it.
    """
    if step is not None and step not in self._step_dirs():
      raise CheckpointError(f"there is no checkpoint step {step} in {self.directory} (steps present: "
                            f"{sorted(self._step_dirs())}).")
    skipped = []
    for candidate in ([step] if step is not None else self._step_dirs()):
      try:
        result = self._restore_step(candidate, abstract_state, data_iter, adapters)
      except _Misfit as e:
        raise CheckpointError(str(e)) from None
      except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types; all mean "unreadable"
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if step is not None:
          raise CheckpointError(f"checkpoint step {step} in {self.directory} cannot be read: {reason}") from None
        skipped.append(f"{candidate} ({reason})")
        if not self.read_only:
          self._set_aside(candidate)
        continue
      if skipped:
        where = "left in place (read-only)" if self.read_only else f"set aside in {self.bad_directory}"
        logging.warning("Checkpoint step %s in %s is damaged: %s; using step %d.",
                        ", ".join(skipped), self.directory, where, candidate)
      return result
    if skipped:
      raise CheckpointError(
          f"every checkpoint in {self.directory} is damaged (step {'; '.join(skipped)}"
          f"{'' if self.read_only else '; now in ' + str(self.bad_directory)}); "
          f"nothing to resume from. Start afresh in a new --workdir (or move them back to inspect them).")
    return None

  def close(self) -> None:
    self.wait()
    self.manager.close()


class _Misfit(Exception):
  """The checkpoint is readable but does not fit this config (never a reason to skip it)."""


class PreemptionWatcher:
  """Turns SIGTERM / SIGINT into a flag the training loop polls once per step.

  ``check_every_steps`` (k): with several processes they agree on stopping only at steps that are multiples
  of k (one tiny all-gather there, none in between), so a signal is acted on within k steps; one process
  stops at the step it got the signal. A second SIGINT while the final checkpoint is being written restores
  the default handler, so Ctrl-C twice still kills a stuck run.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self, manager: ocp.CheckpointManager | None = None, check_every_steps: int = 1):
    if check_every_steps < 1:
      raise ValueError(f"config.preemption_check_every_steps must be >= 1, got {check_every_steps}.")
    self._event = threading.Event()
    self._manager = manager
    self._every = int(check_every_steps)
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
    """Whether to save and stop after ``step``. With several processes every process must call it at every
    step (all see the same step numbers): at multiples of ``check_every_steps`` it is a collective, and they
    stop together if any one of them got a signal (a signal often reaches only some hosts, or reaches them
    steps apart); at any step they stop together when JAX's preemption sync point says so."""
    local = self._event.is_set()
    if jax.process_count() == 1:
      return local
    # Both queries are made unconditionally, so every process takes part in the same collectives.
    agreed = distributed.any_process(local) if step % self._every == 0 else False
    synced = self._manager is not None and bool(self._manager.reached_preemption(step))
    return agreed or synced


class _DropMessage(pylogging.Filter):
  def __init__(self, text: str):
    super().__init__()
    self.text = text

  def filter(self, record):
    return self.text not in record.getMessage()


class _NoOrbaxTracebacks(pylogging.Filter):
  """Orbax logs each failed background save with full tracebacks (from several threads); the error itself
  reaches the loop as one ``CheckpointError`` line. Its records keep their one-line message here."""

  def filter(self, record):
    if "/orbax/" in record.pathname.replace("\\", "/"):
      record.exc_info, record.exc_text = None, None
    return True


def _install_quiet_orbax_errors() -> None:
  logger = pylogging.getLogger("absl")
  if not any(isinstance(f, _NoOrbaxTracebacks) for f in logger.filters):
    logger.addFilter(_NoOrbaxTracebacks())
  if not getattr(sys.unraisablehook, "_kexue_quiet", False):
    previous = sys.unraisablehook

    def unraisable(info):
      # A read that failed (a damaged checkpoint, reported as one line) leaves tensorstore callbacks that
      # later reach orbax's closed asyncio loop; each printed a traceback of nothing the user can act on.
      if isinstance(info.exc_value, RuntimeError) and str(info.exc_value) == "Event loop is closed":
        return
      previous(info)

    unraisable._kexue_quiet = True  # pylint: disable=protected-access
    sys.unraisablehook = unraisable


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


def saved_steps(workdir) -> list[int]:
  """The steps of the checkpoints a ``train.run`` directory keeps (its ``checkpoints/<step>`` folders), ascending;
  [] without any."""
  directory = epath.Path(workdir) / "checkpoints"
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


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
    steps = saved_steps(workdir)
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


def nonfinite_guard_adapters(abstract_state: dict[str, Any], replicated) -> tuple[tuple[Any, Any], ...]:
  """Restore adapters for ``optimizer.skip_nonfinite`` switched on or off between runs (see
  ``Checkpointer.restore``): the guard wraps the optimizer state as ``SkipNonFiniteState(inner, count)``.
  Switched on: the saved state is the inner one, the skip count starts at 0. Switched off: the wrapper is
  dropped."""
  from kexue_jax.optim import guard  # pylint: disable=g-import-not-at-top
  opt = abstract_state["opt_state"]
  if isinstance(opt, guard.SkipNonFiniteState):
    def wrap(s):
      zero = jax.device_put(np.zeros((), np.int32), opt.num_skipped.sharding)
      return {**s, "opt_state": guard.SkipNonFiniteState(s["opt_state"], zero)}
    return (({**abstract_state, "opt_state": opt.inner_state}, wrap),)
  count = jax.ShapeDtypeStruct((), np.int32, sharding=replicated)
  wrapped = {**abstract_state, "opt_state": guard.SkipNonFiniteState(opt, count)}
  return ((wrapped, lambda s: {**s, "opt_state": s["opt_state"].inner_state}),)
