r"""The one study launcher: plan, run cache, sharding over processes, timing, results.json, the report.

  python -m experiments --list
  python -m experiments STUDY --workdir W [--dry_run] [--report_only] [--processes N] [--shard i/n]
                              [--seeds K] [--scale S] [--out DIR] [--config.key=value ...]
  python -m experiments STUDY --report_only --results experiments/STUDY/results.json --out experiments/STUDY

A study is ``experiments/<study>/study.py`` with ``SCALES`` (the --scale names), ``plan(seeds, scale) -> [Run]``,
optionally ``evaluate(run, config, run_dir, record) -> dict`` (checkpoint evaluations added to the run's record),
``extras(workdir, scale) -> dict`` (study-level numbers computed once after the runs), and ``write_report(records,
extras, out_dir, meta) -> path``.

Every run is ``kexue_jax.train.run`` on ``run.config`` (``path.py:arg``) with the ``--config.*`` overrides applied
(recorded in each run and in the report). A run whose ``W/runs/<name>/record.json`` exists is never retrained; an
interrupted one resumes from its checkpoints. Reports go to ``W/report/`` unless ``--out`` says otherwise: only an
explicit ``--out experiments/<study>`` refreshes the committed copy.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

from experiments.framework import report as report_lib

EXPERIMENTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(EXPERIMENTS)
TRAIN_COMMAND = "train_command.json"   # in W: the command that trained it (a later --report_only shows it)


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a plan: ``config`` is ``path.py[:arg]`` relative to the repo root."""
  name: str
  config: str
  labels: dict = dataclasses.field(default_factory=dict)   # e.g. {"variant": "simsiam", "seed": 0}
  est_s: float = 60.0                                      # wall-time estimate for --dry_run
  stage: int = 0          # runs of a later stage start after every earlier one (e.g. fine-tuning after
                          # pre-training); "{workdir}" in config is the study's workdir
  overrides: tuple = ()   # the study's own key=value settings of this run (e.g. checkpoint cadence), applied
                          # before the user's --config.* overrides


DEFAULTS = dict(scale="default", shard="0/1", processes=1, stage=None)   # flags a command line leaves out


def slug(arg: str) -> str:
  """A run's name from its config argument string: "opt=lion,lr=0.001,seed=0" -> "optlion_lr0.001_seed0"."""
  return arg.replace(",", "_").replace("=", "")


def seed_major(settings: Sequence[tuple[Any, int]], seeds: int | None,
               make: Callable[[Any, int], Run]) -> list[Run]:
  """The runs of (setting, seeds) pairs, seed 0 of every setting first, then the further seeds (an interrupted
  study still covers every setting); ``seeds`` given: that many of every setting. ``make(setting, seed)`` builds
  a run; a run already planned (same name) is planned once."""
  runs: dict[str, Run] = {}
  for seed in range(max((n for _, n in settings), default=0) if seeds is None else seeds):
    for setting, n in settings:
      if seeds is not None or seed < n:
        run = make(setting, seed)
        runs.setdefault(run.name, run)
  return list(runs.values())


class UsageError(ValueError):
  """Bad command-line input: reported in one line with exit code 2, before any compute."""


def list_studies() -> list[str]:
  return sorted(d for d in os.listdir(EXPERIMENTS) if os.path.exists(os.path.join(EXPERIMENTS, d, "study.py")))


def load_study(name: str):
  if name not in list_studies():
    raise UsageError(f"unknown study {name!r}; choose one of {list_studies()} (python -m experiments --list).")
  return importlib.import_module(f"experiments.{name}.study")


def config_spec(run: Run, workdir: str | None) -> str:
  return run.config.replace("{workdir}", os.path.abspath(workdir or "W"))


def load_run_config(run: Run, overrides: Sequence[str], workdir: str | None = None):
  from kexue_jax import config_lib  # pylint: disable=g-import-not-at-top
  path, arg = config_lib.split_spec(config_spec(run, workdir))
  spec = os.path.join(REPO, path) + (f":{arg}" if arg is not None else "")
  config = config_lib.load_config(spec, list(run.overrides) + list(overrides))
  config.progress_bar = False
  return config


# A list of numbers written across lines in indented JSON: "[" then a newline (no JSON string holds a raw newline,
# so this never matches inside one), numbers / null / NaN / Infinity and commas, "]".
_NUMBER_LIST = re.compile(r"\[\n[-+0-9.eE,\sNaIfinityul]*?\]")


