r"""SimSiam: why it does not collapse (issue #6) -- ablations on MNIST-1D, checkpoint evaluations, claims.

Every run is configs/simsiam/mnist1d.py with one argument string; after training, the untrained initialisation
(step 0) and every kept checkpoint are evaluated (kexue_jax/evals/frozen_features.py). The report's prose is
report_template.md.
"""
from __future__ import annotations

import collections
import json
import math

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
    "headbn_none": ("stopgrad=True,predictor=mlp,headbn=none", "no BN in the heads"),
    "headbn_hidden": ("stopgrad=True,predictor=mlp,headbn=hidden", "BN on the heads' hidden layers only"),
    "headbn_all": ("stopgrad=True,predictor=mlp,headbn=all", "BN also on the predictor output"),
    "simclr": ("predictor=none,objective=simclr", "SimCLR reference (NT-Xent on z1, z2; T = 0.5)"),
    "mean_target": ("stopgrad=True,predictor=none,target=mean_view", "Su: target z(x̄), stop-grad, no predictor"),
    "mean_target_nosg": ("stopgrad=False,predictor=none,target=mean_view",
                         "Su: target z(x̄), no stop-grad, no predictor"),
}
SCALES = ("default", "tiny")
MAIN = ("simsiam", "no_stopgrad")  # 5 seeds each (the paper's Fig. 2 has 5 trials); every other arm 3
# --dry_run seconds per run on 2 idle CPU cores, from 2000-step runs of seed 0 (the config's docstring): ~65 steps/s
# (view targets), ~45 (mean-view), ~12 s of compiles, ~1.5 s per checkpoint evaluation.
EST_S = {"view": 32.0, "mean_view": 45.0, "tiny": 12.0}


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  tiny = scale == "tiny"
  variants = ("simsiam", "no_predictor") if tiny else tuple(VARIANTS)  # tiny: the fast compiles

  def run(v: str, seed: int) -> launcher.Run:
    arg = VARIANTS[v][0] + f",seed={seed}" + ",runlocal" * tiny
    est = EST_S["tiny" if tiny else "mean_view" if "mean_view" in arg else "view"]
    return launcher.Run(launcher.slug(arg), f"{CONFIG}:{arg}", {"variant": v, "seed": seed}, est)
  return launcher.seed_major([(v, 1 if tiny else 5 if v in MAIN else 3) for v in variants], seeds, run)


_CACHE: dict = {}


def _evaluator(config):
  """One compiled Evaluator per network shape (variants share it)."""
  from kexue_jax.evals import frozen_features  # pylint: disable=g-import-not-at-top
  key = json.dumps([config.model.to_dict(), config.task.to_dict()], sort_keys=True, default=str)
  if key not in _CACHE:
    _CACHE[key] = frozen_features.Evaluator(config, *frozen_features.load_splits(config))
  return _CACHE[key]


# Curve name -> the training monitor it reads (tasks/simsiam.py, logged every log_every_steps on the train batch).
TRAIN_KEYS = {"loss": "loss", "z_std": "z/std", "z_sv_rank": "z/sv_rank", "z_cov_rank": "z/cov_rank",
              "z_top3_var": "z/top3_var", "h_cov_rank": "h/cov_rank", "grad_norm/encoder": "grad_norm/encoder",
              "grad_norm/predictor": "grad_norm/predictor"}


def train_curves(run_dir: str) -> dict[str, list]:
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  rows = [m for m in metrics_lib.read_metrics(run_dir) if "train/loss" in m]
  return {"step": [int(m["step"]) for m in rows],
          **{k: [m.get(f"train/{v}") for m in rows] for k, v in TRAIN_KEYS.items()}}


def evaluate(run, config, run_dir: str, record: dict) -> dict:
  """kNN / probe / collapse statistics of step 0 and of every kept checkpoint."""
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  ev = _evaluator(config)
  curve = [{"step": 0, **ev(ev.init_variables(config.seed), probe=True)}]
  steps = [] if "error" in record else checkpoint.saved_steps(run_dir)
  for step in steps:
    state, _ = checkpoint.load_state(run_dir, step)
    curve.append({"step": step, **ev({"params": state["params"], **state["extra"]}, probe=True)})
  return dict(curve=curve, final=curve[-1] if steps else {}, untrained=curve[0], proj_dim=int(config.task.proj_dim),
              steps=int(config.num_train_steps), train_curves=train_curves(run_dir))


