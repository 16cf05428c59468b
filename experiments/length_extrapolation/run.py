r"""Length-extrapolation study (issue #5): trains what is needed, evaluates every method, writes REPORT.md.

  python -m experiments.length_extrapolation.run --workdir /tmp/le            # default CPU study
  python -m experiments.length_extrapolation.run --workdir /tmp/le --scale tiny --variants rope,hwfa
  python -m experiments.length_extrapolation.run --workdir /tmp/le --report_only   # REPORT.md from results.json

Steps (each reuses what the workdir already holds, so an interrupted study resumes):
  1. train each pre-training variant (configs/length_extrapolation/<variant>.py) with kexue_jax.train.run in
     WORKDIR/<variant>; a run whose final checkpoint exists is not retrained;
  2. evaluate every method of methods.py on its checkpoint: non-repeated and repeated test sets at 1x, 2x,
     4x, 8x the training length (non-core methods at 1x and 8x), and the growing-context protocol;
     per-method results are cached in WORKDIR/eval/;
  3. the baseline's copy check at several training steps (repeated vs non-repeated at L_train);
  4. results.json (small, committable) and REPORT.md + PNG plots in --out (default: WORKDIR/report; only
     --out experiments/length_extrapolation refreshes the committed copy).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import numpy as np

from experiments.length_extrapolation import evaluate
from experiments.length_extrapolation import methods as methods_lib
from experiments.length_extrapolation import report
from kexue_jax import checkpoint as ckpt_lib
from kexue_jax import config_lib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONFIG_DIR = os.path.join(REPO, "configs", "length_extrapolation")

COPY_ARG = "copy=0.25,copy_source=random,copy_warmup=600"
# variant -> (config file, extra config argument)
VARIANTS = {
    "rope": ("rope.py", ""), "rope_logn": ("rope_logn.py", ""), "hwfa": ("hwfa.py", ""),
    "inv_leaky": ("inv_leaky.py", ""), "kna": ("kna.py", ""), "cosa": ("cosa.py", ""),
    "hwfa2": ("hwfa2.py", ""), "kna_logn": ("kna.py", "logn"), "cosa_logn": ("cosa.py", "logn"),
    # Copy-augmented training: a quarter of the training windows are random printable bytes tiled with a period
    # of N/4..N/2 (in-range copies only). The plain baseline does not learn to copy at CPU scale (REPORT.md,
    # copy check), so Su's repeated-column claims are tested on these checkpoints (--copy_variants).
    "rope_copy": ("rope.py", COPY_ARG), "rope_logn_copy": ("rope_logn.py", COPY_ARG),
    "hwfa_copy": ("hwfa.py", COPY_ARG),
}
COPY_VARIANTS = "rope_copy,rope_logn_copy,hwfa_copy"
DEFAULT_VARIANTS = "rope,rope_logn,hwfa,inv_leaky,kna,cosa,hwfa2"
# Test-set sizes: windows at 8x (more at shorter lengths, equal tokens per length), growing-context docs.
DEFAULT_WINDOWS = {"tiny": 8, "default": 16, "medium": 32, "full": 64}
COPY_CHECKPOINTS = 4  # the baseline also keeps checkpoints at 1/4, 2/4, 3/4 of training (copy check vs steps)


def load_config(variant: str, scale: str, steps: int = 0, extra_arg: str = ""):
  fname, extra = VARIANTS[variant]
  arg = ",".join(filter(None, [f"scale={scale}", extra, f"steps={steps}" if steps else "", extra_arg]))
  return config_lib.load_config(f"{os.path.join(CONFIG_DIR, fname)}:{arg}"), f"configs/length_extrapolation/{fname}:{arg}"


def train_variant(variant, scale, workdir, steps=0, log=print, extra_arg="", name=None, keep=COPY_CHECKPOINTS):
  """Trains (or reuses) one variant; returns its summary dict (also cached in WORKDIR/<name>/summary.json)."""
  config, cfg_arg = load_config(variant, scale, steps, extra_arg)
  if variant in ("rope", "rope_copy"):  # the copy check reads the last keep + 1 checkpoints (at least every steps / keep)
    every = max(1, config.num_train_steps // keep)
    config.checkpoint_every_steps = min(config.checkpoint_every_steps or every, every)
    config.max_checkpoints_to_keep = keep + 1
  wd = os.path.join(workdir, name or variant)
  summary_path = os.path.join(wd, "summary.json")
  if os.path.exists(summary_path):
    summary = json.load(open(summary_path))
    if summary.get("step") == config.num_train_steps:
      log(f"[train] {variant}: reusing finished run in {wd}")
      return summary, config
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  log(f"[train] {variant}: {config.num_train_steps} steps, batch {config.batch_size}, seq {config.data.seq_len}")
  t0 = time.time()
  out = train.run(config, wd)
  if out.get("preempted"):  # SIGTERM/SIGINT: the loop saved a checkpoint; rerun the same command to resume
    raise SystemExit(f"[train] {variant}: stopped by {out['preempted']} at step {out['step']}; rerun to resume.")
  summary = {"variant": variant, "step": out["step"], "num_params": out["num_params"],
             "wall_time_s": round(time.time() - t0, 1), "train": out["train"], "eval": out["eval"],
             "config_arg": cfg_arg, "batch_size": config.batch_size, "seq_len": config.data.seq_len,
             "tokens": config.num_train_steps * config.batch_size * config.data.seq_len}
  with open(summary_path, "w") as f:
    json.dump(summary, f, indent=1)
  log(f"[train] {variant}: done in {summary['wall_time_s']:.0f} s, train acc {out['train'].get('accuracy')}")
  return summary, config


def _speed(workdir) -> dict:
  """Median and max training steps/s over the logged windows (the machine may be shared)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  sps = [r["steps_per_sec"] for r in map(json.loads, open(path)) if "steps_per_sec" in r]
  return {"steps_per_sec_median": float(np.median(sps)), "steps_per_sec_max": float(np.max(sps))} if sps else {}


