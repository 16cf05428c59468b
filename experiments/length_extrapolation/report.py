"""REPORT.md (+ PNG plots) of the length-extrapolation study from its results dict (study.to_results): the tables,
plots and copy-regime sections; the prose is report_template.md, the claims claims.py, Su's numbers published.py.

Uncertainty: every method is evaluated on the same test windows, so the tables' differences between methods are
paired over windows (mean of the per-window differences ± its SE); a single number is ± its SE over windows.
"""
from __future__ import annotations

import functools
import os
import re

import numpy as np
from scipy import stats as scipy_stats

from experiments.framework import claims as claims_lib
from experiments.framework import report as framework_report
from experiments.length_extrapolation import claims as le_claims
from experiments.length_extrapolation import methods as methods_lib
from experiments.length_extrapolation import published

HERE = os.path.dirname(os.path.abspath(__file__))
_table = functools.partial(framework_report.table, sep="---")


@functools.cache
def _blocks() -> dict:
  """The parts of report_template.md (framework report.blocks), read once."""
  return framework_report.blocks(os.path.join(HERE, "report_template.md"))


def _pct(v):
  return "n/a" if v is None else f"{100 * v:.2f}"


def _se(x) -> float:
  return float(x.std(ddof=1) / np.sqrt(len(x)))


class Results:
  """Accessors over the results dict; seed replicates ("name@s1") stay out of the tables (claims.py uses them)."""

  def __init__(self, res: dict):
    self.res, self.meta = res, res["meta"]
    self.n, self.ext = int(self.meta["train_length"]), int(self.meta.get("extension", 8))
    self.L8, self.contexts = self.n * self.ext, [self.n * k for k in (1, 2, 4, self.ext)]
    self.m = {k: v for k, v in res["methods"].items() if "@s" not in k}
    self.reps = {k: v for k, v in res["methods"].items() if "@s" in k}
    self.grown = [k for k, v in self.m.items() if "growing" in v]   # methods scored on the growing documents

  def acc(self, name, length, which="nonrep", key="acc"):
    """Per-window values, accuracies in percent (None if absent)."""
    r = (self.m.get(name) or self.reps.get(name) or {}).get("by_length", {}).get(str(length), {}).get(which)
    return None if r is None or key not in r else np.asarray(r[key], np.float64) * (1.0 if key == "loss" else 100.0)

  def mean(self, name, length, which="nonrep", key="acc"):
    a = self.acc(name, length, which, key)
    return None if a is None else float(a.mean())

  def paired(self, a, b, length, which="nonrep"):
    """(mean(a - b), SE) over the shared windows, in points."""
    x, y = self.acc(a, length, which), self.acc(b, length, which)
    return None if x is None or y is None else (float((x - y).mean()), _se(x - y) if len(x) > 1 else 0.0)

  def growing(self, name, ctx):
    """Mean loss on the growing documents' last N bytes with ``ctx`` bytes of context (None if absent)."""
    g = self.m.get(name, {}).get("growing", {}).get(str(ctx))
    return None if g is None else float(np.asarray(g["loss"], np.float64).mean())

  def cell(self, name, length, which="nonrep", se=True, none="–"):
    """"mean ± SE" of a method's windows (2 decimals)."""
    a = self.acc(name, length, which)
    return none if a is None else f"{a.mean():.2f}" + (f" ± {_se(a):.2f}" if se and len(a) > 1 else "")


# ------------------------------------------------------------------------------------------------ Tables.


def su_table(R: Results, names) -> str:
  rows = []
  for nm in names:
    row = published.su_row(nm, R.n, R.meta["model"].get("num_layers", 4)) or ""
    su = published.SU.get(row)
    rows.append([nm, row or "–", R.cell(nm, R.n), R.cell(nm, R.L8, "rep"), R.cell(nm, R.L8),
                 " | ".join(f"{v:.2f}" for v in su) if su else "– | – | –"])
  return _table(["method", "Su's row", f"ours {R.n} (train)", f"ours {R.L8} repeated", f"ours {R.L8} non-repeated",
                 "Su 512 (train)", "Su 4096 repeated", "Su 4096 non-repeated"], rows)


