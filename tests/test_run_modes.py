"""Run modes of the loop around a tiny LM: restart of a finished run, eval-only, profiling window, per-step
progress, best-checkpoint retention, and the one-line dataset preparation message."""
import json
import os

import numpy as np
import pytest

from tests import test_train
from kexue_jax import checkpoint as ckpt_lib
from kexue_jax import metrics as metrics_lib
from kexue_jax import train


def tiny(steps=4, **kw):
  """test_train's tiny LM config, logging every 2 steps."""
  return test_train.tiny(steps, **{"log_every_steps": 2, **kw})


def eval_records(workdir):
  return [r for r in metrics_lib.read_metrics(workdir) if any(k.startswith("eval/") for k in r)]


def test_finished_run_started_again_reports_without_re_evaluating(tmp_path, capsys):
  first = train.run(tiny(), str(tmp_path))
  assert "resumed" not in capsys.readouterr().out
  again = train.run(tiny(), str(tmp_path))
  assert "already finished at step 4" in capsys.readouterr().out
  assert len(eval_records(tmp_path)) == 1  # no duplicate eval record
  assert again["eval"] == first["eval"]    # the summary still shows the run's evaluation


def test_resumed_run_says_from_which_step(tmp_path, capsys):
  train.run(tiny(steps=2), str(tmp_path))
  train.run(tiny(steps=4), str(tmp_path))
  assert "resumed from step 2" in capsys.readouterr().out


def test_eval_only_matches_the_runs_own_evaluation(tmp_path):
  result = train.run(tiny(), str(tmp_path))
  metrics_before = (tmp_path / "metrics.jsonl").read_text()
  in_flight = tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp-1"  # a save of a run still training here
  in_flight.mkdir()
  record = train.run(tiny(), str(tmp_path), eval_only=True)
  assert in_flight.exists()  # read-only: eval-only cleans up nothing
  assert record["step"] == 4 and record["split"] == "validation"
  lines = (tmp_path / "eval_metrics.jsonl").read_text().splitlines()
  assert json.loads(lines[-1]) == record
  for k, v in result["eval"].items():  # same checkpoint, same batches, same program: identical numbers
    assert record[k] == v, k
  assert (tmp_path / "metrics.jsonl").read_text() == metrics_before
  with pytest.raises(ValueError, match=r"--eval_step=3: .* steps present: \[4\]"):
    train.run(tiny(), str(tmp_path), eval_only=True, checkpoint_step=3)


def test_eval_only_without_checkpoints_is_an_error_and_creates_nothing(tmp_path):
  with pytest.raises(ValueError, match="has no checkpoints"):
    train.run(tiny(), str(tmp_path / "never_trained"), eval_only=True)
  assert not (tmp_path / "never_trained").exists()


def test_profile_window_writes_a_trace(tmp_path, capsys):
  train.run(tiny(**{"profile.start_step": 2, "profile.num_steps": 2}), str(tmp_path))
  traces = [f for _, _, fs in os.walk(tmp_path / "profile") for f in fs if f.endswith(".xplane.pb")]
  assert traces, list(os.walk(tmp_path / "profile"))
  assert "profiler trace of steps 2-3" in capsys.readouterr().out


def test_progress_bar_counts_every_step(tmp_path, monkeypatch):
  seen = []

  class Recorder(metrics_lib.Progress):
    def update(self, step, postfix=None):
      seen.append(step)

  monkeypatch.setattr(metrics_lib, "Progress", Recorder)
  train.run(tiny(steps=5), str(tmp_path))
  assert sorted(set(seen)) == [1, 2, 3, 4, 5]


def test_best_checkpoints_are_kept_with_the_latest(tmp_path):
  """BestN by the metric plus the latest step, against a literal reference of which steps survive."""
  import jax.numpy as jnp
  losses = {1: 5.0, 2: 1.0, 3: 3.0, 4: None, 5: 2.0, 6: 4.0, 7: None}
  ck = ckpt_lib.Checkpointer(tmp_path, max_to_keep=2, async_save=False, best_metric="eval/loss")
  for step, loss in losses.items():
    ck.save(step, {"x": jnp.full(3, step)}, None, force=True,
            metrics=None if loss is None else {"eval/loss": loss})
  ck.close()
  scored = sorted((l, s) for s, l in losses.items() if l is not None)
  expected = {s for _, s in scored[:2]} | {max(losses)}
  kept = {int(p) for p in os.listdir(tmp_path / "checkpoints") if p.isdigit()}
  assert kept == expected
  np.testing.assert_array_equal(ckpt_lib.load_state(tmp_path, 2)[0]["x"], np.full(3, 2))


def test_best_checkpoint_metric_must_exist(tmp_path):
  import jax.numpy as jnp
  ck = ckpt_lib.Checkpointer(tmp_path, async_save=False, best_metric="eval/acc")
  with pytest.raises(ValueError, match="best_checkpoint_metric='eval/acc'.*eval/loss"):
    ck.save(1, {"x": jnp.ones(2)}, None, metrics={"eval/loss": 1.0})
  ck.close()


def test_text_files_preparation_says_what_where(tmp_path, capfd):
  from kexue_jax.data import builders
  for i in range(3):
    (tmp_path / f"doc{i}.txt").write_text(f"document {i}\n" * 20)
  builder = builders.prepared_builder("text_files", str(tmp_path / "tfds"), glob=str(tmp_path / "*.txt"))
  out, err = capfd.readouterr()
  assert os.sep + "text_files" + os.sep in os.fspath(builder.data_dir)
  lines = [l for l in out.splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("Preparing dataset 'text_files'"), out
  assert str(tmp_path / "*.txt") in lines[0] and os.fspath(builder.data_dir) in lines[0]
  assert "Downloading" not in out + err and "dataset_info" not in err and "Generating" not in err, err


def test_mnist1d_without_its_package_names_the_extra(tmp_path, monkeypatch, capfd):
  import importlib.util
  from kexue_jax.data import builders
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mnist1d" else real(name, *a))
  with pytest.raises(ImportError, match=r"pip install 'kexue_jax\[experiments\]'"):
    builders.prepared_builder("mnist1d", str(tmp_path))
  assert "Preparing" not in capfd.readouterr().out