def extras(workdir: str, scale: str = "default") -> dict:
  """Raw-input kNN and linear probe (the floor every representation should clear)."""
  del workdir, scale
  from kexue_jax.evals import frozen_features  # pylint: disable=g-import-not-at-top
  return {"raw": frozen_features.raw_baselines(*frozen_features.load_splits(launcher.load_run_config(plan()[0], ())))}


def by_variant(records) -> dict[str, list[dict]]:
  out = collections.defaultdict(list)
  for r in (r for r in R.finished(records) if r.get("final")):
    out[r["variant"]].append(r)
  return dict(out)


def _ratios(tc: dict) -> list:
  """||g_predictor|| / ||g_encoder|| at each logged step (None where a monitor is missing)."""
  return [p / e if p is not None and e else None
          for p, e in zip(tc.get("grad_norm/predictor") or [], tc.get("grad_norm/encoder") or [])]


def _window(r: dict, key: str, lo: float, hi: float) -> list[float]:
  """Logged training values of ``key`` ("ratio": the gradient ratio) at steps in (lo·T, hi·T] (lo < 0: from the
  first logged step)."""
  tc = r.get("train_curves", {})
  values = _ratios(tc) if key == "ratio" else tc.get(key) or []
  return [v for st, v in zip(tc.get("step", []), values) if lo * r["steps"] < st <= hi * r["steps"] and v is not None]


def window_mean(r: dict, key: str, lo: float, hi: float) -> float:
  """Mean of ``_window`` (NaN when empty). ("loss", 0.9, 1): the final train loss, also defined for a run resumed
  at its last step; ("ratio", lo, hi): the mean ||g_predictor|| / ||g_encoder||."""
  return float(np.mean(_window(r, key, lo, hi) or [np.nan]))


FINAL = ("probe", "knn", "z_std", "z_sv_rank", "z_cov_rank", "z_top3_var", "h_cov_rank", "h_sv_rank", "h_top3_var")


def samples(records) -> dict[str, dict]:
  """{metric/variant: {seed: value}}; a "0" suffix = the untrained network (step 0 of the same seed)."""
  out: dict[str, dict] = {}
  for v, rs in by_variant(records).items():
    for r in rs:
      put = lambda k, x, r=r, v=v: out.setdefault(f"{k}/{v}", {}).__setitem__(r["seed"], float(x))
      for k in FINAL:
        put(k, r["final"].get(k, np.nan))
        put(k + "0", r["untrained"].get(k, np.nan))
      put("loss", window_mean(r, "loss", 0.9, 1.0))
      late = _window(r, "loss", 0.5, 1.0)   # instability: sd of the logged train loss over the second half
      put("loss_sd", np.std(late, ddof=1) if len(late) > 1 else np.nan)
      first = r["train_curves"]["step"][0] / r["steps"] if r.get("train_curves", {}).get("step") else 0
      ratio_first, ratio_mid = window_mean(r, "ratio", -1, first), window_mean(r, "ratio", 0.1, 0.2)
      put("ratio_first", ratio_first)
      put("ratio_mid", ratio_mid)
      put("ratio_drop", ratio_first / ratio_mid)
  return out


COLLAPSE_RANK, COLLAPSE_TOP3 = 2.0, 0.95  # declared before the 1000-step study (config docstring: seed-0 pilot)
# Display (scale, digits) of a metric in claims and tables (default (1, 2)); a claim's family by the first
# character of its id (claims that share data: Holm within it).
DISPLAY = {"probe": (100, 1), "knn": (100, 1), "z_top3_var": (1.0, 3), "z_std": (1.0, 4), "z_sv_rank": (1.0, 1),
           "loss": (1.0, 3), "loss_sd": (1.0, 4), "ratio_first": (1.0, 3)}
