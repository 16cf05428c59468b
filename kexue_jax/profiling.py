"""``config.profile``: a ``jax.profiler`` trace of a window of training steps, written into the workdir.

The trace starts just before step ``start_step`` is dispatched and stops after step
``start_step + num_steps - 1`` has finished on the device (one ``block_until_ready`` on the state, at that
step only), like ``clu.periodic_actions.Profile`` (https://github.com/google/CommonLoopUtils). Steps are
annotated by the loop with ``jax.profiler.StepTraceAnnotation``, so the viewer groups device work per step.
Read it with TensorBoard's profile plugin (``tensorboard --logdir WORKDIR/profile``) or Perfetto.
"""
from __future__ import annotations

from typing import Any

import jax
from etils import epath


class StepWindowProfiler:
  """Starts/stops one trace around steps ``[start_step, start_step + num_steps)``; no-op when unset."""

  def __init__(self, logdir: str | epath.Path, start_step: int | None, num_steps: int = 5):
    """``start_step >= 1`` and ``num_steps >= 1`` (``config_lib.validate`` checks ``config.profile`` before any
    compute)."""
    self.logdir = epath.Path(logdir)
    self.first = start_step
    self.last = None if start_step is None else start_step + num_steps - 1
    self.active = False

  @classmethod
  def from_config(cls, profile_cfg, workdir: str | epath.Path) -> "StepWindowProfiler":
    """From ``config.profile`` (``{start_step, num_steps}``; None = no trace) into ``workdir/profile``."""
    if not profile_cfg:
      return cls(epath.Path(workdir) / "profile", None)
    return cls(epath.Path(workdir) / "profile", profile_cfg.get("start_step"), profile_cfg.get("num_steps", 5))

  def before_step(self, step: int) -> None:
    if step == self.first and not self.active:
      jax.profiler.start_trace(str(self.logdir))
      self.active = True

  def after_step(self, step: int, state: Any) -> None:
    if self.active and step >= self.last:
      self.stop(state)

  def stop(self, state: Any = None) -> None:
    """Ends a trace in progress (after the device work of ``state`` is done); called at the end of the run too."""
    if not self.active:
      return
    if state is not None:
      jax.block_until_ready(state)
    jax.profiler.stop_trace()
    self.active = False
    if jax.process_index() == 0:
      print(f"Wrote a profiler trace of steps {self.first}-{self.last} to {self.logdir}.", flush=True)