def _saved_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  return sorted(int(p) for p in os.listdir(d) if p.isdigit()) if os.path.isdir(d) else []


def _probe_args(copy_probe) -> list[str]:
  """A ';'-separated string or a list of rope.py arguments -> the list (empty entries dropped)."""
  items = copy_probe.split(";") if isinstance(copy_probe, str) else list(copy_probe or [])
  return [a.strip() for a in items if a and a.strip()]


def _copy_probe(arg, scale, workdir, steps, sets, rand_bt, rand_seg, n, ext, log, keep) -> dict:
  """Trains (or reuses) rope.py:<arg> keeping `keep` checkpoints; its copy check at 1x and 8x per checkpoint."""
  pname = "copy_probe__" + "".join(ch if ch.isalnum() else "_" for ch in arg)
  psum, pcfg = train_variant("rope", scale, workdir, steps, log, extra_arg=arg, name=pname, keep=keep)
  pwd = os.path.join(workdir, pname)
  model_cfg = methods_lib.model_config(config_lib.to_dict(pcfg.model), methods_lib.Method("rope", "rope"), n)
  curve = []
  for step in _saved_steps(pwd):
    params = ckpt_lib.load_state(pwd, step)[0]["params"]
    row = {"step": step}
    for length, tag in ((n, ""), (n * ext, "_8x")):
      nonrep, rep, seg = sets[length]
      r = evaluate.evaluate_length(model_cfg, params, nonrep, rep, seg)
      row.update({f"nonrep_acc{tag}": float(np.mean(r["nonrep"]["acc"])),
                  f"rep_acc{tag}": float(np.mean(r["rep"]["acc"])),
                  f"rep_copy_acc{tag}": float(np.mean(r["rep"]["copy_acc"]))})
    row["rand_copy_acc"] = float(np.mean(evaluate.copy_accuracy(model_cfg, params, rand_bt, rand_seg)))
    curve.append(row)
    log(f"[probe] {arg} step {step}: {row}")
  return {"arg": arg, "summary": psum, "curve": curve}


