"""Checkpoint integrity and workdir ownership (issue: nothing lost, every fault named).

Each test reproduces one measured failure: a deleting ``max_checkpoints_to_keep=0``, silent restores of
corrupted data, NaN parameters saved and called intact, two runs sharing a workdir, a rejected invocation
replacing ``config.json``, a changed batch size accepted on resume, ``skip_nonfinite`` breaking a resume,
an empty latest step blocking the restart, and a hang when the checkpoint folder becomes unwritable.
"""
import json
import logging
import os
import socket

import jax
import numpy as np
import pytest

from kexue_jax import checkpoint as ckpt_lib
from kexue_jax import train
from kexue_jax import workdir as workdir_lib
from tests.test_train import losses, tiny


def _steps(workdir):
  return sorted(int(p) for p in os.listdir(workdir / "checkpoints") if p.isdigit())


def _largest_data_file(step_dir):
  files = [os.path.join(r, f) for r, _, fs in os.walk(step_dir / "state") for f in fs]
  return max(files, key=os.path.getsize)


# ------------------------------------------------------------------------------------------------ digests
def test_digest_is_mesh_independent_and_sees_one_bit():
  x = np.random.default_rng(0).standard_normal((64, 16)).astype(np.float32)
  mesh = jax.make_mesh((8,), ("d",))
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))
  d_host, finite, max_abs = ckpt_lib.state_report({"params": {"w": x}})
  d_sharded, _, _ = ckpt_lib.state_report({"params": {"w": sharded}})
  assert d_host == d_sharded
  assert finite and max_abs == np.abs(x).max()
  # Reference: the same two sums in NumPy uint64 arithmetic, reduced mod 2**32.
  w = x.view(np.uint32).reshape(-1).astype(np.uint64)
  i = np.arange(w.size, dtype=np.uint64)
  ref = "%08x%08x" % (int(w.sum() % 2**32), int((w * ((2654435761 * i + 1) % 2**32)).sum() % 2**32))
  assert d_host["params/w"] == ref
  for bit in (0, 17, 31):
    y = x.copy().view(np.uint32)
    y[5, 3] ^= np.uint32(1 << bit)
    assert ckpt_lib.state_report({"params": {"w": y.view(np.float32)}})[0] != d_host


def test_bit_flip_falls_back_to_the_newest_good_step(tmp_path, caplog):
  sched = {"optimizer.schedule": "constant"}  # the lr of steps 3, 4 must not depend on num_train_steps
  c = tiny(steps=4, checkpoint_every_steps=2, max_checkpoints_to_keep=5, **sched)
  train.run(c, str(tmp_path / "ref"))
  train.run(c, str(tmp_path / "w"))
  path = _largest_data_file(tmp_path / "w" / "checkpoints" / "4")
  with open(path, "r+b") as f:  # one bit of the array payload (past any header)
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([byte[0] ^ 0x10]))
  c6 = tiny(steps=6, checkpoint_every_steps=2, max_checkpoints_to_keep=5, **sched)
  with caplog.at_level(logging.WARNING):
    train.run(c6, str(tmp_path / "w"))
  assert "Checkpoint step 4" in caplog.text and "damaged" in caplog.text
  assert [p.name.split(".")[0] for p in (tmp_path / "w" / "checkpoints.bad").iterdir()] == ["4"]
  train.run(c6, str(tmp_path / "ref"))
  # Resumed from step 2 and recomputed 3..6: the same losses as the untouched run.
  np.testing.assert_array_equal(losses(tmp_path / "w")[-4:], losses(tmp_path / "ref")[-4:])


def test_empty_latest_step_dir_falls_back(tmp_path, caplog):
  c = tiny(steps=2, checkpoint_every_steps=2)
  train.run(c, str(tmp_path))
  (tmp_path / "checkpoints" / "3").mkdir()  # empty, as a crash between mkdir and the first write leaves it
  with caplog.at_level(logging.WARNING):
    out = train.run(tiny(steps=3, checkpoint_every_steps=2), str(tmp_path))
  assert out["step"] == 3
  assert "step 3" in caplog.text and "damaged" in caplog.text


# ------------------------------------------------------------------------------------------------ saves
def test_max_checkpoints_to_keep_zero_keeps_all(tmp_path):
  train.run(tiny(steps=4, checkpoint_every_steps=2), str(tmp_path))
  assert _steps(tmp_path) == [2, 4]
  train.run(tiny(steps=6, checkpoint_every_steps=2, max_checkpoints_to_keep=0), str(tmp_path))
  assert _steps(tmp_path) == [2, 4, 6]


def test_nonfinite_parameters_are_never_saved(tmp_path):
  # lr 1e38: the step-1 update sends the parameters to +-1e38 (finite), step 2 makes them inf/NaN.
  c = tiny(steps=6, checkpoint_every_steps=1)
  c.optimizer.update(dict(learning_rate=1e38, warmup_steps=0, schedule="constant", clip_grad_norm=0.0))
  with pytest.raises(train.NonFiniteError) as info:
    train.run(c, str(tmp_path))
  msg = str(info.value)
  assert "intact" not in msg
  for step in _steps(tmp_path):
    state, _ = ckpt_lib.load_state(tmp_path, step)
    for leaf in jax.tree.leaves(state):
      if np.issubdtype(leaf.dtype, np.floating):
        assert np.isfinite(leaf).all(), step
  if _steps(tmp_path):  # what the message says about the last checkpoint is what was checked
    assert f"step {_steps(tmp_path)[-1]}" in msg and "max |parameter|" in msg


