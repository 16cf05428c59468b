r"""SimSiam: why it does not collapse (issue #6) -- ablations on MNIST-1D, checkpoint evaluations, claims.

  python -m experiments simsiam --workdir /tmp/kexue/simsiam            # 11 runs: 3 seeds of the main two
  python -m experiments simsiam --workdir W --scale tiny                # smoke test (< 2 min)

Every run is configs/simsiam/mnist1d.py with one argument string. After training, each kept checkpoint and
the untrained initialisation (step 0) are evaluated (evaluate.py: kNN on backbone features at every checkpoint,
linear probe at step 0 and at the end, collapse statistics of z on the test set). Prose: report_template.md.
"""
from __future__ import annotations

import collections
import json
import math
import os

import numpy as np

from experiments import stats
from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.framework import report as R
from experiments.simsiam import published

CONFIG = "configs/simsiam/mnist1d.py"
VARIANTS = {  # variant -> (config arguments, label)
    "simsiam": ("stopgrad=True,predictor=mlp", "SimSiam: stop-grad + predictor (lr decayed)"),
    "no_stopgrad": ("stopgrad=False,predictor=mlp", "no stop-grad"),
    "no_predictor": ("stopgrad=True,predictor=none", "no predictor (h = identity)"),
    "frozen_predictor": ("stopgrad=True,predictor=frozen", "predictor frozen at random init"),
    "constlr_predictor": ("stopgrad=True,predictor=constlr", "predictor with constant lr"),
    "mean_target": ("stopgrad=True,predictor=none,target=mean_view", "Su: target z(x̄), stop-grad, no predictor"),
    "mean_target_nosg": ("stopgrad=False,predictor=none,target=mean_view",
                         "Su: target z(x̄), no stop-grad, no predictor"),
}
MAIN = ("simsiam", "no_stopgrad")
# Seconds per run (500 steps + 6 checkpoint evaluations) measured in the default study on 2 idle CPU cores
# (experiments/simsiam/results.json: 36-44 s view targets, ~60 s mean-view), for the --dry_run estimate.
EST_S = {"view": 45.0, "mean_view": 65.0, "tiny": 12.0}
COLLAPSE_ERANK = 2.0


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  """Seed 0 of every variant first, then the further seeds (an interrupted study still covers every row)."""
  if scale not in ("default", "tiny"):
    raise ValueError(f"simsiam scales are default, tiny; got {scale!r}.")
  every = seeds is not None  # --seeds K: K seeds of every variant; default: 3 of the main two, 1 of the rest
  seeds = seeds or (1 if scale == "tiny" else 3)
  variants = ("simsiam", "no_predictor") if scale == "tiny" else tuple(VARIANTS)  # tiny: the fast compiles
  runs = []
  for seed in range(seeds):
    for v in variants:
      if seed == 0 or v in MAIN or every:
        arg = VARIANTS[v][0] + f",seed={seed}" + (",runlocal" if scale == "tiny" else "")
        est = EST_S["tiny" if scale == "tiny" else "mean_view" if "mean_view" in arg else "view"]
        runs.append(launcher.Run(arg.replace(",", "_").replace("=", ""), f"{CONFIG}:{arg}",
                                 {"variant": v, "seed": seed}, est))
  return runs


# ------------------------------------------------------------------------------------------- Evaluation.

_CACHE: dict = {}


def _evaluator(config):
  """One compiled Evaluator per network shape (variants share it) over the cached train/test arrays."""
  from experiments.simsiam import evaluate  # pylint: disable=g-import-not-at-top
  if "data" not in _CACHE:
    _CACHE["data"] = tuple(evaluate.load_split(config, s) for s in (config.data.train_split, config.data.eval_split))
  key = json.dumps([config.model.to_dict(), config.task.to_dict()], sort_keys=True, default=str)
  if key not in _CACHE:
    _CACHE[key] = evaluate.Evaluator(config, *_CACHE["data"])
  return _CACHE[key]