def run_study(workdir: str, scale: str = "default", variants=None, steps: int = 0, windows: int = 0,
              out_dir: str | None = None, log=print, methods=None, mults=(1, 2, 4, 8), copy_probe="",
              copy_probe_checkpoints: int = 6, seeds: int = 1) -> dict:
  """The whole study; `methods` (names) and `mults` (test lengths / N, must include 1 and the extension)
  restrict it (for smoke tests). `copy_probe` (rope.py arguments, a list or a ';'-separated string, e.g.
  "heads=4,norm=pre,steps=3000;copy=0.5,steps=4000") additionally trains those baselines and measures their
  copy gap vs steps (at 1x and 8x). `seeds` > 1 also trains rope / rope_logn with seeds 1..seeds-1 and evaluates
  the methods of the cross-checkpoint claims on them (methods.seed_replicates)."""
  t_start = time.time()
  if not jax.config.jax_compilation_cache_dir:  # reruns of the same study reuse compiled programs
    jax.config.update("jax_compilation_cache_dir", os.path.join(os.path.abspath(workdir), "jax_cache"))
  variants = tuple(variants or DEFAULT_VARIANTS.split(","))
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise ValueError(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
  os.makedirs(workdir, exist_ok=True)
  out_dir = out_dir or os.path.join(workdir, "report")  # only an explicit --out touches the committed copy

  # 1. Training.
  runs, configs = {}, {}
  t_train = time.time()
  for v in variants:
    runs[v], configs[v] = train_variant(v, scale, workdir, steps, log)
    runs[v].update(_speed(os.path.join(workdir, v)))
  for seed in range(1, seeds):  # seed replicates of the checkpoints compared across training runs
    for v in (v for v in methods_lib.SEED_CKPTS if v in variants):
      name = f"{v}_s{seed}"
      runs[name], configs[name] = train_variant(v, scale, workdir, steps, log, extra_arg=f"seed={seed}",
                                                name=name)
      runs[name].update(_speed(os.path.join(workdir, name)))
  t_train = time.time() - t_train

  # 2. Test sets.
  t_eval = time.time()
  n = int(configs[variants[0]].data.seq_len)
  ext = methods_lib.EXTENSION
  lengths = [n * m for m in mults]
  n8 = windows or DEFAULT_WINDOWS[scale]
  data = configs[variants[0]].data
  docs = evaluate.documents("test", data.name, data.text_key)
  sets = {}
  for length in lengths:
    nonrep = evaluate.nonrepeated_set(docs, length, n8 * (ext * n // length))
    rep, seg = evaluate.repeated_set(nonrep, n)
    sets[length] = (nonrep, rep, seg)
  long_bt = evaluate.growing_set(docs, n, max(mults), n8)
  # n-gram references from the training split (its first 2% for a large catalog dataset such as pg19).
  train_split = "train" if data.name == evaluate.DATASET else "train[:2%]"
  baselines = evaluate.ngram_baselines(evaluate.documents(train_split, data.name, data.text_key), sets[n][0])
  log(f"[eval] unigram acc {baselines['unigram_acc']:.4f}, bigram acc {baselines['bigram_acc']:.4f} "
      f"(from the training split, on the {len(sets[n][0])} non-repeated windows at L_train)")

  # 3. Methods.
  eval_dir = os.path.join(workdir, "eval")
  os.makedirs(eval_dir, exist_ok=True)
  params_cache = {}
  all_m = methods_lib.all_methods(n, variants)
  if methods:
    all_m = [m for m in all_m if m.name in set(methods)]
  all_m += methods_lib.seed_replicates(all_m, n, seeds)
  results = {}
  for i, m in enumerate(all_m):
    cache = os.path.join(eval_dir, m.name.replace("/", "__") + ".json")
    model_cfg = methods_lib.model_config(config_lib.to_dict(configs[m.ckpt].model), m, n)
    key = json.dumps(model_cfg, sort_keys=True, default=str) + f"|{n8}|{runs[m.ckpt]['step']}"
    if os.path.exists(cache):
      cached = json.load(open(cache))
      if cached.get("key") == key:
        results[m.name] = cached["result"]
        continue
    if m.ckpt not in params_cache:
      params_cache[m.ckpt] = ckpt_lib.load_state(os.path.join(workdir, m.ckpt))[0]["params"]
    params = params_cache[m.ckpt]
    t0 = time.time()
    res = {"ckpt": m.ckpt, "core": m.core, "note": m.note, "attention": m.attention,
           "layer_fn": m.layer_fn.__name__ if m.layer_fn else None, "by_length": {}}
    try:
      for length in (lengths if m.core else [n, n * ext]):
        nonrep, rep, seg = sets[length]
        grow = long_bt[:, -(length + 1):] if m.core else None
        r = evaluate.evaluate_length(model_cfg, params, nonrep, rep, seg, grow, n)
        if "growing" in r:
          res.setdefault("growing", {})[str(length)] = r.pop("growing")
        res["by_length"][str(length)] = r
    except Exception as e:  # noqa: BLE001 - one broken method must not lose the rest of the study
      log(f"[eval] {m.name}: FAILED {type(e).__name__}: {e}")
      continue
    res["eval_time_s"] = round(time.time() - t0, 1)
    results[m.name] = res
    with open(cache, "w") as f:
      json.dump({"key": key, "result": res}, f)
    r1 = np.mean(res["by_length"][str(n)]["nonrep"]["acc"])
    r8 = np.mean(res["by_length"][str(n * ext)]["nonrep"]["acc"])
    log(f"[eval] {i + 1}/{len(all_m)} {m.name}: acc {r1:.4f} @{n}, {r8:.4f} @{n * ext} "
        f"({res['eval_time_s']:.0f} s)")

  # 4. Copy check vs training steps (baseline at L_train: repeated vs non-repeated, and random-byte copies).
  rand_bt, rand_seg = evaluate.random_repeated_set(n, n, len(sets[n][0]))
  copy_curves = {}
  for v in (v for v in ("rope", "rope_copy") if v in variants):
    wd = os.path.join(workdir, v)
    model_cfg = methods_lib.model_config(config_lib.to_dict(configs[v].model), methods_lib.Method(v, v), n)
    nonrep, rep, seg = sets[n]
    curve = copy_curves[v] = []
    for step in _saved_steps(wd):
      params = ckpt_lib.load_state(wd, step)[0]["params"]
      r = evaluate.evaluate_length(model_cfg, params, nonrep, rep, seg)
      curve.append({"step": step, "nonrep_acc": float(np.mean(r["nonrep"]["acc"])),
                    "rep_acc": float(np.mean(r["rep"]["acc"])),
                    "rep_copy_acc": float(np.mean(r["rep"]["copy_acc"])),
                    "rand_copy_acc": float(np.mean(evaluate.copy_accuracy(model_cfg, params, rand_bt, rand_seg)))})
  # 5. Optional copy probes: other baselines (architecture / budget / copy augmentation), copy gap vs steps.
  probes = [_copy_probe(a, scale, workdir, steps, sets, rand_bt, rand_seg, n, ext, log, copy_probe_checkpoints)
            for a in _probe_args(copy_probe)]
  t_eval = time.time() - t_eval

  cfg0 = configs[variants[0]]
  out = {
      "meta": {
          "scale": scale, "train_length": n, "test_lengths": lengths, "extension": ext,
          "variants": list(variants), "default_variants": DEFAULT_VARIANTS.split(","), "seeds": seeds,
          "windows_at_8x": n8,
          "windows": {str(L): int(len(sets[L][0])) for L in lengths}, "growing_docs": int(len(long_bt)),
          "steps": int(cfg0.num_train_steps), "batch_size": int(cfg0.batch_size),
          "model": {k: v for k, v in config_lib.to_dict(cfg0.model).items() if k != "layer_attention"},
          "optimizer": dict(config_lib.to_dict(cfg0.optimizer)),
          "train_wall_s": round(sum(r["wall_time_s"] for r in runs.values()), 1),
          "train_wall_this_invocation_s": round(t_train, 1),
          "eval_wall_s": round(t_eval, 1), "total_wall_s": round(time.time() - t_start, 1),
          "hardware": f"{jax.device_count()} x {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores, "
                      f"{platform.processor() or platform.machine()}",
          "jax": jax.__version__, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
          "command": "python -m experiments.length_extrapolation.run " + " ".join(sys.argv[1:]),
          "train_commands": {v: f"python -m kexue_jax.main --config {runs[v]['config_arg']} --workdir "
                                f"WORKDIR/{v}" for v in runs},
          "segment_rule": "L > N: s ~ U{N..L/2}; L = N: s ~ U{N/4..N/2}",
      },
      "baselines": baselines,
      "runs": runs,
      "copy_vs_steps": copy_curves.get("rope", []),
      "copy_vs_steps_copy_aug": copy_curves.get("rope_copy", []),
      "copy_probes": probes,
      "methods": results,
  }
  prev = os.path.join(workdir, "results.json")
  invocations = []
  if os.path.exists(prev):  # earlier invocations of this study (older results.json files hold only their meta)
    old = json.load(open(prev))
    invocations = old.get("invocations") or [
        {"command": old["meta"]["command"], "date_utc": old["meta"]["date_utc"],
         "total_wall_s": old["meta"]["total_wall_s"],
         "train_wall_this_invocation_s": old["meta"]["train_wall_this_invocation_s"],
         "eval_wall_s": old["meta"]["eval_wall_s"]}]
  invocations.append({k: out["meta"][k] for k in ("command", "date_utc", "total_wall_s",
                                                  "train_wall_this_invocation_s", "eval_wall_s")})
  out["invocations"] = invocations
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(out, f, separators=(",", ":"))
  report.write_report(out, out_dir)
  log(f"[done] total {out['meta']['total_wall_s']:.0f} s (train {t_train:.0f} s, eval {t_eval:.0f} s); "
      f"report in {out_dir}/REPORT.md")
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True)
  p.add_argument("--scale", default="default", choices=sorted(DEFAULT_WINDOWS))
  p.add_argument("--variants", default=DEFAULT_VARIANTS,
                 help=f"comma-separated subset of {sorted(VARIANTS)} (default: {DEFAULT_VARIANTS})")
  p.add_argument("--steps", type=int, default=0, help="training steps (0 = the scale's default)")
  p.add_argument("--windows", type=int, default=0, help="test windows at 8x (0 = the scale's default)")
  p.add_argument("--copy_variants", action="store_true",
                 help=f"also train {COPY_VARIANTS} ({COPY_ARG}) and test the repeated-column claims on them")
  p.add_argument("--seeds", type=int, default=3,
                 help="training seeds of rope and rope_logn (the log-n claims compare the two checkpoints)")
  p.add_argument("--copy_probe", action="append", default=[],
                 help='also train rope.py with this argument (e.g. "heads=4,norm=pre,steps=3000") and measure '
                      'its copy gap vs steps; repeat the flag for several probes')
  p.add_argument("--out", default=None, help="where results.json, REPORT.md and the PNGs go (default: WORKDIR/"
                 "report; --out experiments/length_extrapolation refreshes the committed copy)")
  p.add_argument("--report_only", action="store_true",
                 help="only regenerate REPORT.md and the plots from WORKDIR/results.json")
  a = p.parse_args(argv)
  if a.report_only:
    with open(os.path.join(a.workdir, "results.json")) as f:
      res = json.load(f)
    out_dir = a.out or os.path.join(a.workdir, "report")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
      json.dump(res, f, separators=(",", ":"))
    report.write_report(res, out_dir)
    print(f"[report] {out_dir}/REPORT.md")
    return
  variants = a.variants.split(",") + (COPY_VARIANTS.split(",") if a.copy_variants else [])
  run_study(a.workdir, a.scale, variants, a.steps, a.windows, a.out,
            log=lambda s: print(s, flush=True), copy_probe=a.copy_probe, seeds=a.seeds)


if __name__ == "__main__":
  main()