FAMILIES = {"1": "no_stopgrad", "2": "no_predictor", "3": "simsiam", "4": "frozen", "6": "ratio", "7": "headbn",
            "9": "mean_target"}


def claim(id_: str, text: str, a: str, b: str | float, **kw) -> C.Claim:
  """b a sample "metric/arm": paired over seeds when of a's arm, Welch across arms; b a number: one-sample."""
  scale, digits = DISPLAY.get(a.split("/")[0], (1.0, 2))
  if isinstance(b, float):
    test, b, kw = "one_sample", None, dict(kw, reference=b)
  else:
    test = "paired" if a.split("/")[1] == b.split("/")[1] else "welch"
  return C.Claim(id_, text, test, a, b, family=FAMILIES.get(id_[0]), scale=scale, digits=digits, **kw)


def claims(d: int, raw_probe: float | None) -> list[C.Claim]:
  """Declared before the default 1000-step run (tests, margins, minimum n = 3 seeds)."""
  rank, top3 = f"covariance rank of z > {COLLAPSE_RANK:g}", f"{COLLAPSE_TOP3:.0%}"
  out = []
  for k, v, what in (("1", "no_stopgrad", "Without stop-gradient"),
                     ("2", "no_predictor", "Without the predictor (stop-gradient kept)")):
    out += [claim(f"{k}a", f"{what} z collapses: {rank.replace('>', '<')}", f"z_cov_rank/{v}", COLLAPSE_RANK,
                  direction="<"),
            claim(f"{k}b", f"{what} the top 3 principal components hold > {top3} of z's variance", f"z_top3_var/{v}",
                  COLLAPSE_TOP3),
            claim(f"{k}c", f"{what} the backbone's kNN accuracy ends below SimSiam's", f"knn/{v}", "knn/simsiam",
                  direction="<"),
            claim(f"{k}d", f"{what} the backbone's linear probe ends below SimSiam's", f"probe/{v}", "probe/simsiam",
                  direction="<"),
            claim(f"{k}e", f"{what} the backbone itself does not collapse: its probe ends above the untrained "
                  "network's", f"probe/{v}", f"probe0/{v}")]
  out += [claim("3a", f"SimSiam does not collapse: {rank}", "z_cov_rank/simsiam", COLLAPSE_RANK),
          claim("3b", f"SimSiam's z_std is nearer 1/√d = {1 / math.sqrt(d):.4f} than without stop-gradient "
                "(higher)", "z_std/simsiam", "z_std/no_stopgrad"),
          claim("3c", "SimSiam: linear probe above the untrained network", "probe/simsiam", "probe0/simsiam")]
  if raw_probe is not None:
    out.append(claim("3d", "SimSiam: linear probe above the raw input signals", "probe/simsiam", raw_probe))
  return out + [
      claim("4a", "A predictor frozen at random init learns worse: probe below SimSiam", "probe/frozen_predictor",
            "probe/simsiam", direction="<"),
      claim("4b", "A frozen predictor's training loss stays higher than SimSiam's", "loss/frozen_predictor",
            "loss/simsiam"),
      claim("5", "A constant-lr predictor is not worse than a decayed one (non-inferiority, margin 1 point; paper "
            "68.1 vs 67.7)", "probe/constlr_predictor", "probe/simsiam", margin=-0.01),
      claim("6a", "Su's fast predictor (our operationalisation): ‖∇pred‖/‖∇enc‖ of the first logging window exceeds "
            "its mean over 10–20% of training", "ratio_first/simsiam", "ratio_mid/simsiam"),
      claim("6b", "The same fall of the gradient ratio happens without stop-gradient (if it holds, the ratio does "
            "not single out SimSiam)", "ratio_first/no_stopgrad", "ratio_mid/no_stopgrad"),
      claim("6c", "The ratio falls more (first / 10–20% window) in SimSiam than without stop-gradient",
            "ratio_drop/simsiam", "ratio_drop/no_stopgrad"),
      claim("7a", "No BN in the heads learns worse: probe below SimSiam (paper 34.6 vs 68.1)", "probe/headbn_none",
            "probe/simsiam", direction="<"),
      claim("7b", f"No BN in the heads is not a collapse (paper): {rank}", "z_cov_rank/headbn_none", COLLAPSE_RANK),
      claim("7c", "BN on the hidden layers only ≈ the default (equivalent within ±1.5 points; paper 67.4 vs 68.1)",
            "probe/headbn_hidden", "probe/simsiam", direction="~", margin=0.015),
      claim("7d", "BN also on the predictor output is unstable (paper): the train loss's sd over the second half of "
            "training exceeds SimSiam's", "loss_sd/headbn_all", "loss_sd/simsiam"),
      claim("8", "SimSiam is not worse than the SimCLR reference (non-inferiority, margin 1 point; paper ImageNet "
            "68.1 vs 66.5, CIFAR-10 91.8 vs 91.1)", "probe/simsiam", "probe/simclr", margin=-0.01),
      claim("9a", f"Su's open question: target z(x̄) with stop-gradient and no predictor does not collapse "
            f"({rank})", "z_cov_rank/mean_target", COLLAPSE_RANK),
      claim("9b", f"Target z(x̄) without stop-gradient (Su's loss as written) collapses: {rank.replace('>', '<')}",
            "z_cov_rank/mean_target_nosg", COLLAPSE_RANK, direction="<")]