def train_curves(run_dir: str) -> dict[str, list]:
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  # Curve name -> the training monitor it reads (tasks/simsiam.py logs z/std and the singular-value rank z/sv_rank,
  # the statistic the former z_erank was; runs from before that rename logged z_std / z_erank).
  keys = {"loss": "loss", "z_std": "z/std", "z_erank": "z/sv_rank", "grad_norm/encoder": "grad_norm/encoder",
          "grad_norm/predictor": "grad_norm/predictor"}
  rows = [m for m in metrics_lib.read_metrics(run_dir) if "train/loss" in m]
  return {"step": [int(m["step"]) for m in rows],
          **{k: [m.get(f"train/{v}", m.get(f"train/{k}")) for m in rows] for k, v in keys.items()}}


def evaluate(run, config, run_dir: str, record: dict) -> dict:
  """kNN / probe / collapse statistics of step 0 and of every kept checkpoint."""
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  ev = _evaluator(config)
  curve = [{"step": 0, **ev(ev.init_variables(config.seed), probe=True)}]
  ckpts = os.path.join(run_dir, "checkpoints")
  steps = [] if "error" in record else sorted(int(p) for p in os.listdir(ckpts) if p.isdigit())
  for step in steps:
    state, _ = checkpoint.load_state(run_dir, step)
    curve.append({"step": step, **ev({"params": state["params"], **state["extra"]}, probe=step == steps[-1])})
  return dict(curve=curve, final=curve[-1] if steps else {}, untrained=curve[0], proj_dim=int(config.task.proj_dim),
              steps=int(config.num_train_steps), train_curves=train_curves(run_dir))


def extras(workdir: str, scale: str = "default") -> dict:
  """Raw-input kNN and linear probe (the floor every representation should clear)."""
  del workdir, scale
  from experiments.simsiam import evaluate  # pylint: disable=g-import-not-at-top
  config = launcher.load_run_config(plan()[0], ())
  return {"raw": evaluate.raw_baselines(evaluate.load_split(config, "train"), evaluate.load_split(config, "test"))}


# ------------------------------------------------------------------------------------------- Samples + claims.


def by_variant(records) -> dict[str, list[dict]]:
  out = collections.defaultdict(list)
  for r in records:
    if not r.get("error") and r.get("final"):
      out[r["variant"]].append(r)
  return dict(out)


def grad_ratio(r: dict, lo: float, hi: float) -> float:
  """Mean ||g_predictor|| / ||g_encoder|| over logged steps in (lo·T, hi·T] (lo < 0: from the first window)."""
  tc = r.get("train_curves", {})
  vals = [p / e for s, p, e in zip(tc.get("step", []), tc.get("grad_norm/predictor") or [],
                                   tc.get("grad_norm/encoder") or []) if lo * r["steps"] < s <= hi * r["steps"]
          and p is not None and e]
  return float(np.mean(vals)) if vals else float("nan")


def samples(records) -> dict[str, dict]:
  """{metric/variant: {seed: value}}; "0" suffix = the untrained network (step 0 of the same seed)."""
  out: dict[str, dict] = {}
  for v, rs in by_variant(records).items():
    for r in rs:
      for k in ("probe", "knn", "z_erank", "z_std"):
        out.setdefault(f"{k}/{v}", {})[r["seed"]] = r["final"].get(k, float("nan"))
        out.setdefault(f"{k}0/{v}", {})[r["seed"]] = r["untrained"].get(k, float("nan"))
      out.setdefault(f"loss/{v}", {})[r["seed"]] = r.get("train", {}).get("loss", float("nan"))
      first = r["train_curves"]["step"][0] / r["steps"] if r.get("train_curves", {}).get("step") else 0
      out.setdefault(f"ratio_first/{v}", {})[r["seed"]] = grad_ratio(r, -1, first)
      out.setdefault(f"ratio_mid/{v}", {})[r["seed"]] = grad_ratio(r, 0.1, 0.2)
  return out


