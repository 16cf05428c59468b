"""python -m experiments: usage errors (exit 2 before compute), dry run, the run cache, overrides, sharding."""
import json
import os
import subprocess
import sys
import types

import pytest

from experiments.framework import launcher

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_list_names_the_ported_studies(capsys):
  assert launcher.main(["--list"]) == 0
  out = capsys.readouterr().out
  assert "simsiam" in out and "length_extrapolation" in out


@pytest.mark.parametrize("argv, match", [
    (["simsiam"], "--workdir is required"), (["simsiam", "--workdir", "W", "--shard", "2/2"], "--shard"),
    (["simsiam", "--workdir", "W", "--bogus"], "unrecognised"), (["--workdir", "W"], "name a study"),
    (["simsiam", "--results", "x.json"], "--report_only"),
    (["simsiam", "--workdir", "W", "--seeds", "0"], "--seeds must be >= 1")])
def test_bad_arguments_exit_2(argv, match, capsys):
  with pytest.raises(SystemExit) as e:
    launcher.main(argv)
  assert e.value.code == 2 and match in capsys.readouterr().err


def test_unknown_study_scale_and_override_fail_before_compute(tmp_path, capsys):
  assert launcher.main(["nope", "--workdir", str(tmp_path)]) == 2
  assert launcher.main(["simsiam", "--workdir", str(tmp_path), "--scale", "huge"]) == 2
  assert launcher.main(["simsiam", "--workdir", str(tmp_path), "--config.data.nope=1"]) == 2
  err = capsys.readouterr().err
  assert "unknown study" in err and "huge" in err and "no key 'nope'" in err
  assert not os.listdir(tmp_path)


def test_results_not_in_the_launchers_layout_fail_in_one_line(tmp_path, capsys):
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"runs": {"rope": {}}, "meta": {}}))   # a former driver's dict of runs
  assert launcher.main(["simsiam", "--report_only", "--results", str(path), "--out", str(tmp_path / "o")]) == 2
  assert "is not a launcher results.json" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_dry_run_prints_plan_and_estimate(tmp_path, capsys):
  assert launcher.main(["simsiam", "--workdir", str(tmp_path), "--dry_run", "--seeds", "2"]) == 0
  out = capsys.readouterr().out
  assert "22 runs" in out and "estimated" in out and "predictor=frozen,seed=1" in out
  assert not os.listdir(tmp_path)


def _fake_study(calls):
  """A one-run study on the engine's smoke config (configs/lm/tiny.py:runlocal)."""
  study = types.ModuleType("experiments.fake.study")

  def plan(seeds=None, scale="default"):
    del seeds, scale
    return [launcher.Run("lm", "configs/lm/tiny.py:runlocal", {"seed": 0}, 5)]

  def evaluate(run, config, run_dir, record):
    del config, run_dir, record
    calls.append(run.name)
    return {"evaluated": True}

  def write_report(records, extras, out, meta):
    del extras
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "REPORT.json"), "w") as f:
      json.dump({"records": records, "meta": meta}, f)
    return out

  study.SCALES, study.plan, study.evaluate, study.write_report = ("default",), plan, evaluate, write_report
  return study


def test_run_cache_overrides_and_report_dir(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(launcher, "load_study", lambda name: _fake_study(calls))
  wd = str(tmp_path / "w")
  args = ["fake", "--workdir", wd, "--config.optimizer.learning_rate=0.002"]
  assert launcher.main(args) == 0
  record = json.load(open(os.path.join(wd, "runs", "lm", "record.json")))
  assert record["overrides"] == ["optimizer.learning_rate=0.002"] and record["evaluated"]
  assert json.load(open(os.path.join(wd, "runs", "lm", "config.json")))["optimizer"]["learning_rate"] == 0.002
  report = json.load(open(os.path.join(wd, "report", "REPORT.json")))
  assert "optimizer.learning_rate=0.002" in report["meta"]["overrides"] and report["meta"]["git"]
  assert os.path.exists(os.path.join(wd, "report", "results.json"))
  assert not any(wd in c for c in report["meta"]["commands"])   # the report calls the workdir "W"
  published = json.load(open(os.path.join(wd, "report", "results.json")))["runs"]
  assert published[0]["command"].split("--workdir ")[1].startswith("W/runs/lm")
  # A finished run is never retrained (train.run would fail here), nor evaluated again.
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("retrained a finished run"))
  assert launcher.main(args + ["--out", str(tmp_path / "r")]) == 0 and calls == ["lm"]
  # Different overrides on the same workdir: one line, exit 2.
  assert launcher.main(["fake", "--workdir", wd]) == 2


