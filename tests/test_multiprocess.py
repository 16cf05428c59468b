"""Multi-process runs on this machine: 2 processes x 4 fake CPU devices over gloo on 127.0.0.1.

The code path is a multi-host run's: ``--coordinator_address/--num_processes/--process_id``, host-local
data slices, sharded checkpoints written by both processes, the stop agreement on SIGTERM (every k steps).
References are single-process runs on 8 devices (the global data stream and the random numbers do not
depend on the process count, so the runs agree to float32 reduction-order error).
"""
import json
import os
import shutil
import signal
import time

import jax
import numpy as np
import pytest

from kexue_jax import checkpoint as ckpt_lib
from kexue_jax import launch
from kexue_jax import train
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