def _write_json(path: str, obj: Any) -> None:
  """Atomic (report.save_text), indented, with each list of numbers on one line (per-window accuracies would
  otherwise take a line per number and double the file). Keys keep their order (a study's tables follow it, e.g.
  the methods of a length-extrapolation record; sorting would list them alphabetically)."""
  text = _NUMBER_LIST.sub(lambda m: "[" + "".join(m.group(0)[1:-1].split()) + "]",
                          json.dumps(obj, indent=1, default=float))
  report_lib.save_text(os.path.dirname(path) or ".", text, os.path.basename(path))


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def cached_record(run: Run, workdir: str, overrides: Sequence[str]) -> dict | None:
  path = os.path.join(workdir, "runs", run.name, "record.json")
  if not os.path.exists(path):
    return None
  record = _read_json(path)
  if list(record.get("overrides", [])) != list(overrides):
    raise UsageError(f"{path} was trained with overrides {record.get('overrides', [])}, not {list(overrides)}; "
                     "use another --workdir for a different configuration.")
  return record


def run_one(study, run: Run, workdir: str, overrides: Sequence[str]) -> dict:
  """Trains (resuming from checkpoints) and evaluates one run, unless its record exists; returns the record. A run
  stopped before its last step (a signal: train.run checkpoints and returns) writes no record and ends the process,
  so the next invocation resumes it instead of reporting a half-trained model; one signalled at its last step has
  finished (its last evaluation and checkpoint ran) and is recorded."""
  record = cached_record(run, workdir, overrides)
  if record is not None:
    return record
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  wd = os.path.join(workdir, "runs", run.name)
  config = load_run_config(run, overrides, workdir)
  spec = config_spec(run, workdir)
  record = dict(run.labels, name=run.name, config=spec, overrides=list(overrides),
                command=" ".join([f"python -m kexue_jax.main --config {spec} --workdir {wd}"] +
                                 [f"--config.{o}" for o in (*run.overrides, *overrides)]))
  t0 = time.time()
  try:
    out = train.run(config, wd)
    if (out.get("step") or 0) < config.num_train_steps:   # stopped by a signal: checkpointed, not finished
      raise SystemExit(f"[{run.name}] stopped by {out.get('preempted') or 'an interruption'} at step "
                       f"{out.get('step')} of {config.num_train_steps}; no record written: rerun the same command "
                       "to resume it from its checkpoint.")
    record.update(step=out.get("step"), num_params=out.get("num_params"), train=out.get("train", {}),
                  eval={k.split("/", 1)[-1]: v for k, v in out.get("eval", {}).items()})
  except train.NonFiniteError as e:  # a diverged run is a result, not a crash of the study
    record.update(error=str(e), train={}, eval={})
  record["train_time_s"] = round(time.time() - t0, 2)
  if hasattr(study, "evaluate"):
    record.update(study.evaluate(run, config, wd, record))
  record["eval_time_s"] = round(time.time() - t0 - record["train_time_s"], 2)
  # The machine may be shared: the 1-minute load average at the end of the run says how much.
  record.update(wall_time_s=round(time.time() - t0, 2), load_avg_1min=round(os.getloadavg()[0], 2))
  _write_json(os.path.join(wd, "record.json"), record)
  print(f"[{study.__name__.split('.')[1]}] {run.name}: {record['wall_time_s']:.0f} s"
        + (f" FAILED: {record['error'][:100]}" if "error" in record else ""), flush=True)
  return record