def _su_copy(name: str, n: int) -> str | None:
  """Su's row for a method on a copy-augmented checkpoint ("copy/x" ~ x, "copy-logn/x" ~ logn/x)."""
  m = re.fullmatch(r"copy(-logn)?/(.+)", name)
  return published.su_row(("logn/" if m.group(1) else "") + m.group(2), n) if m else None


def copy_table(R: Results) -> str:
  """The repeated column on the copy-augmented checkpoints, Su's numbers beside ours."""
  n, L8, rows = R.n, R.L8, []
  for k in [k for k in R.m if k.startswith(("copy/", "copy-logn/"))]:
    row = _su_copy(k, n)
    su, ct = published.SU.get(row) if row else None, R.acc(k, L8, "rep", "copy_acc")
    rows.append([k, row or "–", R.cell(k, n, none="n/a"), R.cell(k, n, "rep", se=False, none="n/a"),
                 R.cell(k, L8, none="n/a"), R.cell(k, L8, "rep", none="n/a"),
                 "n/a" if ct is None else f"{ct.mean():.2f}"]
                + (["–", "–"] if su is None else [f"{x:.2f}" for x in su[1:]]))
  return _table(["method", "Su's row", f"ours {n} non-rep", f"ours {n} rep", f"ours {L8} non-rep", f"ours {L8} rep",
                 f"ours {L8} rep, copy targets", "Su 4096 rep", "Su 4096 non-rep"], rows)


def _value_table(names, columns, value, fmt: str = "{:.2f}") -> str:
  """A row per method, a column per (header, x): value(name, x) formatted, "" where it was not measured."""
  return _table(["method"] + [h for h, _ in columns],
                [[nm] + ["" if (v := value(nm, x)) is None else fmt.format(v) for _, x in columns] for nm in names])


def lengths_table(R: Results, names, which="nonrep", key="acc") -> str:
  return _value_table(names, [(str(L), L) for L in R.meta["test_lengths"]],
                      lambda nm, L: R.mean(nm, L, which, key), "{:.3f}" if key == "loss" else "{:.2f}")


def paired_table(R: Results, names, ref="rope") -> str:
  f = lambda d: "n/a" if d is None else f"{d[0]:+.2f} ± {d[1]:.2f}"
  return _table(["method", "ckpt", f"Δacc vs {ref} at {R.n} (tax)", f"Δacc vs {ref} at {R.L8} non-rep",
                 f"Δacc vs {ref} at {R.L8} repeated"],
                [[nm, R.m[nm]["ckpt"], f(R.paired(nm, ref, R.n)), f(R.paired(nm, ref, R.L8)),
                  f(R.paired(nm, ref, R.L8, "rep"))] for nm in names])


def _has_tail(res: dict) -> bool:
  """Whether the runs recorded tail accuracies (older results did not: there the "tail" protocol repeats "all")."""
  return any("tail_acc" in (r.get("nonrep") or {}) for m in res["methods"].values()
             for r in m.get("by_length", {}).values())


def logn_gains_md(R: Results, res: dict) -> str:
  """The log-n gains of claims.logn_gains (paired over training seeds at 8x), a column per evaluation protocol."""
  rows = [r for r in le_claims.logn_gains(res) if r["protocol"] != "tail" or _has_tail(res)]
  if not rows:
    return ""
  protocols = [p for p in le_claims.PROTOCOLS if any(r["protocol"] == p for r in rows)]
  cells = {(r["pair"], r["protocol"]): r for r in rows}
  cell = lambda r: "–" if r is None else (f"{r['effect']:+.2f} ± {r['se']:.2f} "
                                          f"({r['ci'][0]:+.2f} to {r['ci'][1]:+.2f}), n = {r['n']}")
  pairs = list(dict.fromkeys(r["pair"] for r in rows))
  table = _table(["log n", "method - baseline"] + [f"protocol `{p}`" for p in protocols],
                 [["pre-trained" if "logn/" in pr else "inference-only †", f"`{pr}`"]
                  + [cell(cells.get((pr, p))) for p in protocols] for pr in pairs])
  return _blocks()["logn_gains"].substitute(
      L8=R.L8, n=R.n, table=table, tail="" if _has_tail(res) else _blocks()["logn_no_tail"].substitute()) + "\n\n"