def claims(d: int, raw_probe: float | None) -> list[C.Claim]:
  out = []
  for k, v in (("1", "no_stopgrad"), ("2", "no_predictor")):
    what = "Without stop-gradient" if k == "1" else "Without the predictor (stop-gradient kept)"
    out += [C.Claim(f"{k}a", f"{what} z collapses: effective rank of z < {COLLAPSE_ERANK:g}", "one_sample",
                    f"z_erank/{v}", direction="<", reference=COLLAPSE_ERANK, family=v),
            C.Claim(f"{k}b", f"{what} the collapse std of z falls below its untrained value", "paired",
                    f"z_std/{v}", f"z_std0/{v}", direction="<", family=v, digits=4),
            C.Claim(f"{k}c", f"{what} the linear probe ends below the untrained network", "paired",
                    f"probe/{v}", f"probe0/{v}", direction="<", family=v, scale=100, digits=1)]
  out += [C.Claim("3a", "SimSiam: z_std ≈ 1/√d (equivalent within ±0.5/√d)", "one_sample", "z_std/simsiam",
                  direction="~", margin=0.5 / math.sqrt(d), reference=1 / math.sqrt(d), family="simsiam", digits=4),
          C.Claim("3b", f"SimSiam: high effective rank of z (> d/4 = {d / 4:g})", "one_sample", "z_erank/simsiam",
                  reference=d / 4, family="simsiam", digits=1),
          C.Claim("3c", "SimSiam: linear probe above the untrained network", "paired", "probe/simsiam",
                  "probe0/simsiam", family="simsiam", scale=100, digits=1)]
  if raw_probe is not None:
    out.append(C.Claim("3d", "SimSiam: linear probe above the raw input signals", "one_sample", "probe/simsiam",
                       reference=raw_probe, family="simsiam", scale=100, digits=1))
  out += [C.Claim("4a", "A predictor frozen at random init learns worse: probe below SimSiam", "welch",
                  "probe/frozen_predictor", "probe/simsiam", direction="<", family="frozen", scale=100, digits=1),
          C.Claim("4b", "A frozen predictor's training loss stays higher than SimSiam's", "welch",
                  "loss/frozen_predictor", "loss/simsiam", family="frozen", digits=3),
          C.Claim("5", "A constant-lr predictor is not worse than a decayed one (non-inferiority, margin 1 point; "
                  "paper 68.1 vs 67.7)", "welch", "probe/constlr_predictor", "probe/simsiam", margin=-0.01,
                  scale=100, digits=1),
          C.Claim("6", "Su's fast predictor (our operationalisation): ‖∇pred‖/‖∇enc‖ of the first logging window "
                  "exceeds its mean over 10–20% of training", "paired", "ratio_first/simsiam", "ratio_mid/simsiam",
                  digits=3)]
  return out


def toy_check() -> tuple[bool, str]:
  """Su's toy ODE l = ½(φθ − θ)² (deterministic: a tolerance check, not a statistical claim)."""
  from kexue_jax.tasks import simsiam  # pylint: disable=g-import-not-at-top
  phi_s, th_s = (float(a[-1]) for a in simsiam.su_toy_dynamics(True))
  phi_f, th_f = (float(a[-1]) for a in simsiam.su_toy_dynamics(False))
  ok = abs(th_s - math.sqrt(0.65)) < 0.01 and abs(phi_s - 1) < 0.01 and th_f < 0.01
  return ok, (f"stop-grad: φ → {phi_s:.4f}, θ → {th_s:.4f} (√0.65 = {math.sqrt(0.65):.4f}); full gradient: "
              f"φ → {phi_f:.4f}, θ → {th_f:.4f} (Euler, dt = 1e-3, t = 20)")


# ------------------------------------------------------------------------------------------- Tables + plots.


def _stat(rs, key, where="final") -> stats.Stat:
  return stats.Stat([float(r[where][key]) for r in rs if np.isfinite(r[where].get(key, np.nan))])