def toy_check() -> tuple[bool, str]:
  """Su's toy ODE l = ½(φθ − θ)² (deterministic: a tolerance check, not a statistical claim)."""
  from kexue_jax.tasks import simsiam  # pylint: disable=g-import-not-at-top
  phi_s, th_s = (float(a[-1]) for a in simsiam.su_toy_dynamics(True))
  phi_f, th_f = (float(a[-1]) for a in simsiam.su_toy_dynamics(False))
  ok = abs(th_s - math.sqrt(0.65)) < 0.01 and abs(phi_s - 1) < 0.01 and th_f < 0.01
  return ok, (f"stop-grad: φ → {phi_s:.4f}, θ → {th_s:.4f} (√0.65 = {math.sqrt(0.65):.4f}); full gradient: "
              f"φ → {phi_f:.4f}, θ → {th_f:.4f} (Euler, dt = 1e-3, t = 20)")


def _fmt(data, metric: str, arm: str, untrained: bool = False) -> str:
  """Mean ± sd over the seeds of sample metric/arm (its finite values), in the metric's DISPLAY scale."""
  return stats.cell(data.get(f"{metric}{'0' * untrained}/{arm}"), *DISPLAY.get(metric, (1.0, 2)))


COLUMNS = ("probe", "knn", "z_cov_rank", "z_sv_rank", "z_top3_var", "z_std", "h_cov_rank")


def table_ablation(g, data, raw) -> str:
  """The paper's Table 1 / 3 layout: one row per arm, the paper's number beside ours."""
  rows = [[label, published.ABLATION.get(v, ("", "—"))[1]] + [_fmt(data, k, v) for k in COLUMNS + ("loss",)]
          + [len(g[v])] for v, (_, label) in VARIANTS.items() if v in g]
  if "simsiam" in g:
    rows.append(["untrained network (step 0, BN stats of the train set)",
                 f"{published.BYOL_RANDOM_INIT_LINEAR} (BYOL)"]
                + [_fmt(data, k, "simsiam", untrained=True) for k in COLUMNS] + ["—", len(g["simsiam"])])
  if raw:
    rows.append(["raw input signals", "—", f"{raw['probe'] * 100:.1f}", f"{raw['knn'] * 100:.1f}"] + ["—"] * 7)
  return R.table(["variant", "paper (ImageNet top-1 %)", "linear probe %", "kNN %", "cov rank z", "sv rank z",
                  "top-3 var z", "z_std", "cov rank h", "final train loss", "seeds"], rows)


def table_paper() -> str:
  return R.table(["variant", "the paper's row", "what the paper reports"],
                 [[VARIANTS[v][1], f"{row}: {num}", note] for v, (row, num, note) in published.ABLATION.items()])


