"""Multi-process start-up and the few host-level agreements the loop needs.

``initialize`` connects this process to the others (``jax.distributed.initialize``): with an explicit
``coordinator_address / num_processes / process_id`` (plain machines, tests on 127.0.0.1), or with none of
them, in which case JAX detects the cluster itself (Cloud TPU VMs, SLURM ``srun``, Open MPI). On CPU the
cross-process collectives need a transport: gloo is selected unless the user chose one.

``any_process`` / ``broadcast_str`` are host-side agreements (one tiny collective each): e.g. every process
stops at the same step when any of them received SIGTERM.
"""
from __future__ import annotations

import os

import jax
import numpy as np


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, auto: bool = False) -> bool:
  """Starts multi-process JAX if asked to; returns whether it did.

  Explicit arguments win; missing ones come from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
  ``JAX_PROCESS_ID``. ``auto=True`` with nothing given lets JAX detect the cluster.
  """
  coordinator_address = coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS") or None
  if num_processes is None and os.environ.get("JAX_NUM_PROCESSES"):
    num_processes = int(os.environ["JAX_NUM_PROCESSES"])
  if process_id is None and os.environ.get("JAX_PROCESS_ID"):
    process_id = int(os.environ["JAX_PROCESS_ID"])
  explicit = coordinator_address is not None or num_processes is not None or process_id is not None
  if not explicit and not auto:
    return False
  if explicit:
    missing = [n for n, v in (("--coordinator_address", coordinator_address), ("--num_processes", num_processes),
                              ("--process_id", process_id)) if v is None]
    if missing:
      raise ValueError(f"multi-process start needs --coordinator_address HOST:PORT, --num_processes N and "
                       f"--process_id I together (missing: {', '.join(missing)}); give none of them to let "
                       f"JAX detect a TPU/SLURM cluster with --config.distributed_init=True.")
    if ":" not in coordinator_address:
      raise ValueError(f"--coordinator_address {coordinator_address!r} must be HOST:PORT (e.g. 10.0.0.2:1234).")
    if num_processes < 1 or not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id {process_id} must be in [0, --num_processes={num_processes}).")
  if not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
    # Cross-process collectives of the CPU client (no effect on TPU/GPU devices).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                             process_id=process_id)
  return True


def any_process(flag: bool) -> bool:
  """True on every process iff ``flag`` is True on at least one (a collective: all processes must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


def broadcast_str(text: str, max_len: int = 4096) -> str:
  """Process 0's ``text`` on every process (a collective)."""
  if jax.process_count() == 1:
    return text
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  raw = np.zeros(max_len, np.uint8)
  data = text.encode()[:max_len]
  raw[:len(data)] = np.frombuffer(data, np.uint8)
  out = np.asarray(multihost_utils.broadcast_one_to_all(raw))
  return bytes(out[out != 0].astype(np.uint8)).decode(errors="replace")
