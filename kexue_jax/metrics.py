"""Metric writers (``metrics.jsonl`` always, TensorBoard when ``tensorboardX`` is installed), the progress bar,
the end-of-run summary, and model-FLOPs utilisation (MFU).

MFU = (model FLOPs per step, from XLA's cost analysis of the compiled train step) / (step time x peak FLOP/s of
the devices). The peak comes from a table of accelerator datasheets; for a CPU (and any unknown device) it is
measured once with a large float32 matmul and cached in ``~/.cache/kexue_jax/peak_flops.json``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import weakref
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

# Dense bf16 peak FLOP/s per device (chip for TPU), from the vendors' datasheets.
PEAK_FLOPS_BF16 = {
    "TPU v2": 45e12 / 2,    # per core; a v2 chip is 2 cores
    "TPU v3": 123e12 / 2,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,  # v6e / Trillium
    "TPU v6e": 918e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12,
    "NVIDIA L4": 121e12,
    "Tesla T4": 65e12,
    "NVIDIA A10G": 125e12,
}


def _cache_file() -> epath.Path:
  root = os.environ.get("KEXUE_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "kexue_jax"))
  return epath.Path(root) / "peak_flops.json"


def measure_matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of the best of ``repeats`` jitted ``n x n`` float32 matmuls on the default device."""
  a = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    f(a).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return 2.0 * n**3 / best


def peak_flops_per_device() -> float:
  """Peak FLOP/s of one local device: datasheet for known accelerators, else measured once and cached."""
  dev = jax.local_devices()[0]
  for name, peak in PEAK_FLOPS_BF16.items():
    if dev.device_kind.startswith(name):
      return peak
  key = f"{dev.platform}|{dev.device_kind}|{os.cpu_count()}|{len(jax.local_devices())}"
  path = _cache_file()
  cache = {}
  if path.exists():
    try:
      cache = json.loads(path.read_text())
    except (ValueError, OSError):
      cache = {}
  if key not in cache:
    # On a CPU the fake devices share the cores: the matmul peak is for the whole process.
    cache[key] = measure_matmul_peak() / len(jax.local_devices())
    try:
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.parent / (path.name + f".tmp{os.getpid()}")
      tmp.write_text(json.dumps(cache, indent=1))
      tmp.replace(path)
    except OSError as e:
      logging.warning("Could not cache the measured peak FLOP/s in %s: %s", path, e)
  return float(cache[key])


def compiled_flops(compiled) -> float | None:
  """Total FLOPs of a compiled computation from XLA's cost analysis (None when unavailable)."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 - some backends do not implement it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"])


def _to_python(v: Any) -> Any:
  if isinstance(v, (np.ndarray, jax.Array)):
    v = np.asarray(v)
    return v.item() if v.ndim == 0 else v.tolist()
  if isinstance(v, np.generic):
    return v.item()
  return v


class MetricWriter:
  """Appends one JSON object per call to ``metrics.jsonl`` (+ TensorBoard scalars when available).

  On resume, lines for steps after the restored step (written after the last checkpoint by the interrupted
  run) are dropped, so the file reads as one uninterrupted run.
  """

  def __init__(self, workdir: str | epath.Path, *, resume_step: int | None = None, tensorboard: bool = True):
    self.path = epath.Path(workdir) / "metrics.jsonl"
    self._is_chief = jax.process_index() == 0
    if self._is_chief:
      self._truncate(resume_step)
    self._tb = None
    if tensorboard and self._is_chief:
      try:
        from tensorboardX import SummaryWriter  # optional dependency  # pylint: disable=g-import-not-at-top
        self._tb = SummaryWriter(str(epath.Path(workdir) / "tensorboard"))
      except ImportError:
        pass

  def _truncate(self, resume_step: int | None) -> None:
    if not self.path.exists():
      return
    keep = []
    for line in self.path.read_text().splitlines():
      try:
        rec = json.loads(line)
      except ValueError:
        continue  # a half-written last line from a killed run
      if resume_step is not None and rec.get("step", 0) <= resume_step:
        keep.append(line)
    self.path.write_text("".join(l + "\n" for l in keep))

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self._is_chief:
      return
    rec = {"step": int(step), **{k: _to_python(v) for k, v in metrics.items()}}
    with self.path.open("a") as f:
      f.write(json.dumps(rec) + "\n")
    if self._tb is not None:
      for k, v in rec.items():
        if k != "step" and isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, step)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str | epath.Path) -> list[dict[str, Any]]:
  path = epath.Path(workdir) / "metrics.jsonl"
  if not path.exists():
    return []
  return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


_OPEN_BARS: "weakref.WeakSet[Progress]" = weakref.WeakSet()


class Progress:
  """A progress bar with ETA and the latest loss/throughput (tqdm).

  ``update(step)`` is meant to be called every step with the host-side step counter (no device value is read,
  so it adds no device sync: the bar counts dispatched steps); ``postfix`` carries the values of the last log
  interval, which the loop fetches anyway. tqdm redraws at most every ``mininterval`` seconds.
  """

  def __init__(self, total: int, initial: int, enabled: bool = True):
    self._bar = None
    if enabled and jax.process_index() == 0:
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                       mininterval=0.5, smoothing=0.1)
      _OPEN_BARS.add(self)

  def update(self, step: int, postfix: Mapping[str, Any] | None = None) -> None:
    if self._bar is None:
      return
    if postfix:
      self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)
    self._bar.update(step - self._bar.n)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    _OPEN_BARS.discard(self)


def close_progress_bars() -> None:
  """Closes every open bar (before an error message, so the message starts on its own line)."""
  for bar in list(_OPEN_BARS):
    bar.close()


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return str(v)


def summary(lines: Mapping[str, Any]) -> str:
  width = max(len(k) for k in lines)
  body = "\n".join(f"  {k.ljust(width)} : {_fmt(v)}" for k, v in lines.items())
  return f"\n{'=' * 72}\n kexue_jax run summary\n{'-' * 72}\n{body}\n{'=' * 72}\n"