def study_extras(study, workdir: str, scale: str) -> dict:
  """Study-level numbers (e.g. raw-input baselines), computed once per scale into W/extras[.scale].json.

  Keyed by scale: a study's extras may depend on it (the MLM study benchmarks pre-training only at `full`),
  and a workdir that ran the default and then `full` must not report `full` with the default's extras.
  """
  if not hasattr(study, "extras"):
    return {}
  path = os.path.join(workdir, "extras.json" if scale == "default" else f"extras.{scale}.json")
  if not os.path.exists(path):
    t0 = time.time()
    _write_json(path, dict(study.extras(workdir, scale), time_s=round(time.time() - t0, 2)))
  return _read_json(path)


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
  p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("study", nargs="?", help="a folder of experiments/ with a study.py")
  p.add_argument("--list", action="store_true", help="list the studies")
  p.add_argument("--workdir", help="run directories (reused when present)")
  p.add_argument("--dry_run", action="store_true", help="print the runs and the wall-time estimate only")
  p.add_argument("--report_only", action="store_true", help="report from finished runs; train nothing")
  p.add_argument("--results", help="with --report_only: a results.json whose recorded runs replace W/runs")
  p.add_argument("--processes", type=int, default=1, help="train in N subprocesses (shards), then report")
  p.add_argument("--shard", default="0/1", help="i/n: train runs i, i+n, ... only, write no report")
  p.add_argument("--stage", type=int, default=None, help=argparse.SUPPRESS)  # set by --processes
  p.add_argument("--seeds", type=int, default=None, help="seeds per variant (default: the study's)")
  p.add_argument("--scale", default="default", help="the study's scale (tiny: a smoke test in under 2 min)")
  p.add_argument("--out", help="report folder (default W/report; experiments/<study> refreshes the committed copy)")
  a, rest = p.parse_known_args(argv)
  bad = [x for x in rest if not (x.startswith("--config.") and "=" in x)]
  shard = re.fullmatch(r"(\d+)/(\d+)", a.shard)
  errors = {  # message: whether it applies (p.error exits at the first that does)
      f"unrecognised arguments {bad}; config overrides are --config.key=value.": bad,
      "name a study (python -m experiments --list) or pass --list.": not a.list and not a.study,
      "--workdir is required (or --report_only --results FILE).": a.study and not a.workdir and not a.results,
      "--results reads recorded runs: pass it with --report_only.": a.results and not a.report_only,
      f"--shard must be i/n with 0 <= i < n, got {a.shard!r}.": not shard or int(shard[1]) >= int(shard[2]),
      f"--processes must be >= 1, got {a.processes}.": a.processes < 1,
      f"--seeds must be >= 1 (omit it for the study's default), got {a.seeds}.": a.seeds is not None and a.seeds < 1}
  for message, applies in errors.items():
    if applies:
      p.error(message)
  return a, [x[len("--config."):] for x in rest]


def _shell(a: argparse.Namespace, overrides: Sequence[str], **change) -> list[str]:
  """The command line of this invocation (with ``change`` applied), for subprocesses and the report."""
  d = dict(vars(a), **change)
  cmd = ["python", "-m", "experiments", d["study"]]
  cmd += [x for k in ("workdir", "results", "seeds", "out") if d[k] is not None for x in (f"--{k}", str(d[k]))]
  cmd += [f"--{k}" for k in ("dry_run", "report_only") if d[k]]
  cmd += [f"--{k}={d[k]}" for k, v in DEFAULTS.items() if d[k] != v]
  return cmd + [f"--config.{o}" for o in overrides]


def spawn_shards(a: argparse.Namespace, overrides: Sequence[str], stages: Sequence[int]) -> None:
  """Trains the plan in ``a.processes`` subprocesses, one shard each, stage after stage; raises if any fails."""
  for stage in sorted(set(stages)):
    procs = [subprocess.Popen([sys.executable] + _shell(a, overrides, processes=1, shard=f"{i}/{a.processes}",
                                                        stage=stage)[1:], cwd=REPO) for i in range(a.processes)]
    codes = [p.wait() for p in procs]
    if any(codes):
      raise RuntimeError(f"shard processes exited with {codes}; rerun to resume (finished runs are kept).")


def collect(a, study, runs, overrides) -> tuple[list[dict], dict]:
  """The records and extras to report: from --results, from W/runs (report_only), or by running the plan."""
  if a.results:
    res = _read_json(a.results)
    if not isinstance(res.get("runs"), list):
      raise UsageError(f"{a.results} is not a launcher results.json (no list of runs); pass one that "
                       "`python -m experiments STUDY --out DIR` wrote.")
    return res["runs"], res.get("extras", {})
  records = []
  for k, run in enumerate(runs):
    rec = cached_record(run, a.workdir, overrides)
    if rec is None and not a.report_only:
      print(f"[{a.study}] run {k + 1}/{len(runs)}: {run.name}", flush=True)
      rec = run_one(study, run, a.workdir, overrides)
    if rec is not None:
      records.append(rec)
  return records, study_extras(study, a.workdir, a.scale) if records or not a.report_only else {}