def test_shell_round_trips_the_invocation():
  a, ov = launcher.parse(["simsiam", "--workdir", "W", "--seeds", "2", "--scale", "tiny", "--processes", "2",
                          "--config.seed=3"])
  cmd = launcher._shell(a, ov, processes=1, shard="1/2")  # pylint: disable=protected-access
  assert cmd == ["python", "-m", "experiments", "simsiam", "--workdir", "W", "--seeds", "2", "--scale=tiny",
                 "--shard=1/2", "--config.seed=3"]
  assert launcher.parse(cmd[3:]) [0].shard == "1/2"


@pytest.mark.slow
@pytest.mark.parametrize("study,figure", [("simsiam", "fig_curves.png"), ("lion", "fig_lion.png")])
def test_tiny_study_end_to_end_leaves_the_checkout_clean(tmp_path, study, figure):
  """The CI form of a study: `--scale tiny` trains, evaluates and reports in the workdir only."""
  before = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
  subprocess.run([sys.executable, "-m", "experiments", study, "--workdir", str(tmp_path), "--scale", "tiny"],
                 cwd=REPO, check=True, timeout=600)
  text = open(tmp_path / "report" / "REPORT.md").read()
  assert "## Claim checklist" in text and "Provenance" in text and (tmp_path / "report" / figure).exists()
  after = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
  assert after == before


def test_processes_shard_stage_by_stage(monkeypatch):
  """--processes N: N shard subprocesses per stage, a later stage only after every earlier one finished."""
  calls = []

  class FakeProc:
    def __init__(self, cmd, cwd):
      del cwd
      calls.append(cmd)

    def wait(self):
      return 0

  monkeypatch.setattr(launcher.subprocess, "Popen", FakeProc)
  a, ov = launcher.parse(["mlm_dropout", "--workdir", "W", "--processes", "2", "--config.seed=1"])
  launcher.spawn_shards(a, ov, [r.stage for r in launcher.load_study("mlm_dropout").plan()])
  shards = [(c[c.index("mlm_dropout") + 1:]) for c in calls]
  assert [[x for x in s if x.startswith(("--shard", "--stage"))] for s in shards] == [
      ["--shard=0/2", "--stage=0"], ["--shard=1/2", "--stage=0"], ["--shard=0/2", "--stage=1"],
      ["--shard=1/2", "--stage=1"]]
  assert all("--config.seed=1" in s and not any(x.startswith("--processes") for x in s) for s in shards)


def test_run_overrides_apply_before_the_users():
  run = launcher.Run("x", "configs/length_extrapolation/rope.py:scale=tiny",
                     overrides=("max_checkpoints_to_keep=7", "checkpoint_every_steps=2"))
  config = launcher.load_run_config(run, ["checkpoint_every_steps=3"])
  assert config.max_checkpoints_to_keep == 7 and config.checkpoint_every_steps == 3


def test_extras_are_computed_once_per_scale(tmp_path):
  """A workdir that ran the default and then `full` reports `full` with `full`'s extras, each computed once."""
  calls = []
  study = types.SimpleNamespace(extras=lambda workdir, scale: calls.append(scale) or {"scale": scale})
  for scale in ("default", "full", "default", "full"):
    assert launcher.study_extras(study, str(tmp_path), scale)["scale"] == scale
  assert calls == ["default", "full"]
  assert sorted(os.listdir(tmp_path)) == ["extras.full.json", "extras.json"]


def test_report_keeps_the_training_command_with_its_processes(tmp_path, monkeypatch):
  """--processes N trains, then --report_only (over W, or over the published results.json) reports: every
  footer's training command still says --processes N, and its wall-time estimate is that of N processes."""
  monkeypatch.setattr(launcher, "load_study", lambda name: _fake_study([]))
  monkeypatch.setattr(launcher, "spawn_shards", lambda *args: None)
  def run_one(study, run, workdir, overrides):
    del study
    record = dict(run.labels, name=run.name, overrides=list(overrides), wall_time_s=1.0)
    launcher._write_json(os.path.join(workdir, "runs", run.name, "record.json"), record)  # pylint: disable=protected-access
    return record
  monkeypatch.setattr(launcher, "run_one", run_one)
  wd = str(tmp_path / "w")
  assert launcher.main(["fake", "--workdir", wd, "--processes", "2"]) == 0
  assert launcher.main(["fake", "--workdir", wd, "--report_only", "--out", str(tmp_path / "a")]) == 0
  assert launcher.main(["fake", "--report_only", "--results", str(tmp_path / "a" / "results.json"),
                        "--out", str(tmp_path / "b")]) == 0
  walls = set()
  for out in (os.path.join(wd, "report"), tmp_path / "a", tmp_path / "b"):
    meta = json.load(open(os.path.join(out, "REPORT.json")))["meta"]
    assert meta["commands"][0] == "python -m experiments fake --workdir W --processes=2", out
    assert len(meta["commands"]) == (1 if out == os.path.join(wd, "report") else 2)
    walls.add(meta["wall"].split(";")[0])
  assert len(walls) == 1, walls


