r"""MLM / MAE seen as dropout (issue #8): pre-trains, fine-tunes, measures, then writes REPORT.md.

  python -m experiments.mlm_dropout.run --workdir /tmp/kexue/mlm_dropout                # the default study
  python -m experiments.mlm_dropout.run --workdir /tmp/kexue/mlm_dropout --dry_run      # plan + time estimate
  python -m experiments.mlm_dropout.run --workdir /tmp/kexue/mlm_dropout --report_only  # from finished runs

Every training run is `kexue_jax.train.run` on configs/mlm_dropout/{pretrain,finetune}.py with one argument
string (printed in the report: any run can be repeated by hand with `python -m kexue_jax.main`). A run whose
WORKDIR/runs/<name>/record.json exists is reused, so an interrupted study resumes. The steps, in order:

  1. pre-training: MLM (BERT 15%, 80/10/10) and MAE-style (15% of the bytes dropped from the encoder, 1-layer
     decoder), same encoder, data, steps and optimizer;
  2. step-time benchmark (fresh jitted forward+backward on one fixed batch, interleaved rounds, median):
     fine-tuning at DropToken p in {0, 0.1, 0.15, 0.25, 0.5}; pre-training MLM vs MAE-style (15%, 50%, 75%);
  3. representation drift of the MLM encoder on unmasked text, with and without Su's correction;
  4. fine-tuning on the stdlib package task, `--seeds` seeds (default 3), ordered seed by seed so a partial
     study still covers every setting: {MLM, MLM + correction r=0.15, MAE-style, from scratch} x DropToken 0,
     and MLM x DropToken {0.1, 0.15, 0.25, 0.5}.

Default: 2 pre-training (1200 steps) + 24 fine-tuning runs, estimated ~38 min on the idle 2-core CPU
(`--dry_run` prints the estimate; the report records the measured time).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PRETRAIN_CONFIG = os.path.join(REPO, "configs", "mlm_dropout", "pretrain.py")
FINETUNE_CONFIG = os.path.join(REPO, "configs", "mlm_dropout", "finetune.py")
DROPS = (0.0, 0.1, 0.15, 0.25, 0.5)
CORRECTION_R = 0.15
MODES = ("mlm", "mae")

# Wall seconds measured on the idle 2-core CPU (session 2: pre-training 600 steps MLM 276 s, MAE 293 s; a
# fine-tuning run ~41 s of which ~15 s start-up), used only for the --dry_run estimate; the report records the
# real times. Pre-training scales with its steps (config default 1200), fine-tuning with steps x kept fraction.
EST_SECONDS = {"pretrain_mlm": 276.0, "pretrain_mae": 293.0, "finetune": 26.0, "finetune_startup": 15.0,
               "timing": 150.0, "drift": 15.0}


def load_config(path: str, arg: str):
  from kexue_jax import config_lib  # pylint: disable=g-import-not-at-top
  return config_lib.load_config(f"{path}:{arg}")


def pretrain_workdir(workdir: str, mode: str) -> str:
  return os.path.join(workdir, "runs", f"pretrain_{mode}")


def finetune_plan(seeds: int, workdir: str, steps: int = 0, drops=DROPS) -> list[dict]:
  """The fine-tuning runs (record fields + `arg`), seed-major so a partial study covers every setting.

  `drops`: the DropToken ratios of the MLM sweep (the four initialisations at p = 0 need 0 in it).
  """
  settings = [("mlm", 0.0, 0.0), ("mlm", CORRECTION_R, 0.0), ("mae", 0.0, 0.0), ("none", 0.0, 0.0)]
  settings = settings if 0.0 in drops else []
  settings += [("mlm", 0.0, p) for p in drops if p > 0]
  specs = []
  for seed in range(seeds):
    for init, corr, drop in settings:
      parts = [f"init={pretrain_workdir(workdir, init)}"] if init != "none" else []
      parts += [f"correction={corr:g}", f"drop={drop:g}", f"seed={seed}"] + ([f"steps={steps}"] if steps else [])
      specs.append(dict(init=init, correction=corr, drop=drop, seed=seed, arg=",".join(parts)))
  return specs


def run_name(arg: str) -> str:
  """A run directory name from an argument string (the init path shortened to its mode)."""
  parts = []
  for p in arg.split(","):
    k, _, v = p.partition("=")
    parts.append(f"init{os.path.basename(v).replace('pretrain_', '')}" if k == "init" else f"{k}{v}")
  if not any(p.startswith("init") for p in parts):
    parts.insert(0, "initnone")
  return "ft_" + "_".join(parts)


def _steps_per_sec(wd: str) -> float | None:
  path = os.path.join(wd, "metrics.jsonl")
  if not os.path.exists(path):
    return None
  vals = [json.loads(l).get("steps_per_sec") for l in open(path)]
  vals = [v for v in vals if v]
  return float(np.median(vals)) if vals else None


def train_one(config_path: str, arg: str, wd: str, fields: dict, log=print) -> dict:
  """Trains (or reuses) one run; returns its record (also wd/record.json)."""
  path = os.path.join(wd, "record.json")
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  config = load_config(config_path, arg)
  config.progress_bar = False
  t0 = time.time()
  out = train.run(config, wd)
  record = dict(fields, name=os.path.basename(wd), wall_time_s=round(time.time() - t0, 2), step=out["step"],
                num_params=out["num_params"], eval={k.split("/", 1)[1]: v for k, v in out["eval"].items()},
                train=out["train"], steps_per_sec=_steps_per_sec(wd),
                command=f"python -m kexue_jax.main --config {os.path.relpath(config_path, REPO)}:{arg} --workdir {wd}")
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)
  log(f"[mlm_dropout] {record['name']}: eval {record['eval']}, {record['wall_time_s']:.1f} s", flush=True)
  return record


# ------------------------------------------------------------------------------------ Step-time benchmark.


def _grad_step_fn(config):
  """(jitted forward+backward of task.loss, params, batch) on one fixed training batch."""
  import jax  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from kexue_jax import tasks  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  task = tasks.get_task(config)
  batch = next(pipeline.make_train_iter(config.data, seed=0, global_batch_size=config.batch_size))
  params = nn.unbox(task.init(jax.random.key(0), batch))["params"]
  fn = jax.jit(jax.grad(lambda p, b, r: task.loss({"params": p}, b, r)[0]))
  return fn, params, batch


def time_steps(configs: dict, rounds: int = 5, steps: int = 5) -> dict[str, float]:
  """{name: median seconds per forward+backward step}: all programs compiled first, then `rounds` interleaved
  rounds of `steps` steps each (so a change of machine load hits every setting alike)."""
  import jax  # pylint: disable=g-import-not-at-top
  fns = {k: _grad_step_fn(c) for k, c in configs.items()}
  key = jax.random.key(0)
  for fn, p, b in fns.values():
    jax.block_until_ready(fn(p, b, key))
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for k, (fn, p, b) in fns.items():
      t0 = time.perf_counter()
      for i in range(steps):
        out = fn(p, b, jax.random.fold_in(key, i))
      jax.block_until_ready(out)
      times[k].append((time.perf_counter() - t0) / steps)
  return {k: float(np.median(v)) for k, v in times.items()}


def timing_study(steps: int) -> dict:
  ft = {str(p): load_config(FINETUNE_CONFIG, f"drop={p:g}") for p in DROPS}
  pre = {"mlm": load_config(PRETRAIN_CONFIG, "mode=mlm"), "mae": load_config(PRETRAIN_CONFIG, "mode=mae")}
  for r in (0.5, 0.75):
    pre[f"mae@{r:g}"] = load_config(PRETRAIN_CONFIG, f"mode=mae,rate={r:g}")
    pre[f"mlm@{r:g}"] = load_config(PRETRAIN_CONFIG, f"mode=mlm,rate={r:g}")
  return {"droptoken": time_steps(ft, steps=steps), "pretrain": time_steps(pre, steps=steps)}


# ------------------------------------------------------------------------------------ Representation drift.


def drift_study(mlm_workdir: str, num_windows: int = 256, mc_draws: int = 16, batch: int = 64) -> dict:
  """Su's consistency question on unmasked text, for the MLM encoder with and without the correction.

  On `num_windows` validation windows x (clean, never masked), with h(x; E) the final hidden states and P(x; E)
  the MLM predictive distribution, at byte positions:
    cos_dist_corrected_vs_plain  mean 1 - cos(h(x; E_corr), h(x; E)): how far the correction moves the states;
    cos_dist_mc_vs_{plain,corrected}  mean 1 - cos(hbar, h(x; .)) with hbar = mean over `mc_draws` BERT
        maskings x~ of h(x~; E): the "model average" the pre-training actually fits, against the "weight
        average" without / with the correction (Su: the corrected one is the right inference model);
    kl_mc_vs_{plain,corrected}   mean KL(Pbar || P(x; .)), Pbar = mean of P(x~; E) over the maskings;
    acc_unmasked_{plain,corrected}  argmax P(x; .) == x_i (copying the visible byte).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  config = load_config(PRETRAIN_CONFIG, "mode=mlm")
  task = mlm.MLMTask(config)
  state, _ = checkpoint.load_state(mlm_workdir)
  plain = state["params"]
  corrected = mlm.correct_params(plain, CORRECTION_R, mask_frac=task.mask_frac, random_frac=task.random_frac)
  ev = pipeline.make_eval_iter(config.data, split="validation", global_batch_size=batch,
                               num_batches=max(1, num_windows // batch))
  tokens = np.concatenate([b["tokens"] for b in ev])

  @jax.jit
  def forward(params, tok):
    logits, h = task.model.apply({"params": params}, tok, return_hidden=True)
    return jax.nn.log_softmax(logits, -1), h.astype(jnp.float32)

  @jax.jit
  def masked_forward(params, tok, key):
    inp, _ = mlm.bert_mask(key, tok, tok < mlm.NUM_BYTES, rate=task.rate, mask_frac=task.mask_frac,
                           random_frac=task.random_frac)
    return forward(params, inp)

  def cos_dist(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return 1.0 - (a * b).sum(-1)

  sums = {}
  for i in range(0, len(tokens), batch):
    tok = jnp.asarray(tokens[i:i + batch])
    byte = np.asarray(tok) < mlm.NUM_BYTES
    lp_p, h_p = (np.asarray(x, np.float64) for x in forward(plain, tok))
    lp_c, h_c = (np.asarray(x, np.float64) for x in forward(corrected, tok))
    h_mc, p_mc = 0.0, 0.0
    for k in range(mc_draws):
      lp_k, h_k = (np.asarray(x, np.float64) for x in masked_forward(plain, tok, jax.random.key(1000 + k)))
      h_mc, p_mc = h_mc + h_k / mc_draws, p_mc + np.exp(lp_k) / mc_draws
    log_pmc = np.log(np.maximum(p_mc, 1e-30))
    tok_np = np.asarray(tok)
    vals = {
        "cos_dist_corrected_vs_plain": cos_dist(h_c, h_p),
        "cos_dist_mc_vs_plain": cos_dist(h_mc, h_p),
        "cos_dist_mc_vs_corrected": cos_dist(h_mc, h_c),
        "kl_mc_vs_plain": (p_mc * (log_pmc - lp_p)).sum(-1),
        "kl_mc_vs_corrected": (p_mc * (log_pmc - lp_c)).sum(-1),
        "acc_unmasked_plain": (lp_p.argmax(-1) == tok_np).astype(np.float64),
        "acc_unmasked_corrected": (lp_c.argmax(-1) == tok_np).astype(np.float64),
    }
    for k, v in vals.items():
      s = sums.setdefault(k, [0.0, 0.0])
      s[0] += float(v[byte].sum())
      s[1] += float(byte.sum())
  out = {k: s / c for k, (s, c) in sums.items()}
  out.update(mc_draws=mc_draws, num_windows=int(len(tokens)), correction_r=CORRECTION_R)
  return out


def eval_class_counts() -> tuple[list[str], list[int]]:
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  config = load_config(FINETUNE_CONFIG, "")
  ev = pipeline.make_eval_iter(config.data, split=config.data.eval_split, global_batch_size=config.batch_size)
  labels = np.concatenate([b["label"] for b in ev])
  return list(config.data.classes), np.bincount(labels, minlength=len(config.data.classes)).tolist()


def _cached(path: str, fn):
  if os.path.exists(path):
    with open(path) as f:
      return json.load(f)
  value = fn()
  with open(path + ".tmp", "w") as f:
    json.dump(value, f, indent=1, sort_keys=True)
  os.replace(path + ".tmp", path)
  return value


def estimate_seconds(seeds: int, ft_steps: int = 150, pre_steps: int = 1200) -> float:
  ft = sum(EST_SECONDS["finetune_startup"] + EST_SECONDS["finetune"] * ft_steps / 150 * (0.3 + 0.7 * (1 - s["drop"]))
           for s in finetune_plan(seeds, "/w"))
  pre = (EST_SECONDS["pretrain_mlm"] + EST_SECONDS["pretrain_mae"]) * pre_steps / 600
  return ft + pre + EST_SECONDS["timing"] + EST_SECONDS["drift"]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", required=True, help="run directories (reused when present)")
  p.add_argument("--out", default=HERE, help="where REPORT.md, plots and results.json go")
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--pretrain_steps", type=int, default=0, help="override (0: the config's 1200)")
  p.add_argument("--finetune_steps", type=int, default=0, help="override (0: the config's 150)")
  p.add_argument("--timing_steps", type=int, default=5, help="steps per round of the step-time benchmark")
  p.add_argument("--drops", default=",".join(f"{d:g}" for d in DROPS),
                 help="DropToken ratios to fine-tune (0 = the four initialisations); a subset for follow-ups")
  p.add_argument("--dry_run", action="store_true", help="print the plan and the time estimate only")
  p.add_argument("--report_only", action="store_true", help="report from the runs already in --workdir")
  a = p.parse_args(argv)
  specs = finetune_plan(a.seeds, a.workdir, a.finetune_steps, tuple(float(x) for x in a.drops.split(",") if x))
  est = estimate_seconds(a.seeds, a.finetune_steps or 150, a.pretrain_steps or 1200)
  print(f"[mlm_dropout] 2 pre-training + {len(specs)} fine-tuning runs, estimated {est / 60:.0f} min at the "
        "measured per-run times", flush=True)
  if a.dry_run:
    for mode in MODES:
      print(f"   pretrain {mode}: mode={mode}" + (f",steps={a.pretrain_steps}" if a.pretrain_steps else ""))
    for s in specs:
      print("  ", run_name(s["arg"]), s["arg"])
    return
  t0 = time.time()
  os.makedirs(os.path.join(a.workdir, "runs"), exist_ok=True)
  import jax  # pylint: disable=g-import-not-at-top
  # Runs that differ only in data (init checkpoint, correction) compile the same programs: share compilations.
  jax.config.update("jax_compilation_cache_dir", os.path.join(a.workdir, "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  pre = {}
  for mode in MODES:
    wd = pretrain_workdir(a.workdir, mode)
    if a.report_only and not os.path.exists(os.path.join(wd, "record.json")):
      continue
    arg = f"mode={mode}" + (f",steps={a.pretrain_steps}" if a.pretrain_steps else "")
    print(f"[mlm_dropout] pre-training {mode}", flush=True)
    pre[mode] = train_one(PRETRAIN_CONFIG, arg, wd, {"mode": mode})
  extra = {}
  for name, fn in (("timing", lambda: timing_study(a.timing_steps)),
                   ("drift", lambda: drift_study(pretrain_workdir(a.workdir, "mlm"))),
                   ("classes", eval_class_counts)):
    path = os.path.join(a.workdir, f"{name}.json")
    if a.report_only and not os.path.exists(path):
      continue
    if name == "drift" and "mlm" not in pre:
      continue
    print(f"[mlm_dropout] {name}", flush=True)
    t1 = time.time()
    extra[name] = _cached(path, fn)
    print(f"[mlm_dropout] {name}: {time.time() - t1:.0f} s", flush=True)
  records = []
  for i, s in enumerate(specs):
    wd = os.path.join(a.workdir, "runs", run_name(s["arg"]))
    if (a.report_only or s["init"] not in pre and s["init"] != "none") and not os.path.exists(
        os.path.join(wd, "record.json")):
      continue
    print(f"[mlm_dropout] fine-tune {i + 1}/{len(specs)}: {s['arg']}", flush=True)
    records.append(train_one(FINETUNE_CONFIG, s["arg"], wd, {k: v for k, v in s.items() if k != "arg"}))
  from experiments.mlm_dropout import report  # pylint: disable=g-import-not-at-top
  classes, counts = extra.get("classes", ([], []))
  ftc = load_config(FINETUNE_CONFIG, f"steps={a.finetune_steps}" if a.finetune_steps else "")
  prc = load_config(PRETRAIN_CONFIG, f"steps={a.pretrain_steps}" if a.pretrain_steps else "")
  setup = {"pretrain_steps": prc.num_train_steps, "finetune_steps": ftc.num_train_steps, "pool": ftc.task.pool,
           "train_per_class": ftc.data.train_per_class, "eval_per_class": ftc.data.eval_per_class}
  results = {"finetune": records, "pretrain": pre, "timing": extra.get("timing"), "drift": extra.get("drift"),
             "classes": classes, "eval_counts": counts, "setup": setup}
  cmd = "python -m experiments.mlm_dropout.run " + " ".join(argv if argv is not None else sys.argv[1:])
  all_runs = records + list(pre.values())
  # Every invocation of this workdir, so a later one (that reuses the runs) still reports the first's time.
  inv_path = os.path.join(a.workdir, "invocations.json")
  invocations = json.load(open(inv_path)) if os.path.exists(inv_path) else []
  if not a.report_only:
    invocations.append({"command": cmd, "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
                        "wall_min": round((time.time() - t0) / 60, 1)})
    with open(inv_path + ".tmp", "w") as f:
      json.dump(invocations, f, indent=1)
    os.replace(inv_path + ".tmp", inv_path)
  history = "; ".join(f"`{i['command']}` at {i['date_utc']}: {i['wall_min']:.1f} min" for i in invocations)
  this = ("Report regenerated from the finished runs (--report_only)" if a.report_only else
          f"Study wall time of this invocation: {(time.time() - t0) / 60:.1f} min (runs reused from the workdir "
          "cost nothing)")
  meta = {"summary": f"{this}; sum of per-run training times "
                     f"{sum(r['wall_time_s'] for r in all_runs) / 60:.1f} min over {len(all_runs)} runs. "
                     f"Invocations of this workdir: {history or 'this one only'}.",
          "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
          "commands": [cmd]}
  path = report.write_report(results, a.out, meta=meta)
  print(f"[mlm_dropout] wrote {path}", flush=True)


if __name__ == "__main__":
  main()