def main(argv: Sequence[str] | None = None) -> int:
  a, overrides = parse(list(sys.argv[1:] if argv is None else argv))
  if a.list:
    for name in list_studies():
      print(f"{name:24s} {(load_study(name).__doc__ or '').strip().splitlines()[0]}")
    return 0
  try:
    study = load_study(a.study)
    if a.scale not in study.SCALES:
      raise UsageError(f"{a.study} scales are {', '.join(study.SCALES)}; got {a.scale!r}.")
    runs = study.plan(seeds=a.seeds, scale=a.scale)
    if not a.results:
      for run in runs:  # bad overrides / arguments fail here, before any compute
        load_run_config(run, overrides, a.workdir)
  except ValueError as e:
    return _usage_error(e)
  est = sum(r.est_s for r in runs) / a.processes
  print(f"[{a.study}] {len(runs)} runs, estimated {est / 60:.1f} min wall", flush=True)
  if a.dry_run:
    for r in runs:
      print(f"  {r.name:40s} ~{r.est_s:.0f} s  {r.config}")
    return 0
  i, n = (int(x) for x in a.shard.split("/"))
  if n > 1:
    for run in [r for r in runs if a.stage is None or r.stage == a.stage][i::n]:
      run_one(study, run, a.workdir, overrides)
    return 0
  t0 = time.time()
  try:
    if not a.report_only:   # the training command as the report shows it, --processes N included
      _write_json(os.path.join(a.workdir, TRAIN_COMMAND), " ".join(_shell(a, overrides, out=None, workdir="W")))
    if a.processes > 1 and not a.report_only:
      spawn_shards(a, overrides, [r.stage for r in runs])
    records, extras = collect(a, study, runs, overrides)
  except UsageError as e:
    return _usage_error(e)
  meta = report_meta(a, overrides, records, est, time.time() - t0)
  # The records as published: their commands name the workdir W too.
  records = [dict(r, **{k: _run_cmd(_portable(r[k], a.workdir)) for k in ("command", "config")
                        if isinstance(r.get(k), str)}) for r in records]
  out = a.out or os.path.join(a.workdir, "report")
  _write_json(os.path.join(out, "results.json"), {"study": a.study, "runs": records, "extras": extras,
                                                   "meta": meta})
  print(f"[{a.study}] wrote {study.write_report(records, extras, out, meta)}")
  return 0


def _usage_error(e: ValueError) -> int:
  print(f"python -m experiments: error: {e}", file=sys.stderr)
  return 2


def _portable(cmd: str, workdir: str | None) -> str:
  """The report names the workdir "W": a path on the machine that trained means nothing to a reader. Only whole
  paths are renamed (as given or absolute, e.g. ``init={workdir}/runs/x``): ``--workdir w`` leaves ``wd=0.3``."""
  for w in sorted({workdir.rstrip("/"), os.path.abspath(workdir)} if workdir else (), key=len, reverse=True):
    cmd = re.sub(rf"(?<![^\s=:,]){re.escape(w)}(?![^\s/,])", "W", cmd)
  return cmd


def _run_cmd(cmd: str) -> str:
  """A recorded run's command names the workdir it was trained in (with --results: another machine's path)."""
  return re.sub(r"--workdir \S*/runs/", "--workdir W/runs/", cmd)


def report_meta(a: argparse.Namespace, overrides: Sequence[str], records: Sequence[dict], est_s: float,
                invocation_s: float) -> dict:
  """The footer's facts: machine and versions, where the runs were trained, the overrides, the commands (the
  training one as its invocation recorded it, --processes N included), estimated vs measured wall time."""
  prev = (_read_json(a.results).get("meta") or {}) if a.results else {}
  recorded = os.path.join(a.workdir or "", TRAIN_COMMAND)   # written by the training invocation (main)
  train_cmd = ((prev.get("commands") or [None])[0] if a.results else
               _read_json(recorded) if os.path.exists(recorded) else None)
  train_cmd = train_cmd or " ".join(_shell(a, overrides, report_only=False, results=None, out=None, workdir="W"))
  measured = sum(r.get("wall_time_s", 0.0) for r in records)
  trained = re.search(r"--processes[= ](\d+)", train_cmd)   # the estimate for the processes that trained
  est_s *= a.processes / int(trained.group(1)) if trained else 1
  here = report_lib.machine()   # the report is made here; with --results the runs were trained where it says
  trained_on = prev.get("trained_on", f"not recorded (runs from {a.results})") if a.results else here["machine"]
  return dict(here, trained_on=trained_on, overrides=", ".join(f"`--config.{o}`" for o in overrides),
              commands=[train_cmd] + [_portable(" ".join(_shell(a, overrides)), a.workdir)] * a.report_only,
              wall=f"estimated {est_s / 60:.1f} min before the run (--dry_run); measured {measured / 60:.1f} min "
                   f"summed over {len(records)} runs (training + evaluation); this invocation "
                   f"{invocation_s / 60:.1f} min (reused runs cost nothing)",
              example_run=_run_cmd(next((r["command"] for r in records if r.get("command")), "")))