def table_ablation(g, raw) -> str:
  rows = []
  for v, (_, label) in VARIANTS.items():
    if v in g:
      rs, d = g[v], g[v][0]["proj_dim"]
      rows.append([label, published.ABLATION.get(v, ("", "—"))[1], _stat(rs, "probe").fmt(100),
                   _stat(rs, "knn").fmt(100), f"{_stat(rs, 'z_std').fmt(1, 4)} ({1 / math.sqrt(d):.4f})",
                   _stat(rs, "z_erank").fmt(1, 1), _stat(rs, "loss", "train").fmt(1, 3), len(rs)])
  un = g.get("simsiam", [])
  if un:
    rows.append(["untrained network (step 0, BN stats of the train set)", f"{published.BYOL_RANDOM_INIT_LINEAR} (BYOL)",
                 _stat(un, "probe", "untrained").fmt(100), _stat(un, "knn", "untrained").fmt(100),
                 _stat(un, "z_std", "untrained").fmt(1, 4), _stat(un, "z_erank", "untrained").fmt(1, 1), "—", len(un)])
  if raw:
    rows.append(["raw input signals", "—", f"{raw['probe'] * 100:.1f}", f"{raw['knn'] * 100:.1f}", "—", "—", "—", "—"])
  return R.table(["variant", "paper (ImageNet top-1 %)", "linear probe %", "kNN %", "z_std (1/√d)", "erank(z)",
                  "final train loss", "seeds"], rows)


def table_paper() -> str:
  return R.table(["variant", "the paper's row", "what the paper reports"],
                 [[VARIANTS[v][1], f"{row}: {num}", note] for v, (row, num, note) in published.ABLATION.items()])


def table_curve(g) -> str:
  steps = sorted({c["step"] for rs in g.values() for r in rs for c in r["curve"]})
  rows = [[VARIANTS[v][1]] + [f"{np.mean(x) * 100:.1f}" if (x := [c['knn'] for r in g[v] for c in r['curve']
                                                                   if c['step'] == s]) else "—" for s in steps]
          for v in VARIANTS if v in g]
  return R.table(["variant"] + [str(s) for s in steps], rows)


def plots(g, raw, out_dir) -> list[str]:
  fig, ax = R.figure(2, 2)
  for k, v in enumerate(VARIANTS):
    for i, r in enumerate(g.get(v, [])):
      tc, kw = r["train_curves"], dict(color=f"C{k}", alpha=0.8, lw=1.2, label=VARIANTS[v][1] if i == 0 else None)
      ax[0, 0].plot(tc["step"], tc["z_std"], **kw)
      ax[0, 1].plot(tc["step"], tc["z_erank"], **kw)
      ax[1, 1].plot(tc["step"], [p / e if p is not None and e else np.nan for p, e in
                                 zip(tc["grad_norm/predictor"], tc["grad_norm/encoder"])], **kw)
      ax[1, 0].plot([c["step"] for c in r["curve"]], [c["knn"] * 100 for c in r["curve"]], marker="o", ms=3, **kw)
  if raw:
    ax[1, 0].axhline(raw["knn"] * 100, color="gray", ls=":", label="raw input")
  ax[0, 0].set(xlabel="step", ylabel="collapse std of z/‖z‖ (train batch)")
  ax[0, 1].set(xlabel="step", ylabel="effective rank of z (train batch)", yscale="log")
  ax[1, 0].set(xlabel="step", ylabel="kNN accuracy % (test)")
  ax[1, 1].set(xlabel="step", ylabel="‖∇ predictor‖ / ‖∇ encoder‖", yscale="log")
  return [R.save(fig, out_dir, "fig_curves.png")]


def write_report(records, extras_, out_dir: str, meta: dict) -> str:
  g = by_variant(records)
  d = next(iter(g.values()))[0]["proj_dim"] if g else 64
  raw = extras_.get("raw")
  data = samples(records)
  verdicts = C.judge_all(claims(d, raw and raw["probe"]), data)
  ok, toy = toy_check()
  os.makedirs(out_dir, exist_ok=True)
  return R.write(__file__, out_dir, meta, verdicts, data, records, plots(g, raw, out_dir) if g else [], d=d,
                 steps=next(iter(g.values()))[0]["steps"] if g else 0, runs=len(records),
                 toy=f"**{'✅ holds' if ok else '❌ does not hold'}** — {toy}", ablation=table_ablation(g, raw),
                 paper=table_paper(), curve=table_curve(g))