def curve_table(curve, n: int, L8: int, far: bool) -> str:
  """Copy check (baseline / probe) per checkpoint: accuracies at L_train (and at 8x for the probes), in %."""
  head = ([f"non-rep {n}", f"rep {n}", f"rep {n} copy targets", f"gap {n}", f"random bytes {n}, copy targets",
           f"non-rep {L8}", f"rep {L8}", f"rep {L8} copy targets"] if far else
          ["non-repeated", "repeated", "repeated, copy targets only", "gap", "random bytes, copy targets"])
  rows = [[c["step"], _pct(c["nonrep_acc"]), _pct(c["rep_acc"]), _pct(c["rep_copy_acc"]),
           f"{100 * (c['rep_acc'] - c['nonrep_acc']):+.2f}", _pct(c.get("rand_copy_acc"))]
          + [_pct(c[k + "_8x"]) for k in ("nonrep_acc", "rep_acc", "rep_copy_acc") if far] for c in curve]
  return _table(["step"] + head, rows)


# ------------------------------------------------------------------------------------------------ Plots.


def _lines(out_dir, name, series, xs, xlabel, ylabel, title, size, vline=None, ylog=False, xlog=True) -> str:
  """One panel in the house style: a line per (label, ys) over xs (log2-spaced unless xlog=False; None skipped)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  fig, axes = framework_report.figure(size=size)
  ax = axes[0, 0]
  for i, (label, ys) in enumerate(series):
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if pts:
      ax.plot(*zip(*pts), label=label, color=matplotlib.colormaps["tab20"](i % 20), marker="os^vDP*X"[i % 8], ms=4,
              ls=("-", "--", ":")[(i // 8) % 3], lw=1.4)
  if xlog:
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
  if ylog:
    ax.set_yscale("log")
  if vline:
    ax.axvline(vline, color="gray", ls=":", lw=1)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  return framework_report.save(fig, out_dir, name, ncol=2)


def plot_all(R: Results, out_dir: str) -> str:
  """The PNGs and the report's Plots section."""
  os.makedirs(out_dir, exist_ok=True)
  core, lens = [k for k in R.m if R.m[k].get("core")], R.meta["test_lengths"]
  acc = lambda name, names, which, title: _lines(
      out_dir, name, [(nm, [R.mean(nm, L, which) for L in lens]) for nm in names], lens,
      "test length (tokens); dotted = L_train",
      f"next-token accuracy (%), {'repeated' if which == 'rep' else 'non-repeated'} set",
      title + " (± SE in the tables)", (8, 5), vline=R.n)
  grow = [(nm, [R.growing(nm, c) for c in R.contexts]) for nm in R.grown]
  on_rope = [k for k in core if R.m[k]["ckpt"] == "rope"]
  trained = [k for k in core if R.m[k]["ckpt"] != "rope"] + ["rope"] * ("rope" in R.m)
  figs = [("RoPE checkpoint", acc("acc_vs_length_rope.png", on_rope, "nonrep",
                                  "Inference-time methods on the RoPE checkpoint (non-repeated)")),
          ("log n and pre-training methods", acc("acc_vs_length_pretrained.png", trained, "nonrep",
                                                 "Log-n checkpoint and pre-training-time methods (non-repeated)")),
          ("repeated", acc("acc_vs_length_repeated.png", core, "rep", "Repeated set")),
          ("growing context", _lines(
              out_dir, "growing_context.png", [(nm, [None] * len(ys) if None in ys else ys) for nm, ys in grow],
              R.contexts, f"context length C (the same last {R.n} tokens are scored)", "loss (nats/byte)",
              "Growing-context protocol (9948 / bojone/rerope eval_loss.py)", (7.5, 4.8), ylog=True))]
  cc = R.res.get("copy_vs_steps") or []
  if cc:
    figs.append(("copy check vs steps", _lines(
        out_dir, "copy_vs_steps.png", [(label, [100 * c[key] for c in cc]) for key, label in (
            ("nonrep_acc", "non-repeated"), ("rep_acc", "repeated (all targets)"),
            ("rep_copy_acc", "repeated (copy targets)"))], [c["step"] for c in cc], "training step (baseline RoPE)",
        f"accuracy (%) at L = L_train = {R.n}", "Copy check: does the baseline copy within L_train?", (6, 4),
        xlog=False)))
  return "\n## Plots\n\n" + "\n\n".join(f"![{a}]({b})" for a, b in figs) + "\n"


# ------------------------------------------------------------------------------------------------ Copy regime.


