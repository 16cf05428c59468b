"""Multi-process runs on this machine: 2 processes x 4 fake CPU devices over gloo on 127.0.0.1.

The code path is a multi-host run's: ``--coordinator_address/--num_processes/--process_id``, host-local
data slices, sharded checkpoints written by both processes, the stop agreement on SIGTERM (every k steps).
References are single-process runs on 8 devices (the global data stream and the random numbers do not
depend on the process count, so the runs agree to float32 reduction-order error).
"""
import json
import os
import pathlib
import re
import shutil
import signal
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from kexue_jax import checkpoint as ckpt_lib
from kexue_jax import launch
from kexue_jax import metrics as metrics_lib
from kexue_jax import train
from kexue_jax.data import builders
from tests.test_train import REPO, losses, tiny

TIMEOUT_S = 420  # per multi-process launch; the tests fail (never hang) past it


def _args(workdir, steps, **overrides):
  flags = {"num_train_steps": steps, "batch_size": 8, "log_every_steps": 1, "progress_bar": False,
           "optimizer.schedule": "constant", **overrides}
  return ["--config=configs/lm/tiny.py:runlocal", f"--workdir={workdir}",
          *[f"--config.{k}={v}" for k, v in flags.items()]]


def _env():
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir or ""),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def _run2(tmp_path, workdir, steps, timeout=TIMEOUT_S, **overrides):
  procs = launch.spawn(_args(workdir, steps, **overrides), num_processes=2, devices_per_process=4,
                       env=_env(), cwd=REPO, log_dir=str(tmp_path))
  codes = launch.wait_all(procs, timeout)
  logs = "".join((tmp_path / f"process_{i}.log").read_text()[-3000:] for i in range(2))
  return codes, logs


def _reference(workdir, steps, **overrides):
  c = tiny(steps=steps, **{"optimizer.schedule": "constant", **overrides})
  return train.run(c, str(workdir))


def test_two_processes_equal_one(tmp_path):
  codes, logs = _run2(tmp_path, tmp_path / "mp", 4, checkpoint_every_steps=2)
  assert codes == [0, 0], logs
  _reference(tmp_path / "one", 4, checkpoint_every_steps=2)
  np.testing.assert_allclose(losses(tmp_path / "mp"), losses(tmp_path / "one"), rtol=1e-5)
  # Only process 0 writes metrics and config: one record per step, no duplicates; the lock is released.
  steps = [r["step"] for r in map(json.loads, (tmp_path / "mp" / "metrics.jsonl").read_text().splitlines())
           if "train/loss" in r]
  assert steps == [1, 2, 3, 4]
  assert json.loads((tmp_path / "mp" / "config.json").read_text())["batch_size"] == 8
  assert not (tmp_path / "mp" / ".lock").exists()
  # Both processes wrote their shards of the checkpoint, verified by a 1-process restore below.
  state, step = ckpt_lib.load_state(tmp_path / "mp")
  ref, _ = ckpt_lib.load_state(tmp_path / "one")
  assert step == 4
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state["params"],
               ref["params"])


@pytest.mark.slow
def test_two_process_save_then_two_process_resume_is_bit_exact(tmp_path):
  codes, logs = _run2(tmp_path, tmp_path / "full", 6, checkpoint_every_steps=3, max_checkpoints_to_keep=5)
  assert codes == [0, 0], logs
  shutil.copytree(tmp_path / "full", tmp_path / "res")
  shutil.rmtree(tmp_path / "res" / "checkpoints" / "6")
  codes, logs = _run2(tmp_path, tmp_path / "res", 6, checkpoint_every_steps=3, max_checkpoints_to_keep=5)
  assert codes == [0, 0], logs
  np.testing.assert_array_equal(losses(tmp_path / "res"), losses(tmp_path / "full"))
  (a, _), (b, _) = ckpt_lib.load_state(tmp_path / "full"), ckpt_lib.load_state(tmp_path / "res")
  jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.slow
@pytest.mark.parametrize("signalled", ["both", "one"])
def test_sigterm_saves_at_an_agreed_step_then_one_process_resumes(tmp_path, signalled):
  """SIGTERM to both processes, or to process 1 only: the processes agree on stopping every
  ``preemption_check_every_steps`` (4) steps, so both save one checkpoint at a multiple of 4 and exit 143."""
  steps, every = 40, 4
  workdir = tmp_path / "mp"
  procs = launch.spawn(_args(workdir, steps, checkpoint_every_steps=1000, preemption_check_every_steps=every),
                       num_processes=2, devices_per_process=4, env=_env(), cwd=REPO, log_dir=str(tmp_path))
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + TIMEOUT_S
  while time.time() < deadline and all(p.poll() is None for p in procs):
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
      break
    time.sleep(0.1)
  for p in procs if signalled == "both" else procs[1:]:
    p.send_signal(signal.SIGTERM)
  codes = launch.wait_all(procs, TIMEOUT_S)
  logs = "".join((tmp_path / f"process_{i}.log").read_text()[-3000:] for i in range(2))
  # Both stop at the same step, save, and report the preemption (128 + SIGTERM).
  assert codes == [143, 143], (codes, logs)
  assert "stopped by " in logs
  saved = sorted(int(p) for p in os.listdir(workdir / "checkpoints") if p.isdigit())
  assert saved and saved[-1] < steps and saved[-1] % every == 0, saved
  assert not [p for p in os.listdir(workdir / "checkpoints") if "tmp" in p]
  # Restore onto ONE process (8 devices): the data iterator position is global, so it re-shards.
  out = _reference(workdir, steps, checkpoint_every_steps=1000)
  assert out["step"] == steps
  _reference(tmp_path / "ref", steps, checkpoint_every_steps=1000)
  np.testing.assert_allclose(losses(workdir), losses(tmp_path / "ref"), rtol=1e-5)


