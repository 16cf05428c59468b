"""Start an N-process run of ``kexue_jax.main`` on this machine (127.0.0.1), as a multi-host job would.

    python -m kexue_jax.launch --num_processes 2 --devices_per_process 4 -- \
        --config configs/lm/tiny.py:runlocal --workdir /tmp/kexue/mp

Each process gets ``--coordinator_address 127.0.0.1:<free port> --num_processes N --process_id i`` and
``JAX_NUM_CPU_DEVICES`` fake CPU devices; the processes talk over gloo, exactly the code path of a real
multi-host run (collectives, sharded checkpoints, the stop agreement). Used by tests/test_multiprocess.py
and benchmarks/faults.py.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys


def free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def slurm_job_id() -> int:
  """A job id whose coordinator port (JAX's SLURM rule: 61440 + id mod 4096) is free here."""
  import random  # pylint: disable=g-import-not-at-top
  for _ in range(100):
    job_id = random.randrange(4096)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
      try:
        s.bind(("127.0.0.1", 61440 + job_id))
      except OSError:
        continue
    return job_id
  raise RuntimeError("no free port in 61440..65535 for a simulated SLURM job")


def slurm_env(num_processes: int, process_id: int, job_id: int) -> dict[str, str]:
  """What ``srun`` gives task ``process_id`` of a one-node job on this machine (what JAX's SLURM detection
  and the README's explicit ``srun bash -c`` recipe read)."""
  return dict(SLURM_JOB_ID=str(job_id), SLURM_JOB_NODELIST="127.0.0.1", SLURM_STEP_NODELIST="127.0.0.1",
              SLURM_NTASKS=str(num_processes), SLURM_STEP_NUM_NODES="1", SLURM_PROCID=str(process_id),
              SLURM_LOCALID=str(process_id))


def cpu_env(devices_per_process: int, env: dict | None = None) -> dict[str, str]:
  """``env`` (default: this process's) with ``devices_per_process`` fake CPU devices."""
  return dict(os.environ if env is None else env, JAX_NUM_CPU_DEVICES=str(devices_per_process),
              JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")


def start(cmds: list[list[str]], envs: list[dict], *, cwd: str | None = None,
          log_dir: str | None = None) -> list[subprocess.Popen]:
  """Starts process i as ``cmds[i]`` with ``envs[i]`` (not waiting); its stdout+stderr go to
  ``log_dir/process_i.log`` (or are inherited when ``log_dir`` is None)."""
  procs = []
  for i, (cmd, env) in enumerate(zip(cmds, envs)):
    out = open(os.path.join(log_dir, f"process_{i}.log"), "w") if log_dir else None  # noqa: SIM115
    procs.append(subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT if out else None))
    if out:
      out.close()
  return procs


def spawn(main_args: list[str], *, num_processes: int, devices_per_process: int, env: dict | None = None,
          cwd: str | None = None, log_dir: str | None = None, slurm: bool = False) -> list[subprocess.Popen]:
  """Starts the processes (not waiting). stdout+stderr of process i go to ``log_dir/process_i.log`` (or
  are inherited when ``log_dir`` is None).

  ``slurm=True`` passes no flags but the environment ``srun`` gives each task (``slurm_env``) and appends
  ``--config.distributed_init=True``: JAX's cluster auto-detection path, as under a real ``srun``.
  """
  env = cpu_env(devices_per_process, env)
  cmd = [sys.executable, "-m", "kexue_jax.main", *main_args]
  if slurm:
    cmd.append("--config.distributed_init=True")
    job_id = slurm_job_id()
    return start([cmd] * num_processes, [dict(env, **slurm_env(num_processes, i, job_id))
                                         for i in range(num_processes)], cwd=cwd, log_dir=log_dir)
  if num_processes > 1:
    cmd += [f"--coordinator_address=127.0.0.1:{free_port()}", f"--num_processes={num_processes}"]
    return start([cmd + [f"--process_id={i}"] for i in range(num_processes)], [env] * num_processes, cwd=cwd,
                 log_dir=log_dir)
  return start([cmd], [env], cwd=cwd, log_dir=log_dir)


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
  """Exit codes; processes still running after ``timeout`` seconds (in total) are killed (code -9)."""
  import time  # pylint: disable=g-import-not-at-top
  deadline = time.time() + timeout
  codes = []
  for p in procs:
    try:
      codes.append(p.wait(timeout=max(0.1, deadline - time.time())))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()
      codes.append(-9)
  return codes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=4)
  parser.add_argument("main_args", nargs=argparse.REMAINDER, help="-- then the kexue_jax.main arguments")
  args = parser.parse_args()
  main_args = args.main_args[1:] if args.main_args[:1] == ["--"] else args.main_args
  procs = spawn(main_args, num_processes=args.num_processes, devices_per_process=args.devices_per_process)
  codes = [p.wait() for p in procs]
  sys.exit(max(codes, key=abs))


if __name__ == "__main__":
  main()
