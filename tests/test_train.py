"""End-to-end tests of the training loop on 8 fake CPU devices (configs/lm/tiny.py:runlocal)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.helpers import load_config
from tests.test_main import cli
from kexue_jax import metrics as metrics_lib
from kexue_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(steps=6, **kw):
  c = load_config("configs/lm/tiny.py", "runlocal")
  c.num_train_steps = steps
  c.log_every_steps = 1
  c.progress_bar = False
  c.batch_size = 8
  for k, v in kw.items():
    node = c
    *parents, leaf = k.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def losses(workdir):
  return np.array([r["train/loss"] for r in metrics_lib.read_metrics(workdir) if "train/loss" in r])


# dp2_fsdp2_tp2 exercises every mesh axis at once (one train.run ~20-40 s on a 2-core CPU); pure data
# parallelism over 8 devices adds nothing new and runs with --runslow.
@pytest.mark.parametrize("name", ["dp2_fsdp2_tp2", pytest.param("dp8", marks=pytest.mark.slow)])
def test_same_loss_on_every_mesh(tmp_path, name):
  runs = {
      "1dev": (dict(data=1, fsdp=1, tensor=1), jax.devices()[:1]),
      "dp8": (dict(data=8, fsdp=1, tensor=1), None),
      "dp2_fsdp2_tp2": (dict(data=2, fsdp=2, tensor=2), None),
  }
  traj = {}
  for run_name in ("1dev", name):
    mesh, devices = runs[run_name]
    c = tiny(steps=10, **{"model.dropout_rate": 0.1})  # dropout masks must not depend on the mesh either
    c.mesh.update(mesh)
    train.run(c, str(tmp_path / run_name), devices=devices)
    traj[run_name] = losses(tmp_path / run_name)
  assert len(traj["1dev"]) == 10
  rel = np.abs(traj[name] - traj["1dev"]) / np.abs(traj["1dev"])
  assert rel.max() <= 1e-4, (name, rel)  # losses ~5: float32 reduction order over the mesh, scaled to the values


def test_parameters_sharded_as_rules_say():
  from kexue_jax import sharding
  import flax.linen as nn
  from kexue_jax import models

  c = tiny()
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  rules = sharding.normalize_rules(c.logical_axis_rules)
  model = models.build_model(c.model)
  tokens = jax.numpy.zeros((8, 32), jax.numpy.int32)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract = jax.eval_shape(lambda r: model.init(r, tokens), jax.random.key(0))
    shardings = sharding.logical_shardings(abstract, mesh, rules)
  specs = nn.get_partition_spec(abstract)
  rule_map = dict(rules)
  checked = 0
  for (path, spec), (_, sh) in zip(jax.tree_util.tree_flatten_with_path(specs)[0],
                                   jax.tree_util.tree_flatten_with_path(shardings)[0]):
    # Each logical name must map to exactly the mesh axes the rules give it (None stays unsharded).
    expected = tuple(rule_map.get(name) if name is not None else None for name in spec)
    got = tuple(sh.spec) + (None,) * (len(expected) - len(tuple(sh.spec)))
    assert got == expected, (path, spec, sh.spec)
    checked += any(e is not None for e in expected)
  assert checked > 0  # some parameters really are sharded


def test_restart_resumes_exactly(tmp_path):
  full, resumed = tmp_path / "full", tmp_path / "resumed"
  c = tiny(steps=6, checkpoint_every_steps=3, max_checkpoints_to_keep=5)
  out_full = train.run(c, str(full))
  # Simulate a run killed after step 3: keep only checkpoint 3 and the metrics up to it.
  shutil.copytree(full, resumed)
  shutil.rmtree(resumed / "checkpoints" / "6")
  lines = [l for l in (resumed / "metrics.jsonl").read_text().splitlines() if json.loads(l)["step"] <= 3]
  (resumed / "metrics.jsonl").write_text("\n".join(lines) + "\n")
  out_resumed = train.run(c, str(resumed))
  np.testing.assert_array_equal(losses(full), losses(resumed))
  assert out_full["eval"] == out_resumed["eval"]
  # The final states are bit-identical (checkpoint.load_state reads them back as numpy).
  from kexue_jax import checkpoint
  (state_full, step_full), (state_res, step_res) = checkpoint.load_state(full), checkpoint.load_state(resumed)
  assert step_full == step_res == 6
  jax.tree.map(np.testing.assert_array_equal, state_full, state_res)


def test_restore_onto_another_mesh(tmp_path):
  c = tiny(steps=4, checkpoint_every_steps=2)
  c.mesh.update(dict(data=2, fsdp=2, tensor=2))
  ref = train.run(c, str(tmp_path / "a"))
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  shutil.rmtree(tmp_path / "b" / "checkpoints" / "4")
  c1 = tiny(steps=4, checkpoint_every_steps=2)
  c1.mesh.update(dict(data=1, fsdp=1, tensor=1))
  out = train.run(c1, str(tmp_path / "b"), devices=jax.devices()[:1])
  np.testing.assert_allclose(out["eval"]["eval/loss"], ref["eval"]["eval/loss"], rtol=1e-4)


def test_nonfinite_loss_stops_with_the_step(tmp_path):
  c = tiny(steps=5, checkpoint_every_steps=1)
  c.optimizer.learning_rate = 1e38  # finite (inf is rejected by validate) but the step-1 update overflows
  c.optimizer.warmup_steps = 0
  c.optimizer.schedule = "constant"
  with pytest.raises(train.NonFiniteError, match=r"at step \d"):
    train.run(c, str(tmp_path))


@pytest.mark.parametrize("override, message", [
    ({"mesh.data": 3}, "multiplies to 3 devices but 8"),
    ({"mesh.data": 3, "mesh.fsdp": -1}, "does not divide"),
    ({"batch_size": 12}, "not divisible by the data-parallel size 8"),
    ({"model.name": "nope"}, "unknown model.name 'nope'"),
    ({"task.name": "nope"}, "unknown task.name 'nope'"),
    ({"data.name": "no_such_dataset_xyz"}, "no_such_dataset_xyz"),
])
def test_bad_input_gets_a_clear_error(tmp_path, override, message):
  c = tiny(**override)
  with pytest.raises(ValueError, match=message):
    train.run(c, str(tmp_path))


def test_corrupt_checkpoint_is_reported(tmp_path):
  from kexue_jax import checkpoint as ckpt_lib
  c = tiny(steps=2, checkpoint_every_steps=2)
  train.run(c, str(tmp_path))
  step_dir = tmp_path / "checkpoints" / "2" / "state"
  for root, _, files in os.walk(step_dir):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  with pytest.raises(ckpt_lib.CheckpointError, match="every checkpoint .* is damaged"):
    train.run(tiny(steps=4), str(tmp_path))
  assert [p.name.split(".")[0] for p in (tmp_path / "checkpoints.bad").iterdir()] == ["2"]  # kept aside


def test_half_written_checkpoint_is_ignored(tmp_path):
  c = tiny(steps=2, checkpoint_every_steps=2)
  train.run(c, str(tmp_path))
  # What an interrupted orbax save leaves behind: a temporary directory for a later step.
  junk = tmp_path / "checkpoints" / "3.orbax-checkpoint-tmp-1234"
  junk.mkdir()
  (junk / "state").write_text("half")
  from kexue_jax import checkpoint as ckpt_lib
  assert ckpt_lib.Checkpointer(tmp_path).latest_step() == 2


def _cli(workdir, *flags):
  env = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir or ""))
  return [sys.executable, "-m", "kexue_jax.main", "--config", "configs/lm/tiny.py:runlocal",
          f"--workdir={workdir}", "--config.progress_bar=False", "--config.log_every_steps=1", *flags], env


def test_cli_unknown_key_is_an_error(tmp_path):
  cmd, env = _cli(tmp_path, "--config.no_such_key=1")
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  assert "no_such_key" in proc.stderr


def test_sigterm_saves_and_resume_matches_uninterrupted(tmp_path):
  steps = ["--config.num_train_steps=200", "--config.batch_size=8", "--config.checkpoint_every_steps=1000"]
  cmd, env = _cli(tmp_path / "ref", *steps)
  subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)

  cmd, env = _cli(tmp_path / "int", *steps)
  proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  metrics_file = tmp_path / "int" / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    if metrics_file.exists() and len(metrics_file.read_text().splitlines()) >= 3:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 143, err.decode()[-2000:]  # 128 + SIGTERM: preempted, not finished
  assert "rerun the same command to resume" in out.decode()
  saved = sorted(int(p) for p in os.listdir(tmp_path / "int" / "checkpoints") if p.isdigit())
  assert saved and saved[-1] < 200, saved  # stopped early, with a checkpoint at the step it reached
  subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True, timeout=600)
  np.testing.assert_array_equal(losses(tmp_path / "ref"), losses(tmp_path / "int"))


def test_microbatches_equal_one_big_batch(tmp_path):
  one = train.run(tiny(steps=4, batch_size=16), str(tmp_path / "one"))
  two = train.run(tiny(steps=4, batch_size=16, microbatches=2), str(tmp_path / "two"))
  np.testing.assert_allclose(losses(tmp_path / "two"), losses(tmp_path / "one"), rtol=1e-5)
  np.testing.assert_allclose(two["eval"]["eval/loss"], one["eval"]["eval/loss"], rtol=1e-5)


def test_optimizer_guard_skips_and_counts(tmp_path):
  c = tiny(steps=5)
  c.optimizer.update(dict(learning_rate=1e38, warmup_steps=0, schedule="constant", skip_nonfinite=True))
  # The run goes to the end, but one that ends on a skipped (NaN-loss) step is not reported as finished.
  with pytest.raises(train.NonFiniteError, match=r"reached step 5 but its loss there is nan .*skipped 4 steps"):
    train.run(c, str(tmp_path))
  recs = [r for r in metrics_lib.read_metrics(tmp_path) if "skipped_steps" in r]
  # Logged after steps 1..5. Step 1's gradients are finite (its update sends the parameters to +-inf),
  # so the count is 0 after it; steps 2..5 see non-finite gradients and are skipped one by one.
  assert [r["skipped_steps"] for r in recs] == [0, 1, 2, 3, 4]
  assert recs[-1]["step"] == 5
  # Run again on the same workdir (it once said "already finished at step 5" and exited 0): the final
  # checkpoint is marked diverged, so the rerun refuses before compiling, in one line through the CLI
  # (exit 2), naming the step, the skipped steps and the checkpoint; nothing in the workdir changes.
  before = (tmp_path / "metrics.jsonl").read_text()
  with pytest.raises(train.NonFiniteError, match=r"run reached step 5 but its loss there is nan .*skipped 4 steps, "
                     r"the first at step 2\): it diverged; the last checkpoint, step 5 .* verified on restore: all "
                     r"values finite.*nothing to resume"):
    train.run(c, str(tmp_path))
  flags = {"num_train_steps": 5, "log_every_steps": 1, "batch_size": 8, "progress_bar": False,
           **{f"optimizer.{k}": v for k, v in c.optimizer.items() if k in ("learning_rate", "warmup_steps",
                                                                          "schedule", "skip_nonfinite")}}
  proc = cli("--config=lm/tiny:runlocal", f"--workdir={tmp_path}", *[f"--config.{k}={v}" for k, v in flags.items()],
             timeout=300)
  assert proc.returncode == 2, proc.stderr
  assert "already finished" not in proc.stdout
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and "diverged" in lines[0] and "new --workdir" in lines[0], proc.stderr
  assert (tmp_path / "metrics.jsonl").read_text() == before
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == ["5"]