@pytest.mark.slow
def test_slurm_environment_is_auto_detected(tmp_path):
  """What `srun` gives each task (SLURM_* variables) + --config.distributed_init=True, no flags."""
  procs = launch.spawn(_args(tmp_path / "mp", 2), num_processes=2, devices_per_process=4, env=_env(), cwd=REPO,
                       log_dir=str(tmp_path), slurm=True)
  codes = launch.wait_all(procs, TIMEOUT_S)
  logs = "".join((tmp_path / f"process_{i}.log").read_text()[-3000:] for i in range(2))
  assert codes == [0, 0], logs
  assert "8 x cpu" in logs  # one 8-device mesh over both processes
  assert [r for r in losses(tmp_path / "mp")] and len(losses(tmp_path / "mp")) == 2


def readme_recipes() -> dict[str, str]:
  """The per-worker shell command of each launch recipe in the README's multi-host section, as written:
  ``tpu_vm`` (the ``--command`` of ``gcloud ... --worker=all``), ``slurm`` and ``slurm_explicit`` (what
  ``srun`` runs in each task)."""
  text = (pathlib.Path(REPO) / "README.md").read_text()
  section = text[text.index("## Multi-host runs"):]
  section = section[:section.index("\n## ", 1)]
  blocks = [textwrap.dedent(b) for b in re.findall(r"^ *```bash\n(.*?)^ *```", section, re.S | re.M)]
  recipes = {}
  for block in blocks:
    if "gcloud compute tpus tpu-vm ssh" in block and "--worker=all" in block:
      recipes["tpu_vm"] = re.search(r'--command="(.*?)"', block, re.S).group(1).strip()
    elif block.startswith("#SBATCH"):
      recipes["slurm"] = re.search(r"^srun (.*)", block, re.S | re.M).group(1).strip()
    elif block.startswith("srun bash -c"):
      recipes["slurm_explicit"] = block[len("srun "):].strip()
  assert set(recipes) == {"tpu_vm", "slurm", "slurm_explicit"}, recipes
  return recipes


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["tpu_vm", "slurm", "slurm_explicit"])
def test_readme_launch_recipe(tmp_path, recipe):
  """Each README recipe's per-worker command, run as written by 2 local processes x 4 CPU devices.

  Changed: ``--config``/``--workdir`` (the tiny LM, a temporary directory) and the explicit recipe's fixed
  port (a free one). Environment: ``srun``'s ``SLURM_*`` variables and a stand-in ``scontrol`` printing this
  host; for the TPU VM, ``~/kexue_jax`` is this checkout and the coordinator/process count/index JAX's TPU
  detection would read from the metadata server are given as ``JAX_COORDINATOR_ADDRESS/...`` (read by
  ``kexue_jax.distributed.initialize`` with ``--config.distributed_init=True``)."""
  command = readme_recipes()[recipe]
  workdir = tmp_path / "run"
  command = re.sub(r"--config \S+", "--config configs/lm/tiny.py:runlocal", command)
  command = re.sub(r"--workdir \S+", f"--workdir {workdir}", command)
  if recipe == "slurm_explicit":
    command = command.replace(":12345", f":{launch.free_port()}")
  bin_dir, home = tmp_path / "bin", tmp_path / "home"
  bin_dir.mkdir()
  home.mkdir()
  (bin_dir / "python").symlink_to(sys.executable)
  (bin_dir / "scontrol").write_text("#!/bin/sh\necho 127.0.0.1\n")  # `scontrol show hostnames ...`
  (bin_dir / "scontrol").chmod(0o755)
  (home / "kexue_jax").symlink_to(REPO)
  base = dict(launch.cpu_env(4, _env()), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
              KEXUE_DATA_DIR=builders.default_data_dir())
  if recipe == "tpu_vm":
    coordinator = f"127.0.0.1:{launch.free_port()}"
    envs = [dict(base, HOME=str(home), JAX_COORDINATOR_ADDRESS=coordinator, JAX_NUM_PROCESSES="2",
                 JAX_PROCESS_ID=str(i)) for i in range(2)]
  else:
    job_id = launch.slurm_job_id()
    envs = [dict(base, **launch.slurm_env(2, i, job_id)) for i in range(2)]
  procs = launch.start([["bash", "-c", command]] * 2, envs, cwd=REPO, log_dir=str(tmp_path))
  codes = launch.wait_all(procs, TIMEOUT_S)
  logs = "".join((tmp_path / f"process_{i}.log").read_text()[-3000:] for i in range(2))
  assert codes == [0, 0], (command, logs)
  assert logs.count("8 x cpu") == 1, logs  # one 8-device mesh over both processes; process 0 prints the summary
  steps = [r["step"] for r in metrics_lib.read_metrics(workdir) if "train/loss" in r]
  assert steps == [2, 4], steps  # runlocal logs every 2 steps, once (process 0 only)