def test_skip_nonfinite_can_be_switched_on_and_off_on_resume(tmp_path):
  train.run(tiny(steps=2, checkpoint_every_steps=2), str(tmp_path))
  c = tiny(steps=4, checkpoint_every_steps=2)
  c.optimizer.skip_nonfinite = True
  assert train.run(c, str(tmp_path))["step"] == 4
  assert train.run(tiny(steps=6, checkpoint_every_steps=2), str(tmp_path))["step"] == 6


def _make_unwritable(path, writable: bool):
  """chmod for users; root ignores permissions, so there the immutable attribute (chattr) is used."""
  if os.geteuid() != 0:
    os.chmod(path, 0o700 if writable else 0o500)
    return
  import subprocess  # pylint: disable=g-import-not-at-top
  if subprocess.run(["chattr", "-i" if writable else "+i", str(path)], capture_output=True).returncode:
    pytest.skip("running as root on a filesystem without chattr +i: cannot make a directory unwritable")


def test_unwritable_checkpoint_dir_fails_in_bounded_time(tmp_path):
  c = tiny(steps=2, checkpoint_every_steps=2)
  train.run(c, str(tmp_path))
  _make_unwritable(tmp_path / "checkpoints", writable=False)
  try:
    with pytest.raises(ckpt_lib.CheckpointError, match="cannot write checkpoints .*step 2"):
      train.run(tiny(steps=4, checkpoint_every_steps=2), str(tmp_path))
  finally:
    _make_unwritable(tmp_path / "checkpoints", writable=True)
  assert _steps(tmp_path) == [2]
  state, _ = ckpt_lib.load_state(tmp_path, 2)  # the last good checkpoint is still readable
  assert int(state["step"]) == 2


def test_checkpoint_write_timeout_is_one_line(tmp_path):
  ck = ckpt_lib.Checkpointer(tmp_path, write_timeout_s=0.2)
  ck.manager.wait_until_finished = lambda: __import__("time").sleep(5)  # a stalled store
  with pytest.raises(ckpt_lib.CheckpointError, match="did not finish within 0 s"):
    ck.wait()


# ------------------------------------------------------------------------------------------------ workdir
def test_second_run_on_a_locked_workdir_refuses(tmp_path):
  lock = workdir_lib.WorkdirLock(tmp_path)
  lock.acquire()
  try:
    with pytest.raises(workdir_lib.WorkdirError, match=f"pid {os.getpid()} on {socket.gethostname()}"):
      train.run(tiny(steps=2), str(tmp_path))
  finally:
    lock.release()
  assert not (tmp_path / "metrics.jsonl").exists() and not (tmp_path / "config.json").exists()


def test_stale_lock_is_taken_over(tmp_path):
  (tmp_path / ".lock").write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname()}))
  assert train.run(tiny(steps=1), str(tmp_path))["step"] == 1
  assert not (tmp_path / ".lock").exists()


def test_rejected_invocation_keeps_config_json(tmp_path):
  train.run(tiny(steps=2), str(tmp_path))
  before = (tmp_path / "config.json").read_text()
  for bad in ({"model.name": "nope"}, {"mesh.data": 3}, {"num_train_steps": 0}):
    with pytest.raises(ValueError):
      train.run(tiny(steps=2, **bad), str(tmp_path))
    assert (tmp_path / "config.json").read_text() == before


def test_resume_with_changed_batch_size_or_width_refuses(tmp_path):
  train.run(tiny(steps=2, checkpoint_every_steps=2), str(tmp_path))
  with pytest.raises(workdir_lib.WorkdirError, match=r"batch_size: 8 -> 16.*allow_config_change"):
    train.run(tiny(steps=4, batch_size=16), str(tmp_path))
  with pytest.raises(workdir_lib.WorkdirError, match=r"model/embed_dim: 64 -> 32"):
    train.run(tiny(steps=4, **{"model.embed_dim": 32}), str(tmp_path))
  # Explicitly allowed: the batch size may change (the state still fits).
  assert train.run(tiny(steps=4, batch_size=16, allow_config_change=True), str(tmp_path))["step"] == 4
  # A width change, even allowed, is named by the shape check (not orbax's `strict=False` advice).
  with pytest.raises(ckpt_lib.CheckpointError, match=r"does not fit this config: .*float32\[64"):
    train.run(tiny(steps=6, allow_config_change=True, **{"model.embed_dim": 32}), str(tmp_path))


@pytest.mark.parametrize("override, message", [
    ({"model.num_heads": 0}, "config.model.num_heads must be a positive integer"),
    ({"data.seq_len": 0}, "config.data.seq_len must be >= 1"),
    ({"data.num_workers": -1}, "config.data.num_workers must be >= 0"),
    ({"model.vocab_size": 100}, "vocab_size=100 is smaller than the data's vocabulary"),
    ({"optimizer.learning_rate": float("inf")}, "learning_rate must be a finite number"),
    ({"optimizer.learning_rate": -1e-3}, "learning_rate must be >= 0"),
    ({"max_checkpoints_to_keep": -1}, "max_checkpoints_to_keep must be >= 0"),
])
def test_fuzzed_config_is_a_one_line_error(tmp_path, override, message):
  with pytest.raises(ValueError, match=message) as info:
    train.run(tiny(**override), str(tmp_path / "w"))
  assert "\n" not in str(info.value)
  assert not (tmp_path / "w").exists()  # rejected before anything was written


def test_workdir_that_is_a_file_or_read_only(tmp_path):
  (tmp_path / "f").write_text("x")
  with pytest.raises(workdir_lib.WorkdirError, match="is a file, not a directory"):
    train.run(tiny(), str(tmp_path / "f"))
  if os.geteuid() != 0:
    (tmp_path / "ro").mkdir(mode=0o500)
    with pytest.raises(workdir_lib.WorkdirError, match="not writable"):
      train.run(tiny(), str(tmp_path / "ro"))
