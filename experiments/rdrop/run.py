r"""R-Drop study (issue #7): trains every run on MNIST-1D, then writes REPORT.md, plots and results.json.

  python -m experiments.rdrop.run --workdir /tmp/kexue/rdrop                 # the default study
  python -m experiments.rdrop.run --workdir /tmp/kexue/rdrop --dry_run       # the plan and its time estimate
  python -m experiments.rdrop.run --workdir /tmp/kexue/rdrop --report_only   # report from finished runs
  python -m experiments.rdrop.run --workdir W --processes 1                  # one training process

Runs are trained by `--processes` (default 2) subprocesses, `--shard i/n` each; the report is written when
they are done.

Every run is `kexue_jax.train.run` on configs/rdrop/mnist1d.py with one argument string (printed in the
report, so any run can be repeated by hand with `python -m kexue_jax.main`). A run whose WORKDIR/runs/<name>/
record.json exists is reused, so an interrupted study resumes. Parts (`--parts`):

  supervised  MLP: dropout {0.1, 0.3} x alpha {0 (plain dropout, one pass), 1, 4}; CNN: dropout 0.3 x
              alpha {0, 4} (`--full_grid`: the CNN gets the MLP's grid); 1000 training examples
  data        each model with all 4000 training examples, dropout 0.3, alpha {0, 4}
  alpha       MLP, 1000 examples, dropout 0.3, alpha 64 (with the supervised part: the sweep 0, 1, 4, 64)
  semi        (`--semi_models`, default MLP) the first 40 (1%) / 200 (5%) training examples labelled, dropout
              0.3: labelled-only plain (alpha 0); Su's semi-supervised setup, plain CE on the labelled examples
              plus the KL-only term (beta 4) on the other 3960 / 3800; and, to separate the two effects,
              labelled-only R-Drop (alpha 4)

each with `--seeds` seeds (default 5: the report's accuracy verdicts need 5). Default: 95 runs, measured
25.3 min of wall-clock time with 2 processes on the 2-core CPU while other jobs shared it (load ~10).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(REPO, "configs", "rdrop", "mnist1d.py")
PARTS = ("supervised", "data", "alpha", "semi")

# Measured wall seconds per run (train.run in one process, 2000 steps, 2-core CPU shared with other jobs, load
# average 4-5), by model and kind: "single" = plain dropout (alpha 0, one pass), "two" = R-Drop (two
# passes), "semi" = two passes over labelled + unlabelled rows. Used only for the --dry_run estimate; the report
# records the real times. MLP: 11.8 / 13.3-16.6 / 14.3 s; CNN: 29.5 / 44.2 / 51.7 s (the CNN semi run was
# measured before CNN1D had dropout).
EST_SECONDS = {("mlp", "single"): 12.0, ("mlp", "two"): 15.0, ("mlp", "semi"): 15.0,
               ("cnn", "single"): 30.0, ("cnn", "two"): 44.0, ("cnn", "semi"): 55.0}
# Supervised grid per model: (dropout rates, alphas).
GRID = {"mlp": ((0.1, 0.3), (0, 1, 4)), "cnn": ((0.3,), (0, 4))}


def run_arg(model: str, alpha: float, dropout: float, *, train_size: int = 1000, labelled: int = 0,
            unlabelled: bool = True, seed: int = 0, steps: int = 0) -> str:
  """The configs/rdrop/mnist1d.py argument string of one run (alpha 0 = plain single-pass dropout; with
  unlabelled data the KL term on it has weight beta = 4, the config's default)."""
  two = alpha != 0 or (labelled and unlabelled)  # the unlabelled KL term needs two passes even at alpha 0
  parts = [f"model={model}", f"alpha={alpha:g}", f"dropout={dropout:g}", f"passes={'duplicate' if two else 'single'}"]
  parts += [f"labelled={labelled}", f"unlabelled={unlabelled}"] if labelled else [f"train_size={train_size}"]
  parts += [f"seed={seed}"] + ([f"steps={steps}"] if steps else [])
  return ",".join(parts)


def plan(seeds: int, parts=PARTS, models=("mlp", "cnn"), semi_models=("mlp",), steps: int = 0,
         full_grid: bool = False) -> list[dict]:
  """The study's runs: dicts of the run's fields (report.py's record keys) plus `arg`."""
  specs = []

  def add(model, alpha, dropout, train_size=1000, labelled=0, unlabelled=False):
    for seed in range(seeds):
      specs.append(dict(model=model, alpha=float(alpha), dropout=float(dropout),
                        train_size=labelled or train_size, labelled=labelled, unlabelled=unlabelled, seed=seed,
                        arg=run_arg(model, alpha, dropout, train_size=train_size, labelled=labelled,
                                    unlabelled=unlabelled, seed=seed, steps=steps)))

  for model in models:
    if "supervised" in parts:
      dropouts, alphas = GRID["mlp" if full_grid else model]
      for dropout in dropouts:
        for alpha in alphas:
          add(model, alpha, dropout)
    if "data" in parts:
      for alpha in (0, 4):
        add(model, alpha, 0.3, train_size=4000)
  if "alpha" in parts:
    add("mlp", 64, 0.3)
  if "semi" in parts:
    for model in semi_models:
      for labelled in (40, 200):
        add(model, 0, 0.3, labelled=labelled, unlabelled=False)
        add(model, 4, 0.3, labelled=labelled, unlabelled=False)
        add(model, 0, 0.3, labelled=labelled, unlabelled=True)
  names = [s["arg"] for s in specs]
  assert len(names) == len(set(names)), "duplicate runs in the plan"
  return specs


def run_name(arg: str) -> str:
  return arg.replace(",", "_").replace("=", "")


def estimate_seconds(specs) -> float:
  def kind(s):
    if s["labelled"] and s["unlabelled"]:
      return "semi"
    return "single" if s["alpha"] == 0 else "two"
  return sum(EST_SECONDS[(s["model"], kind(s))] for s in specs)


def load_config(arg: str):
  spec = importlib.util.spec_from_file_location("rdrop_mnist1d_config", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def train_one(spec: dict, workdir: str, log=print) -> dict:
  """Trains (or reuses) one run; returns its record (also WORKDIR/runs/<name>/record.json)."""
  wd = os.path.join(workdir, "runs", run_name(spec["arg"]))
  path = os.path.join(wd, "record.json")
  if os.path.exists(path):
    with open(path) as f:
      record = json.load(f)
    if "finished_unix" not in record:  # written before runs were timestamped: the file's mtime is its end
      record["finished_unix"] = round(os.path.getmtime(path), 1)
      record["started_unix"] = round(record["finished_unix"] - record["wall_time_s"], 1)
    return record
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  config = load_config(spec["arg"])
  config.progress_bar = False
  t0 = time.time()
  record = {k: v for k, v in spec.items() if k != "arg"}
  record.update(name=run_name(spec["arg"]), started_unix=round(t0, 1),
                command=f"python -m kexue_jax.main --config configs/rdrop/mnist1d.py:{spec['arg']} --workdir {wd}")
  try:
    out = train.run(config, wd)
  except train.NonFiniteError as e:  # a diverged run is a result (e.g. a huge alpha), not a crash of the study
    record.update(wall_time_s=round(time.time() - t0, 2), step=None, eval={}, train={}, error=str(e))
  else:
    record.update(wall_time_s=round(time.time() - t0, 2), step=out["step"], num_params=out["num_params"],
                  eval={k.split("/", 1)[1]: v for k, v in out["eval"].items()}, train=out["train"])
  # The machine may be shared: the 1-minute load average at the end of the run says how much (2 = both cores).
  record.update(finished_unix=round(time.time(), 1), load_avg_1min=round(os.getloadavg()[0], 2))
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)
  if "error" in record:
    log(f"[rdrop] {record['name']}: FAILED ({record['error'][:120]})")
  else:
    log(f"[rdrop] {record['name']}: acc {record['eval']['accuracy']:.3f}, "
        f"KL(P̄‖P0) {record['eval']['consistency_kl']:.4f}, {record['wall_time_s']:.1f} s")
  return record


def study_time_summary(records, invocation_s: float, report_only: bool) -> str:
  """How long the runs took: their wall-clock span (first start to last finish, so parallel processes count
  once), the sum of per-run times, and the machine's load while they ran."""
  total = sum(r["wall_time_s"] for r in records)
  out = f"Sum of per-run times {total / 60:.1f} min"
  timed = [r for r in records if "started_unix" in r]  # every record read through train_one has it
  if timed:
    span = max(r["finished_unix"] for r in timed) - min(r["started_unix"] for r in timed)
    out += f"; the runs trained within a {span / 60:.1f}-min wall-clock span (first start to last end)"
    loads = [r["load_avg_1min"] for r in timed if "load_avg_1min" in r]
    if loads:
      out += (f"; 1-min load average at the end of the {len(loads)} runs that recorded it: median "
              f"{np.median(loads):.1f}, max {max(loads):.1f} ({os.cpu_count()} cores: above that, other jobs "
              "shared the machine)")
  if not report_only:
    out += f". This invocation: {invocation_s / 60:.1f} min (runs reused from the workdir cost nothing)"
  return out + "."


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="run directories (reused when present)")
  p.add_argument("--out", default=HERE, help="where REPORT.md, plots and results.json go")
  p.add_argument("--seeds", type=int, default=5)
  p.add_argument("--parts", default=",".join(PARTS))
  p.add_argument("--models", default="mlp,cnn")
  p.add_argument("--semi_models", default="mlp")
  p.add_argument("--full_grid", action="store_true", help="every model gets the MLP's supervised grid")
  p.add_argument("--steps", type=int, default=0, help="override training steps (0: the config's 2000)")
  p.add_argument("--dry_run", action="store_true", help="print the plan and the time estimate only")
  p.add_argument("--report_only", action="store_true", help="report from the runs already in --workdir")
  p.add_argument("--processes", type=int, default=2, help="train in this many processes (one per CPU core: "
                 "a small model does not use two cores well), then write the report")
  p.add_argument("--shard", default="0/1", help="i/n: train only runs i, i+n, ... and write no report "
                 "(used by --processes; or by hand across machines, then --report_only)")
  a = p.parse_args(argv)
  parts = tuple(x for x in a.parts.split(",") if x)
  unknown = set(parts) - set(PARTS)
  if unknown:
    p.error(f"unknown --parts {sorted(unknown)}; choose from {PARTS}")
  specs = plan(a.seeds, parts, tuple(x for x in a.models.split(",") if x),
               tuple(x for x in a.semi_models.split(",") if x), a.steps, a.full_grid)
  est = estimate_seconds(specs)
  print(f"[rdrop] {len(specs)} runs, estimated {est / 60:.0f} min at the measured per-run times")
  shard, num_shards = (int(x) for x in a.shard.split("/"))
  if a.dry_run:
    for s in specs:
      print("  ", s["arg"])
    return
  if num_shards > 1:
    for spec in specs[shard::num_shards]:
      print(f"[rdrop] shard {shard}/{num_shards}: {spec['arg']}", flush=True)
      train_one(spec, a.workdir)
    return
  t0 = time.time()
  if a.processes > 1 and not a.report_only:  # shards in subprocesses; the records they write are read below
    base = [sys.executable, "-m", "experiments.rdrop.run"] + [x for x in (argv if argv is not None else sys.argv[1:])
                                                           if not x.startswith("--processes")]
    procs = [subprocess.Popen(base + [f"--shard={i}/{a.processes}"], cwd=REPO) for i in range(a.processes)]
    failed = [i for i, pr in enumerate(procs) if pr.wait() != 0]
    if failed:
      raise SystemExit(f"[rdrop] shard(s) {failed} failed (see their output above); rerun the same command to "
                       "resume: finished runs are reused.")
  records = []
  for i, spec in enumerate(specs):
    path = os.path.join(a.workdir, "runs", run_name(spec["arg"]), "record.json")
    if a.report_only and not os.path.exists(path):
      continue
    print(f"[rdrop] run {i + 1}/{len(specs)}: {spec['arg']}", flush=True)
    records.append(train_one(spec, a.workdir))
  from experiments.rdrop import report  # pylint: disable=g-import-not-at-top
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, "results.json"), "w") as f:
    json.dump(records, f, indent=1, sort_keys=True)
  # The command that reproduces this report from scratch (with --report_only it is the same minus that flag).
  cmd = "python -m experiments.rdrop.run " + " ".join(x for x in (argv if argv is not None else sys.argv[1:])
                                                       if x != "--report_only")
  meta = {"summary": study_time_summary(records, time.time() - t0, a.report_only),
          "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
          "commands": [cmd]}
  path = report.write_report(records, a.out, meta=meta)
  print(f"[rdrop] wrote {path}")


if __name__ == "__main__":
  main()
