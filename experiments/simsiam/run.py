r"""SimSiam collapse study (issue #6): trains the ablations on MNIST-1D, evaluates checkpoints, writes REPORT.md.

  python -m experiments.simsiam.run --workdir /tmp/kexue/simsiam                 # the default study
  python -m experiments.simsiam.run --workdir /tmp/kexue/simsiam --dry_run       # the plan and its time estimate
  python -m experiments.simsiam.run --workdir /tmp/kexue/simsiam --report_only   # report from finished runs
  python -m experiments.simsiam.run --workdir W --shard 0/2 & python -m experiments.simsiam.run --workdir W --shard 1/2
                                                   # two processes (then --report_only)

Every run is `kexue_jax.train.run` on configs/simsiam/mnist1d.py with one argument string (printed in the
report, so any run can be repeated by hand with `python -m kexue_jax.main`). After training, each kept
checkpoint -- and the untrained initialisation (step 0) -- is evaluated (experiments/simsiam/evaluate.py:
kNN on backbone features at every checkpoint, linear probe at step 0 and at the end, collapse statistics of z
on the test set). A run whose WORKDIR/runs/<name>/record.json exists is reused, so an interrupted study
resumes. Runs (VARIANTS):

  simsiam           stop-gradient + predictor (lr decayed with the rest: the paper's Table 1 baseline)  x seeds
  no_stopgrad       the same without stop-gradient                                                       x seeds
  no_predictor      h = identity, stop-gradient kept                                           x extra_seeds
  frozen_predictor  predictor fixed at its random initialisation                               x extra_seeds
  constlr_predictor predictor with its own constant lr                                         x extra_seeds
  mean_target       Su's open question: target z(x_bar) (mean of K views), stop-gradient, no predictor
  mean_target_nosg  the same without stop-gradient (Su's literal proposal)                     x extra_seeds

plus the baselines: raw-input kNN / linear probe and the untrained network (step 0 of each run, BN
statistics of the training set). Default: 3 seeds for the main two, 1 for the others (11 runs).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(REPO, "configs", "simsiam", "mnist1d.py")

# variant -> configs/simsiam/mnist1d.py arguments.
VARIANTS = {
    "simsiam": "stopgrad=True,predictor=mlp",
    "no_stopgrad": "stopgrad=False,predictor=mlp",
    "no_predictor": "stopgrad=True,predictor=none",
    "frozen_predictor": "stopgrad=True,predictor=frozen",
    "constlr_predictor": "stopgrad=True,predictor=constlr",
    "mean_target": "stopgrad=True,predictor=none,target=mean_view",
    "mean_target_nosg": "stopgrad=False,predictor=none,target=mean_view",
}
MAIN = ("simsiam", "no_stopgrad")

# Wall seconds per run (training 500 steps + evaluating 6 checkpoints), for the --dry_run estimate only (the
# report records the real times). Measured in the first default study (2026-11-22) on the 2-core CPU shared with
# two other studies (load 5-13): 166-296 s of training per run at a median of 2 steps/s, 10-15 s of evaluation;
# windows with the CPU to ourselves ran at 20-35 steps/s, so an idle 2-core machine needs ~50-60 s per run.
# The estimate assumes the brief's "~2x slower than idle" sharing: ~120 s (view) / ~150 s (mean-view target).
EST_SECONDS = {"view": 120.0, "mean_view": 150.0}
EST_BASELINE_SECONDS = 10.0


def run_arg(variant: str, seed: int, steps: int = 0) -> str:
  return VARIANTS[variant] + f",seed={seed}" + (f",steps={steps}" if steps else "")


def plan(seeds: int = 3, extra_seeds: int = 1, variants=tuple(VARIANTS), steps: int = 0) -> list[dict]:
  """Seed 0 of every variant first, then the further seeds (an interrupted study still covers every row)."""
  unknown = sorted(set(variants) - set(VARIANTS))
  if unknown:
    raise ValueError(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}.")
  specs = []
  for seed in range(max(seeds, extra_seeds)):
    for v in variants:
      if seed < (seeds if v in MAIN else extra_seeds):
        specs.append(dict(variant=v, seed=seed, arg=run_arg(v, seed, steps)))
  return specs


def run_name(arg: str) -> str:
  return arg.replace(",", "_").replace("=", "")


def estimate_seconds(specs) -> float:
  return EST_BASELINE_SECONDS + sum(EST_SECONDS["mean_view" if "mean_view" in s["arg"] else "view"] for s in specs)


def load_config(arg: str):
  spec = importlib.util.spec_from_file_location("simsiam_mnist1d_config", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def read_train_curves(workdir: str) -> dict[str, list]:
  """Per logged step: loss, z_std, z_erank, h_std, h_erank, grad norms (metrics.jsonl)."""
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  keys = ("loss", "z_std", "z_erank", "h_std", "h_erank", "p_std", "grad_norm/encoder", "grad_norm/predictor")
  out: dict[str, list] = {"step": []}
  for rec in metrics_lib.read_metrics(workdir):
    if "train/loss" not in rec:
      continue
    out["step"].append(int(rec["step"]))
    for k in keys:
      out.setdefault(k, []).append(rec.get(f"train/{k}"))
  return out


_DATA_CACHE: dict = {}
_EVALUATORS: dict = {}


def _data(config):
  from experiments.simsiam import evaluate  # pylint: disable=g-import-not-at-top
  key = config.data.name
  if key not in _DATA_CACHE:
    _DATA_CACHE[key] = (evaluate.load_split(config, config.data.train_split),
                        evaluate.load_split(config, config.data.eval_split))
  return _DATA_CACHE[key]


def _evaluator(config):
  """One compiled Evaluator per network shape (the variants share it, which saves compilations)."""
  from experiments.simsiam import evaluate  # pylint: disable=g-import-not-at-top
  key = json.dumps({"model": config.model.to_dict(), "task": {k: v for k, v in config.task.to_dict().items()
                                                              if k in ("proj_hidden_dim", "proj_dim", "proj_layers",
                                                                       "pred_hidden_dim", "predictor")}},
                   sort_keys=True, default=str)
  if key not in _EVALUATORS:
    _EVALUATORS[key] = evaluate.Evaluator(config, *_data(config))
  return _EVALUATORS[key]


def train_one(spec: dict, workdir: str, log=print) -> dict:
  """Trains (or reuses) one run and evaluates its checkpoints; returns its record (also record.json)."""
  wd = os.path.join(workdir, "runs", run_name(spec["arg"]))
  path = os.path.join(wd, "record.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  config = load_config(spec["arg"])
  config.progress_bar = False
  record = {k: v for k, v in spec.items() if k != "arg"}
  record.update(name=run_name(spec["arg"]), arg=spec["arg"],
                command=f"python -m kexue_jax.main --config configs/simsiam/mnist1d.py:{spec['arg']} --workdir {wd}",
                proj_dim=int(config.task.proj_dim), steps=int(config.num_train_steps))
  t0 = time.time()
  try:
    out = train.run(config, wd)
  except train.NonFiniteError as e:  # a diverged run is a result, not a crash of the study
    record.update(train_time_s=round(time.time() - t0, 2), error=str(e), curve=[], final={})
  else:
    record.update(train_time_s=round(time.time() - t0, 2), train=out["train"])
  t1 = time.time()
  evaluator = _evaluator(config)
  curve = [{"step": 0, **evaluator(evaluator.init_variables(config.seed), probe=True)}]
  steps = sorted(int(p) for p in os.listdir(os.path.join(wd, "checkpoints")) if p.isdigit()) if "error" not in record else []
  for step in steps:
    state, _ = checkpoint.load_state(wd, step)
    is_last = step == steps[-1]
    curve.append({"step": step, **evaluator({"params": state["params"], **state["extra"]}, probe=is_last)})
  record.update(curve=curve, final=curve[-1] if steps else {}, untrained=curve[0], eval_time_s=round(time.time() - t1, 2),
                train_curves=read_train_curves(wd))
  record["wall_time_s"] = round(time.time() - t0, 2)
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)
  fin = record["final"]
  if fin:
    log(f"[simsiam] {record['name']}: kNN {fin['knn']:.3f}, probe {fin.get('probe', float('nan')):.3f}, "
        f"z_std {fin['z_std']:.4f}, erank(z) {fin['z_erank']:.1f} (untrained probe {curve[0]['probe']:.3f}), "
        f"{record['wall_time_s']:.0f} s")
  else:
    log(f"[simsiam] {record['name']}: FAILED ({record.get('error', '')[:120]})")
  return record


def study_span(workdir: str) -> str:
  """'first run start -> last record written: X min; ' from file times (also right for --report_only)."""
  runs = os.path.join(workdir, "runs")
  if not os.path.isdir(runs):
    return ""
  starts = [os.path.getmtime(os.path.join(runs, d, "config.json")) for d in os.listdir(runs)
            if os.path.exists(os.path.join(runs, d, "config.json"))]
  ends = [os.path.getmtime(os.path.join(runs, d, "record.json")) for d in os.listdir(runs)
          if os.path.exists(os.path.join(runs, d, "record.json"))]
  if not starts or not ends:
    return ""
  return f"first run start → last run finished (file times): {(max(ends) - min(starts)) / 60:.1f} min; "


def throughput(workdir: str, records) -> str:
  """Median and best logged training throughput over the runs (the CPU may be shared with other jobs)."""
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  sps = []
  for r in records:
    wd = os.path.join(workdir, "runs", r["name"])
    if os.path.exists(os.path.join(wd, "metrics.jsonl")):
      sps += [m["steps_per_sec"] for m in metrics_lib.read_metrics(wd) if m.get("steps_per_sec")]
  if not sps:
    return ""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return (f"Training throughput over all logged windows: median {np.median(sps):.1f} steps/s, 90th percentile "
          f"{np.percentile(sps, 90):.1f} steps/s (the spread measures how much of the 2-core CPU other jobs took).")


def baselines(workdir: str) -> dict:
  """Raw-input kNN / probe (cached in WORKDIR/baselines.json)."""
  path = os.path.join(workdir, "baselines.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  from experiments.simsiam import evaluate  # pylint: disable=g-import-not-at-top
  t0 = time.time()
  out = {"raw": evaluate.raw_baselines(*_data(load_config(VARIANTS["simsiam"])))}
  out["time_s"] = round(time.time() - t0, 2)
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(out, f, indent=1)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="run directories (reused when present)")
  p.add_argument("--out", default=HERE, help="where REPORT.md, plots and results.json go")
  p.add_argument("--seeds", type=int, default=3, help="seeds of the main two runs (simsiam, no_stopgrad)")
  p.add_argument("--extra_seeds", type=int, default=1, help="seeds of the other ablations")
  p.add_argument("--variants", default=",".join(VARIANTS))
  p.add_argument("--steps", type=int, default=0, help="override training steps (0: the config's)")
  p.add_argument("--dry_run", action="store_true", help="print the plan and the time estimate only")
  p.add_argument("--report_only", action="store_true", help="report from the runs already in --workdir")
  p.add_argument("--shard", default="0/1", help="i/n: train only runs i, i+n, ... and write no report "
                 "(several processes on one machine; then --report_only)")
  a = p.parse_args(argv)
  specs = plan(a.seeds, a.extra_seeds, tuple(x for x in a.variants.split(",") if x), a.steps)
  est = estimate_seconds(specs)
  print(f"[simsiam] {len(specs)} runs, estimated {est / 60:.0f} min at the measured per-run times", flush=True)
  if a.dry_run:
    for s in specs:
      print("  ", s["variant"], s["arg"])
    return
  shard, num_shards = (int(x) for x in a.shard.split("/"))
  if num_shards > 1:
    if shard == 0:
      baselines(a.workdir)
    for spec in specs[shard::num_shards]:
      print(f"[simsiam] shard {shard}/{num_shards}: {spec['variant']} {spec['arg']}", flush=True)
      train_one(spec, a.workdir)
    return
  t0 = time.time()
  base = baselines(a.workdir) if not a.report_only or os.path.exists(os.path.join(a.workdir, "baselines.json")) else {}
  records = []
  for i, spec in enumerate(specs):
    path = os.path.join(a.workdir, "runs", run_name(spec["arg"]), "record.json")
    if a.report_only and not os.path.exists(path):
      continue
    print(f"[simsiam] run {i + 1}/{len(specs)}: {spec['variant']} {spec['arg']}", flush=True)
    records.append(train_one(spec, a.workdir))
  from experiments.simsiam import report  # pylint: disable=g-import-not-at-top
  os.makedirs(a.out, exist_ok=True)
  with open(os.path.join(a.out, "results.json"), "w") as f:
    json.dump({"baselines": base, "runs": records}, f, indent=1, sort_keys=True)
  cmd = "python -m experiments.simsiam.run " + " ".join(argv if argv is not None else sys.argv[1:])
  meta = {"summary": f"Study wall time of this invocation: {(time.time() - t0) / 60:.1f} min (runs reused from the "
                     f"workdir cost nothing); {study_span(a.workdir)}sum of per-run times (training + checkpoint "
                     f"evaluation) {sum(r.get('wall_time_s', 0) for r in records) / 60:.1f} min. "
                     f"{throughput(a.workdir, records)}",
          "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
          "commands": ([f"python -m experiments.simsiam.run --workdir {a.workdir}   # trains and evaluates the runs",
                        cmd + "   # regenerated this report"] if a.report_only else [cmd])}
  path = report.write_report(records, base, a.out, meta=meta)
  print(f"[simsiam] wrote {path}")


if __name__ == "__main__":
  main()
