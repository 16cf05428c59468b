"""What a run owns in its workdir besides checkpoints: a lock against a second run, and ``config.json``.

* **Lock.** ``WORKDIR/.lock`` is created with ``O_EXCL`` by process 0 and holds ``{pid, host, started}``. A
  second run on the same workdir refuses with one line naming the owner. A lock whose owner was on this host
  and is no longer alive is stale: it is taken over with a warning. A lock from another host cannot be
  checked from here; the message says how to remove it if that run is gone.
* **config.json** is written (atomically, process 0 only) only after the run's inputs were validated, so a
  rejected invocation never replaces the config of an existing run.
* **Config diff on resume.** A run resumed with a changed config is told which keys changed; changes that
  make the saved state or the data stream mean something else (model shapes, batch size, data, seed, task)
  are refused unless ``config.allow_config_change=True``.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

import jax
import ml_collections
from etils import epath

from kexue_jax import config_lib

LOCK_NAME = ".lock"
CONFIG_NAME = "config.json"

# Keys (or '/'-joined prefixes) whose change makes a resumed run something other than a continuation.
# Everything else (learning rate, logging, eval, checkpoint cadence, num_train_steps, the mesh...) may change.
NOT_RESUMABLE = ("model", "task", "batch_size", "seed", "data/name", "data/glob",
                 "data/preprocess", "data/seq_len", "data/train_split", "data/repeat_frac", "data/repeat_source",
                 "data/repeat_warmup", "data/data_dir", "optimizer/name")
# Never reported: they do not describe the run.
IGNORED = ("allow_config_change", "progress_bar", "distributed_init")


class WorkdirError(ValueError):
  """The workdir cannot be used (locked by another run, not a directory, not writable, config mismatch)."""


def _pid_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  return True


def check_writable(workdir: epath.Path) -> None:
  """The workdir exists (or can be made) as a writable directory; else one line saying what is wrong."""
  if workdir.exists() and not workdir.is_dir():
    raise WorkdirError(f"--workdir {workdir} is a file, not a directory: pass a directory path.")
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"cannot create --workdir {workdir}: {e.strerror or e}; choose a directory you can "
                       "write to.") from None
  probe = workdir / f".write_probe.{socket.gethostname()}.{os.getpid()}"
  try:
    probe.write_text("")
    probe.unlink()
  except OSError as e:
    raise WorkdirError(f"--workdir {workdir} is not writable ({e.strerror or e}): fix its permissions or "
                       "choose another directory.") from None


class WorkdirLock:
  """An exclusive lock on a workdir, held by process 0 for the whole run (see the module docstring)."""

  def __init__(self, workdir: str | os.PathLike):
    self.path = os.path.join(os.fspath(workdir), LOCK_NAME)
    self.held = False

  def _owner(self) -> dict[str, Any]:
    try:
      with open(self.path) as f:
        return json.load(f)
    except (OSError, ValueError):
      return {}

  def acquire(self) -> None:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):  # second try after removing a stale lock
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        owner = self._owner()
        pid, host = owner.get("pid"), owner.get("host")
        if host == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
          from absl import logging  # pylint: disable=g-import-not-at-top
          logging.warning("Removing the stale lock %s of process %s on %s (no longer running).",
                          self.path, pid, host)
          try:
            os.unlink(self.path)
          except FileNotFoundError:
            pass
          continue
        if not owner:  # being written right now by another starting run, or empty
          raise WorkdirError(f"the workdir is locked by another run ({self.path} exists but is unreadable); "
                             "if no run uses it, delete that file.")
        raise WorkdirError(
            f"the workdir is in use by another run (pid {pid} on {host}, started {owner.get('started')}); "
            f"wait for it, use another --workdir, or delete {self.path} if that run is gone.")
      with os.fdopen(fd, "w") as f:
        json.dump(me, f)
      self.held = True
      return
    raise WorkdirError(f"could not take the lock {self.path}; retry.")

  def release(self) -> None:
    if self.held:
      self.held = False
      if self._owner().get("pid") == os.getpid():
        try:
          os.unlink(self.path)
        except FileNotFoundError:
          pass


def acquire_lock(workdir: epath.Path) -> WorkdirLock:
  """Process 0 takes the lock; every process learns the outcome (so none waits in a collective forever)."""
  lock = WorkdirLock(workdir)
  error = ""
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except WorkdirError as e:
      error = str(e)
  if jax.process_count() > 1:
    from kexue_jax import distributed  # pylint: disable=g-import-not-at-top
    error = distributed.broadcast_str(error)
  if error:
    raise WorkdirError(error)
  return lock


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f"{prefix}/{k}" if prefix else str(k)))
    return out
  return {prefix: tree}


def _under(key: str, prefixes) -> bool:
  return any(key == p or key.startswith(p + "/") for p in prefixes)


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
  """``[(key, old value, new value)]`` of '/'-joined keys that differ (``"<absent>"`` for a missing one)."""
  a, b = _flat(old), _flat(new)
  changes = []
  for key in sorted(set(a) | set(b)):
    if _under(key, IGNORED):
      continue
    va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
    if va != vb:
      changes.append((key, va, vb))
  return changes


def read_config(workdir: epath.Path) -> dict[str, Any] | None:
  path = workdir / CONFIG_NAME
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def _jsonable(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(json.dumps(config_lib.to_dict(config), sort_keys=True, default=str))


def check_resume(config: ml_collections.ConfigDict, workdir: epath.Path) -> list[tuple[str, Any, Any]]:
  """Compares ``config`` with the workdir's ``config.json`` (if any). Returns the changes it accepts.

  Raises ``WorkdirError`` (one line listing them) for changes to ``NOT_RESUMABLE`` keys unless
  ``config.allow_config_change`` is set.
  """
  old = read_config(workdir)
  if old is None:
    return []
  changes = config_changes(old, _jsonable(config))
  hard = [c for c in changes if _under(c[0], NOT_RESUMABLE)]
  if hard and not config.get("allow_config_change", False):
    listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in hard)
    raise WorkdirError(
        f"{workdir} holds a run with another config, and these changes cannot be resumed: {listed}. Use a new "
        "--workdir, restore the old values, or pass --config.allow_config_change=True to resume anyway.")
  return changes


def write_config(config: ml_collections.ConfigDict, workdir: epath.Path) -> None:
  """Atomic write of ``config.json`` by process 0 (call it only once the run's inputs passed validation)."""
  if jax.process_index() != 0:
    return
  tmp = workdir / f"{CONFIG_NAME}.tmp"
  tmp.write_text(json.dumps(config_lib.to_dict(config), indent=2, sort_keys=True, default=str))
  tmp.replace(workdir / CONFIG_NAME)