def test_a_closed_pipe_ends_quietly(tmp_path):
  """`python -m experiments STUDY --dry_run | head -3`: the reader leaves early; no BrokenPipe traceback."""
  read, write = os.pipe()
  os.close(read)   # the reader is gone before the first line
  try:
    p = subprocess.run([sys.executable, "-m", "experiments", "simsiam", "--workdir", str(tmp_path), "--dry_run",
                        "--scale", "tiny"], cwd=REPO, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300)
  finally:
    os.close(write)
  assert p.returncode == 1 and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_seed_major_orders_seeds_and_plans_a_repeated_run_once():
  make = lambda setting, seed: launcher.Run(launcher.slug(f"{setting},seed={seed}"), "c.py")
  settings = [("x=1", 2), ("x=2", 1), ("x=1", 1)]   # the third repeats the first setting
  assert [r.name for r in launcher.seed_major(settings, None, make)] == ["x1_seed0", "x2_seed0", "x1_seed1"]
  assert [r.name for r in launcher.seed_major(settings, 2, make)] == ["x1_seed0", "x2_seed0", "x1_seed1",
                                                                     "x2_seed1"]


def test_portable_renames_whole_workdir_paths_only():
  """A short relative --workdir names W where it is a path (given or absolute), never inside other words."""
  cmd = (f"python -m kexue_jax.main --config c.py:wd=0.3,init={os.path.abspath('w')}/runs/pt --workdir w/runs/x "
         "--config.w=1")
  assert launcher._portable(cmd, "w") == (  # pylint: disable=protected-access
      "python -m kexue_jax.main --config c.py:wd=0.3,init=W/runs/pt --workdir W/runs/x --config.w=1")
  assert launcher._portable("--workdir /tmp/a/b/runs/x", "/tmp/a/b/") == "--workdir W/runs/x"  # pylint: disable=protected-access
  assert launcher._portable("--workdir /tmp/a/b", None) == "--workdir /tmp/a/b"  # pylint: disable=protected-access


def test_results_json_puts_number_lists_on_one_line_and_round_trips(tmp_path):
  nan, inf = float("nan"), float("inf")
  obj = {"acc": [0.5, 1, -3e-05, None, nan, inf], "nested": [[1, 2], [3]], "runs": [{"q": [0.25]}], "empty": [],
         "flags": [True, False], "text": "a [\n1] b --x=[1, 2]"}
  path = str(tmp_path / "results.json")
  launcher._write_json(path, obj)  # pylint: disable=protected-access
  text = open(path).read()
  assert '"acc": [0.5,1,-3e-05,null,NaN,Infinity]' in text and "[1,2]" in text and '"q": [0.25]' in text
  assert '"text": "a [\\n1] b --x=[1, 2]"' in text   # strings are never rewritten
  back = json.loads(text)
  assert json.dumps(back) == json.dumps(obj) and not os.path.exists(path + ".tmp")


def test_a_preempted_run_writes_no_record_and_stops(tmp_path, monkeypatch):
  """train.run checkpoints and returns on SIGTERM: the launcher must not record that half-trained run as finished
  (two R-Drop runs stopped at the end of a session were once reported with an empty evaluation); a run signalled
  at its last step has finished and is recorded."""
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  study, wd = _fake_study([]), str(tmp_path / "w")
  run = study.plan()[0]
  total = launcher.load_run_config(run, ()).num_train_steps
  for preempted in ("SIGTERM", None):   # stopped early, by a signal or not
    monkeypatch.setattr(train, "run", lambda config, wd, p=preempted: {"step": 3, "preempted": p, "train": {},
                                                                       "eval": {}})
    with pytest.raises(SystemExit, match=f"at step 3 of {total}; .*rerun the same command to resume"):
      launcher.run_one(study, run, wd, ())
    assert not os.path.exists(os.path.join(wd, "runs", "lm", "record.json"))
  monkeypatch.setattr(train, "run", lambda config, wd: {"step": total, "preempted": "SIGTERM",
                                                        "train": {"loss": 1.0}, "eval": {"loss": 1.1}})
  record = launcher.run_one(study, run, wd, ())
  assert record["step"] == total and record["train"] == {"loss": 1.0}
  assert os.path.exists(os.path.join(wd, "runs", "lm", "record.json"))