def _curve_mean(rs, key: str, step: int) -> float:
  return float(np.mean([c[key] for r in rs for c in r["curve"] if c["step"] == step and key in c] or [np.nan]))


def table_curve(g, key: str = "probe", scale: float = 100, digits: int = 1) -> str:
  steps = sorted({c["step"] for rs in g.values() for r in rs for c in r["curve"]})
  return R.table(["variant"] + [str(s) for s in steps],
                 [[VARIANTS[v][1]] + [f"{_curve_mean(g[v], key, s) * scale:.{digits}f}" for s in steps]
                  for v in VARIANTS if v in g])


def _band(ax, x, ys, **kw):
  """Mean over seeds with a min-max band (curves of equal length; NaN where a monitor is missing)."""
  y = np.array([[np.nan if v is None else v for v in row] for row in ys], float)
  if np.isnan(y).all():   # e.g. the gradient ratio of an arm without a predictor
    return
  ax.plot(x, np.nanmean(y, 0), **kw)
  ax.fill_between(x, np.nanmin(y, 0), np.nanmax(y, 0), color=kw["color"], alpha=0.15, lw=0)


PANELS = (("probe", "linear probe % (test, backbone)", "ckpt"), ("knn", "kNN % (test, backbone)", "ckpt"),
          ("z_cov_rank", "covariance rank of z (train batch)", "log"), ("z_sv_rank", "singular-value rank of z", "log"),
          ("z_top3_var", "top-3 variance fraction of z", ""), ("z_std", "collapse std of z/‖z‖", ""),
          ("h_cov_rank", "covariance rank of h (backbone)", "log"), ("ratio", "‖∇ predictor‖ / ‖∇ encoder‖", "log"))


def plots(g, raw, out_dir) -> list[str]:
  import matplotlib  # pylint: disable=g-import-not-at-top
  fig, axes = R.figure(4, 2, size=(13, 15))
  colors = matplotlib.colormaps["tab20"].colors[::2] + matplotlib.colormaps["tab20"].colors[1::2]
  for k, v in enumerate(v for v in VARIANTS if v in g):
    kw = dict(color=colors[k % len(colors)], lw=1.3, label=VARIANTS[v][1])
    for i, (ax, (key, label, kind)) in enumerate(zip(axes.flat, PANELS)):
      kw = {**kw, "label": VARIANTS[v][1] if i == 0 else None}   # one legend, on the first panel
      if kind == "ckpt":
        x = [c["step"] for c in g[v][0]["curve"]]
        _band(ax, x, [[c.get(key, np.nan) * 100 for c in r["curve"]] for r in g[v]], marker="o", ms=3, **kw)
      else:
        tc0 = g[v][0]["train_curves"]
        ys = [_ratios(r["train_curves"]) if key == "ratio" else r["train_curves"][key] for r in g[v]]
        _band(ax, tc0["step"], [y[:len(tc0["step"])] for y in ys], **kw)
      ax.set(xlabel="step", ylabel=label, yscale="log" if kind == "log" else "linear")
  if raw:
    axes[0, 0].axhline(raw["probe"] * 100, color="gray", ls=":", label="raw input")
    axes[0, 1].axhline(raw["knn"] * 100, color="gray", ls=":")
  return [R.save(fig, out_dir, "fig_curves.png")]


def write_report(records, extras_, out_dir: str, meta: dict) -> str:
  g, raw, data = by_variant(records), extras_.get("raw"), samples(records)
  first = next((rs[0] for rs in g.values()), dict(proj_dim=64, steps=0))
  ok, toy = toy_check()
  return R.write(__file__, out_dir, meta, C.judge_all(claims(first["proj_dim"], raw and raw["probe"]), data),
                 records, plots(g, raw, out_dir) if g else [], d=first["proj_dim"], steps=first["steps"],
                 toy=f"**{R.MARK[C.HOLDS if ok else C.FAILS]}** — {toy}", ablation=table_ablation(g, data, raw),
                 paper=table_paper(), curve=table_curve(g), curve_knn=table_curve(g, "knn"),
                 curve_rank=table_curve(g, "z_cov_rank", 1, 2))