def copy_trend(curve, tokens_per_step: float, target: float = 10.0) -> dict | None:
  """Least-squares slope of the copy gap (points) vs tokens over the last half (>= 3 points) of a copy-vs-steps
  curve, its standard error, and the tokens at which that line would reach `target` points. `reach_mtok` is None
  unless the gap is rising: the framework's one-sided linregress slope test holds at alpha / 2 = 0.025 (n - 2
  degrees of freedom: three points leave one, where a 2-SE slope has p ~ 0.15).

  A linear extrapolation of a measured trend, not a prediction: copying typically appears in a phase change,
  so the real budget can be smaller (a sudden jump) or larger (a plateau)."""
  pts = [(c["step"] * tokens_per_step, 100 * (c["rep_acc"] - c["nonrep_acc"])) for c in curve]
  pts = pts[-max(3, len(pts) // 2):]
  if len(pts) < 3 or not tokens_per_step:
    return None
  x, y = np.array([p[0] for p in pts]) / 1e6, np.array([p[1] for p in pts])
  fit, last_x, last_y = scipy_stats.linregress(x, y), float(x[-1]), float(y[-1])
  rising = claims_lib.judge(claims_lib.Claim("gap", "the copy gap rises", "trend", "gap"),
                            {"gap": list(zip(x, y))}).verdict == claims_lib.HOLDS
  reach = last_x + (target - last_y) / fit.slope if rising and last_y < target else None
  return {"slope_per_mtok": float(fit.slope), "slope_se": float(fit.stderr), "points": len(x), "last_mtok": last_x,
          "last_gap": last_y, "target": target, "reach_mtok": None if reach is None else float(reach)}


def trend_sentence(t: dict, n: int, tokens_per_s: float | None = None) -> str:
  T, target = _blocks(), f"{t['target']:.0f}"
  if t["last_gap"] >= t["target"]:
    verdict = T["trend_above"].substitute(target=target)
  elif t["reach_mtok"] is None:
    verdict = T["trend_flat"].substitute()
  else:
    cost = "" if not tokens_per_s else T["trend_cost"].substitute(
        ktok=f"{tokens_per_s / 1e3:.1f}", minutes=f"{t['reach_mtok'] * 1e6 / tokens_per_s / 60:.0f}")
    verdict = T["trend_reach"].substitute(target=target, reach=f"{t['reach_mtok']:.0f}", cost=cost,
                                          ratio=f"{t['reach_mtok'] / t['last_mtok']:.1f}")
  return T["trend"].substitute(points=t["points"], n=n, slope=f"{t['slope_per_mtok']:+.2f}", se=f"{t['slope_se']:.2f}",
                               last=f"{t['last_gap']:+.2f}", mtok=f"{t['last_mtok']:.1f}", verdict=verdict)


def _curves(res: dict) -> list[dict]:
  """The copy curves of the baselines and the probes: name (in the regime paragraph), title (of a baseline's
  section), curve, tokens per step, training tokens/s (the machine may have been shared), probe, trend."""
  n, runs, out = int(res["meta"]["train_length"]), res.get("runs", {}), []
  speed = lambda r: r["tokens"] / r["wall_time_s"] if r.get("tokens") and r.get("wall_time_s") else None
  for key, name, title, run in (
      ("copy_vs_steps", "the baseline (`rope.py`)", "baseline RoPE", "rope"),
      ("copy_vs_steps_copy_aug", f"the copy-augmented baseline (`rope.py:{methods_lib.COPY_ARG}`)",
       "copy-augmented RoPE, `rope_copy`", "rope_copy")):
    if res.get(key):
      out.append(dict(name=name, title=title, curve=res[key], tps=res["meta"].get("batch_size", 0) * n,
                      speed=speed(runs.get(run, {})), probe=None))
  for p in le_claims.probes(res):
    ps = p["summary"]
    out.append(dict(name=f"`rope.py:{p['arg']}`", title=None, curve=p["curve"], speed=speed(ps), probe=p,
                    tps=ps.get("tokens", 0) / max(1, ps.get("step", 1))))
  return [dict(c, trend=copy_trend(c["curve"], c["tps"])) for c in out]


def copy_regime_verdict(res: dict, curves: list[dict]) -> str:
  """One paragraph from the copy curves: which baselines copy or are rising, and the cheapest route's budget."""
  T = _blocks()
  copying = [c["name"] for c in curves if 100 * (c["curve"][-1]["rep_acc"] - c["curve"][-1]["nonrep_acc"]) > 10]
  if copying:
    return T["regime_yes"].substitute(copying=", ".join(copying),
                                      plain=", ".join(c["name"] for c in curves if c["name"] not in copying) or "none")
  routes = [(t["reach_mtok"] * 1e6 / c["speed"], c["name"], t) for c in curves
            if (t := c["trend"]) and t["reach_mtok"] is not None and c["speed"]]
  route = T["regime_flat"].substitute()
  if routes:
    secs, name, t = min(routes)
    k = len(res["meta"].get("variants", [])) or 1
    route = T["regime_route"].substitute(
        name=name, slope=f"{t['slope_per_mtok']:+.2f}", se=f"{t['slope_se']:.2f}", target=f"{t['target']:.0f}",
        reach=f"{t['reach_mtok']:.0f}", minutes=f"{secs / 60:.0f}", hours=f"{k * secs / 3600:.1f}", k=k)
  flat = [c["name"] for c in curves if not (c["trend"] or {}).get("reach_mtok")]
  return T["regime_no"].substitute(flat=", ".join(flat) or "none", route=route)


def copy_control_md(c: dict) -> str:
  s50 = next((r["step"] for r in c["curve"] if r["copy_acc"] >= 0.5), None)
  table = _table(["step", "sequences seen", "copy accuracy % (random bytes)", "train loss"],
                 [[r["step"], f"{r['sequences']:,}", _pct(r["copy_acc"]), f"{r['train_loss']:.3f}"]
                  for r in c["curve"]])
  return _blocks()["control"].substitute(
      config=c["config"], batch=c["batch_size"], tokens=c["train_length"] + 1, wall=f"{c['wall_s']:.0f}",
      hardware=c["hardware"], table=table, first="none" if s50 is None else f"step {s50}", steps=c["steps"])


def _copy_md(R: Results, res: dict) -> str:
  """The copy-augmented checkpoints, the copy regime, copy vs steps, probes, positive controls."""
  T, n, L8, curves = _blocks(), R.n, R.L8, _curves(res)
  out = [T["copy_aug"].substitute(copy_arg=methods_lib.COPY_ARG, L8=L8, n=n, half=L8 // 2, table=copy_table(R))
         ] if "copy/rope" in R.m else []
  out += [T["regime"].substitute(verdict=copy_regime_verdict(res, curves))] if curves else []
  for c in curves:
    trend = "" if c["trend"] is None else "\n\n" + trend_sentence(c["trend"], n, c["speed"])
    if not c["probe"]:
      out.append(T["curve"].substitute(title=c["title"], table=curve_table(c["curve"], n, L8, False), trend=trend))
      continue
    ps, (c0, c1) = c["probe"]["summary"], (c["curve"][0], c["curve"][-1])
    gap = lambda x: f"{100 * (x['rep_acc'] - x['nonrep_acc']):+.2f}"
    out.append(T["probe"].substitute(
        arg=c["probe"]["arg"], params=f"{ps.get('num_params', 0):,}", mtok=f"{ps.get('tokens', 0) / 1e6:.1f}",
        wall=f"{ps.get('wall_time_s', 0):.0f}", table=curve_table(c["curve"], n, L8, True), s0=c0["step"],
        s1=c1["step"], n=n, L8=L8, g0=gap(c0), g1=gap(c1), a0=_pct(c0["nonrep_acc"]), a1=_pct(c1["nonrep_acc"]),
        b0=_pct(c0["nonrep_acc_8x"]), b1=_pct(c1["nonrep_acc_8x"]), trend=trend))
  controls = [T["control_run"].substitute(name=c["name"], body=copy_control_md(c))
              for c in res.get("copy_controls") or []]
  out += [T["controls"].substitute(runs="\n\n".join(controls))] if controls else []
  return "\n".join(s + "\n" for s in out)


# ------------------------------------------------------------------------------------------------ Cost.


def _measured_md(R: Results, runs: dict, invs: list) -> str:
  """Wall time of the default study (the default variants and their seed replicates) and of the opt-in extras,
  over the invocations the former driver recorded (the launcher's runs have their wall time in the footer)."""
  T, meta = _blocks(), R.meta
  default = set(meta.get("default_variants") or
                [v for v in runs if not v.endswith("_copy") and not re.search(r"_s\d+$", v)])
  in_default = lambda v: re.sub(r"_s\d+$", "", v) in default
  evals = {d: sum(m.get("eval_time_s", 0) for m in [*R.m.values(), *R.reps.values()]
                  if in_default(m.get("ckpt", "")) == d) for d in (True, False)}
  train = {d: sum(r.get("wall_time_s", 0) for v, r in runs.items() if in_default(v) == d) for d in (True, False)}
  extra = [v for v in runs if not in_default(v)]
  minutes = lambda d: f"{(train[d] + evals[d]) / 60:.1f}"
  return T["cost_many"].substitute(
      variants=len(default), seeds=int(meta.get("seeds", 1)), invocations=len(invs), train=f"{train[True]:.0f}",
      runs=sum(1 for v in runs if in_default(v)), eval=f"{evals[True]:.0f}", minutes=minutes(True),
      mtok=f"{sum(r.get('tokens', 0) for v, r in runs.items() if in_default(v)) / 1e6:.1f}",
      extras="" if not extra else "\n" + T["cost_extras"].substitute(
          names=", ".join(f"`{v}`" for v in extra), train=f"{train[False]:.0f}", eval=f"{evals[False]:.0f}",
          minutes=minutes(False))) + "".join("\n" + T["invocation"].substitute(
              command=i["command"], date=i["date_utc"], total=f"{i['total_wall_s']:.0f}",
              minutes=f"{i['total_wall_s'] / 60:.1f}", train=f"{i['train_wall_this_invocation_s']:.0f}",
              eval=f"{i['eval_wall_s']:.0f}") for i in invs)


def _cost_md(R: Results, res: dict) -> str:
  """Runs, wall times and commands."""
  meta, runs, nan = R.meta, res.get("runs", {}), float("nan")
  table = _table(["variant", "steps", "parameters", "tokens", "train wall (s)", "steps/s median / max",
                  "final train acc", "config"],
                 [[v, r.get("step"), f"{r.get('num_params', 0):,}", f"{r.get('tokens', 0):,}",
                   f"{r.get('wall_time_s', 0):.0f}", f"{r.get('steps_per_sec_median', nan):.1f} / "
                   f"{r.get('steps_per_sec_max', nan):.1f}", f"{100 * (r.get('train') or {}).get('accuracy', nan):.2f}",
                   f"`{r.get('config_arg', '')}`"] for v, r in runs.items()])
  invs = res.get("invocations") or []
  return _blocks()["cost"].substitute(
      table=table, hardware=meta["hardware"], jax=meta["jax"], date=meta["date_utc"],
      measured=_measured_md(R, runs, invs) if invs else "",
      each="; ".join(f"`{c}`" for c in meta["train_commands"].values()))


# ------------------------------------------------------------------------------------------------ Report.


def checklist_md(res: dict) -> tuple[str, bool, list]:
  """The claim table (verdicts of claims.py by the framework's tests), whether the baseline copies (0a) and the
  verdicts."""
  S, vs = le_claims.samples(res), le_claims.verdicts(res)
  rows = [[v.claim.id, v.claim.text, su, "; ".join(filter(None, (le_claims.means_text(v, S), v.line()))),
           framework_report.MARK[v.verdict]] for v, su in vs]
  md = _table(["#", "claim", "Su", "ours", "verdict"], rows) + f"\n\n{claims_lib.summary([v for v, _ in vs])}.\n"
  unmeasured = [v.claim.id for v, _ in vs if v.note.startswith("not measured")]
  failing = [v for v, _ in vs if v.verdict != claims_lib.HOLDS and v.claim.id not in unmeasured]
  if failing:
    md += "\n" + _blocks()["failing"].substitute() + "\n\n" + "".join(
        f"- **{v.claim.id}** ({v.verdict}): {_hypothesis(v.claim.id)}\n" for v in failing)
  if unmeasured:
    md += "\n" + _blocks()["unmeasured"].substitute(ids=", ".join(unmeasured)) + "\n"
  return md, next((v.verdict for v, _ in vs if v.claim.id == "0a"), None) == claims_lib.HOLDS, vs


def findings_md(n: int, vs) -> str:
  """Where our results differ from Su (claims.findings): per finding its prose (report_template.md), Su's claims
  and the claims that test our hypothesis, each with its computed verdict line."""
  T, by_id = _blocks(), {v.claim.id: v for v, _ in vs}
  item = lambda cid: (f"  - **{cid}** {by_id[cid].claim.text}: {framework_report.MARK[by_id[cid].verdict]} — "
                      f"{by_id[cid].line()}" if cid in by_id else
                      f"  - **{cid}**: not measured (its runs are not in this plan)")
  return T["findings"].substitute(body="\n\n".join(
      T[block].substitute(su="\n".join(map(item, su)), tests="\n".join(map(item, tests)))
      for block, su, tests in le_claims.findings(n)))


def _hypothesis(cid: str) -> str:
  """Our hypothesis for a claim id, from hypotheses.md ("11a-kna" -> "11a", "5a'" -> "5a", "0ca" -> "0c")."""
  with open(os.path.join(HERE, "hypotheses.md")) as f:
    found = re.findall(r"^- \*\*(\S+)\*\*: (.+?)(?=^- \*\*|\Z)", f.read(), re.S | re.M)
  hyp = {k: " ".join(v.split()) for k, v in found}
  key = cid.split("-")[0].rstrip("'")
  return hyp.get("0c" if key.startswith("0c") else key, hyp["default"])


def _setup(R: Results, res: dict, T: dict) -> dict:
  """The computed fields of the template's Setup section."""
  meta, n, m, opt = R.meta, R.n, R.meta["model"], R.meta["optimizer"]
  seeds, b = int(meta.get("seeds", 1)), res.get("baselines", {})
  ckpts = {re.sub(r"_s\d+$", "", v.get("ckpt", "?")) for v in R.reps.values()}   # checkpoints with seed replicates
  seeded = ", ".join(f"`{c}`" for c in sorted(ckpts)) or "no variant"
  return dict(
      {k: m.get(k) for k in ("num_layers", "embed_dim", "num_heads", "head_dim", "mlp_dim", "norm", "block")},
      n=n, L8=R.L8, ext=R.ext, lengths=", ".join(map(str, meta["test_lengths"])), steps=meta["steps"],
      batch_size=meta["batch_size"], mtok=f"{meta['steps'] * meta['batch_size'] * n / 1e6:.2f}",
      learning_rate=opt.get("learning_rate"), warmup_steps=opt.get("warmup_steps"),
      seed_note=f"seed 0 ({seeds} seeds of {seeded})." if seeds > 1 else "one seed.",
      windows=", ".join(f"{v} at {k}" for k, v in meta["windows"].items()), segment_rule=meta["segment_rule"],
      growing_docs=meta["growing_docs"],
      seeds=T["seeds_many"].substitute(seeds=seeds, seeded=seeded) if seeds > 1 else T["seeds_one"].substitute(),
      ngram=T["ngram"].substitute(n=n, unigram=f"{100 * b['unigram_acc']:.2f}", bigram=f"{100 * b['bigram_acc']:.2f}")
      if b else "")


def write_report(res: dict, out_dir: str, plots: bool = True, footer: str = "") -> str:
  """Writes REPORT.md (report_template.md filled in) and the PNGs into out_dir; returns the markdown."""
  R, T = Results(res), _blocks()
  checklist, copies, vs = checklist_md(res)
  caution = "" if copies else T["caution"].substitute(
      copy_arm=T["copy_arm"].substitute() if "copy/rope" in R.m else "") + "\n\n"
  names = list(R.m)
  text = T["main"].substitute(
      _setup(R, res, T), rules=framework_report.RULES, checklist=checklist, findings=findings_md(R.n, vs),
      caution=caution,
      su_table=su_table(R, names), paired=paired_table(R, [k for k in names if k != "rope"]),
      logn_gains=logn_gains_md(R, res),
      acc_nonrep=lengths_table(R, names), acc_rep=lengths_table(R, names, "rep"),
      loss=lengths_table(R, names, "nonrep", "loss"),
      growing=_value_table(R.grown, [(f"loss, C={c}", c) for c in R.contexts], R.growing, "{:.3f}"),
      plots=plot_all(R, out_dir) if plots else "", copy=_copy_md(R, res), cost=_cost_md(R, res), footer=footer)
  framework_report.save_text(out_dir, text)
  return text
