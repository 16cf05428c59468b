"""REPORT.md for the SimSiam collapse study (issue #6) from per-run records: tables, plots, claim checklist.

A record is one finished run (written by run.py)::

  {"name", "variant", "seed", "arg", "command", "proj_dim", "steps",
   "curve": [{"step", "knn", "z_std", "z_erank", "h_std", "h_erank", ["probe"]}, ...],   # step 0 = untrained
   "final": curve[-1], "untrained": curve[0],
   "train": {"loss", "z_std", "z_erank", ...},                  # the last logging window of training
   "train_curves": {"step": [...], "loss": [...], "z_std": [...], "z_erank": [...],
                    "grad_norm/encoder": [...], "grad_norm/predictor": [...], ...},
   "train_time_s", "eval_time_s", "wall_time_s"}                (+ "error" for a diverged run)

`baselines` = {"raw": {"knn", "probe"}} (accuracies on the raw input signals).

Verdict rules (stated in the report): a mean difference between two groups counts only if it exceeds the
spread max(std_a, std_b) (sample std over seeds; 0 for one seed). "Collapsed" means an effective rank of z on
the test set <= COLLAPSE_ERANK. The untrained network is the step-0 evaluation of the SimSiam runs' seeds.
"""
from __future__ import annotations

import collections
import math
import os
from typing import Any, Sequence

import numpy as np

from experiments import stats
from experiments.simsiam import published

HOLDS, PARTLY, FAILS, UNKNOWN = "✅ holds", "⚠️ partly", "❌ fails", "❔ inconclusive"
COLLAPSE_ERANK = 2.0            # erank(z) on the test set at or below this: collapsed (rank -> 1-2)
HIGH_ERANK_FRACTION = 0.25      # "high effective rank": erank(z) >= d / 4
STD_BAND = (0.5, 1.5)           # "std ≈ 1/sqrt(d)": z_std * sqrt(d) inside this band
ORDER = ("simsiam", "no_stopgrad", "no_predictor", "frozen_predictor", "constlr_predictor", "mean_target",
         "mean_target_nosg")
LABELS = {
    "simsiam": "SimSiam: stop-grad + predictor (lr decayed)",
    "no_stopgrad": "no stop-grad",
    "no_predictor": "no predictor (h = identity)",
    "frozen_predictor": "predictor frozen at random init",
    "constlr_predictor": "predictor with constant lr",
    "mean_target": "Su: target z(x̄), stop-grad, no predictor",
    "mean_target_nosg": "Su: target z(x̄), no stop-grad, no predictor",
}


Stat = stats.Stat


def ok_records(records):
  return [r for r in records if not r.get("error") and r.get("final")]


def by_variant(records) -> dict[str, list[dict]]:
  out = collections.defaultdict(list)
  for r in ok_records(records):
    out[r["variant"]].append(r)
  return dict(out)


def stat(rs: Sequence[dict], key: str, where: str = "final") -> Stat:
  vals = []
  for r in rs:
    v = r.get(where, {}).get(key)
    if v is not None and np.isfinite(v):
      vals.append(float(v))
  return Stat(vals)


def untrained(records) -> list[dict]:
  """Step-0 evaluations of the SimSiam runs (one per seed; other variants share these initialisations)."""
  rs = by_variant(records).get("simsiam") or ok_records(records)
  seen, out = set(), []
  for r in rs:
    if r["seed"] not in seen:
      seen.add(r["seed"])
      out.append({"final": r["untrained"]})
  return out


def early_ratio(r: dict, frac: float) -> float:
  """Mean of ||g_predictor|| / ||g_encoder|| over the logged steps <= frac * steps (NaN if not logged)."""
  tc = r.get("train_curves", {})
  gp, ge = tc.get("grad_norm/predictor"), tc.get("grad_norm/encoder")
  if not gp or not ge:
    return float("nan")
  vals = [p / e for s, p, e in zip(tc["step"], gp, ge) if s <= frac * r["steps"] and p is not None and e]
  return float(np.mean(vals)) if vals else float("nan")


def compare(a: Stat, b: Stat) -> tuple[str, float, float]:
  """('higher' | 'lower' | 'same', d = mean_a - mean_b, spread = max(std_a, std_b))."""
  d = a.mean - b.mean
  spread = max(a.std, b.std)
  return ("higher" if d > spread else "lower" if d < -spread else "same"), d, spread


def _overall(results: Sequence[bool | None]) -> str:
  known = [x for x in results if x is not None]
  if not known:
    return UNKNOWN
  if all(known):
    return HOLDS
  return PARTLY if any(known) else FAILS


# ---------------------------------------------------------------------------------------------- Claims.


def _collapse_parts(rs, base_untrained) -> tuple[list[bool | None], list[str]]:
  d = rs[0]["proj_dim"]
  erank, std, probe = stat(rs, "z_erank"), stat(rs, "z_std"), stat(rs, "probe")
  std0 = stat(rs, "z_std", "untrained")
  un = stat(base_untrained, "probe")
  v_probe, dp, sp = compare(probe, un)
  parts = [erank.mean <= COLLAPSE_ERANK, std.mean < std0.mean, v_probe == "lower"]
  lines = [f"effective rank of z (test set): {erank.fmt(1, 2)} (collapsed iff ≤ {COLLAPSE_ERANK:g}; d = {d})",
           f"z_std: {std0.fmt(1, 4)} at step 0 → {std.fmt(1, 4)} (1/√d = {1 / math.sqrt(d):.4f}); falls: "
           f"{'yes' if parts[1] else 'no'}",
           f"linear probe {probe.fmt(100)}% vs untrained network {un.fmt(100)}% (Δ {dp * 100:+.1f} pts, spread "
           f"{sp * 100:.1f}): {v_probe}"]
  return parts, lines


def claim_collapse(records, variant: str) -> tuple[str, list[str]]:
  rs = by_variant(records).get(variant)
  if not rs:
    return UNKNOWN, [f"no finished {variant} run"]
  parts, lines = _collapse_parts(rs, untrained(records))
  return _overall(parts), lines + [f"seeds: {len(rs)}"]


def claim_simsiam(records, baselines) -> tuple[str, list[str]]:
  rs = by_variant(records).get("simsiam")
  if not rs:
    return UNKNOWN, ["no finished simsiam run"]
  d = rs[0]["proj_dim"]
  std, erank, probe, knn = (stat(rs, k) for k in ("z_std", "z_erank", "probe", "knn"))
  band = (STD_BAND[0] / math.sqrt(d), STD_BAND[1] / math.sqrt(d))
  un = stat(untrained(records), "probe")
  raw = baselines.get("raw", {}).get("probe")
  v_un, d_un, s_un = compare(probe, un)
  parts = [band[0] <= std.mean <= band[1], erank.mean >= HIGH_ERANK_FRACTION * d, v_un == "higher",
           None if raw is None else probe.mean - probe.std > raw]
  lines = [f"z_std {std.fmt(1, 4)} vs 1/√d = {1 / math.sqrt(d):.4f} (band {band[0]:.4f}–{band[1]:.4f}): "
           f"{'inside' if parts[0] else 'outside'}",
           f"effective rank of z {erank.fmt(1, 1)} (high iff ≥ d/4 = {HIGH_ERANK_FRACTION * d:g})",
           f"linear probe {probe.fmt(100)}% vs untrained {un.fmt(100)}% (Δ {d_un * 100:+.1f} pts, spread "
           f"{s_un * 100:.1f}): {v_un}",
           f"linear probe vs raw input {raw * 100:.1f}%" if raw is not None else "raw baseline missing",
           f"kNN {knn.fmt(100)}% (raw input {baselines.get('raw', {}).get('knn', float('nan')) * 100:.1f}%, "
           f"untrained {stat(untrained(records), 'knn').fmt(100)}%); seeds: {len(rs)}"]
  return _overall(parts), lines


def claim_frozen(records) -> tuple[str, list[str]]:
  g = by_variant(records)
  if not g.get("frozen_predictor") or not g.get("simsiam"):
    return UNKNOWN, ["needs frozen_predictor and simsiam runs"]
  fr, ss = g["frozen_predictor"], g["simsiam"]
  v, dp, sp = compare(stat(fr, "probe"), stat(ss, "probe"))
  loss_fr, loss_ss = stat(fr, "loss", "train"), stat(ss, "loss", "train")
  erank = stat(fr, "z_erank")
  parts = [v == "lower", loss_fr.mean > loss_ss.mean]
  lines = [f"linear probe {stat(fr, 'probe').fmt(100)}% vs SimSiam {stat(ss, 'probe').fmt(100)}% (Δ {dp * 100:+.1f} "
           f"pts, spread {sp * 100:.1f}): {v}",
           f"final training loss {loss_fr.fmt(1, 3)} vs SimSiam {loss_ss.fmt(1, 3)} (paper: stays high): "
           f"{'higher' if parts[1] else 'not higher'}",
           f"effective rank of z {erank.fmt(1, 1)} (the paper: not a collapse)",
           f"untrained network: {stat(untrained(records), 'probe').fmt(100)}%"]
  return _overall(parts), lines


def claim_constlr(records) -> tuple[str, list[str]]:
  g = by_variant(records)
  if not g.get("constlr_predictor") or not g.get("simsiam"):
    return UNKNOWN, ["needs constlr_predictor and simsiam runs"]
  v, dp, sp = compare(stat(g["constlr_predictor"], "probe"), stat(g["simsiam"], "probe"))
  return (HOLDS if v != "lower" else FAILS), [
      f"linear probe {stat(g['constlr_predictor'], 'probe').fmt(100)}% vs decayed {stat(g['simsiam'], 'probe').fmt(100)}% "
      f"(Δ {dp * 100:+.1f} pts, spread {sp * 100:.1f}): {v} (paper: 68.1 vs 67.7)"]


def claim_fast_predictor(records) -> tuple[str, list[str]]:
  """Su's fast/slow picture, our operationalisation: with stop-gradient the predictor's share of the gradient
  shrinks early (it fits its target fast): the ratio ||g_pred|| / ||g_enc|| of the first logging window
  exceeds its average over 10-20% of training."""
  rs = by_variant(records).get("simsiam", [])
  oks, lines = [], []
  for r in rs:
    tc = r.get("train_curves", {})
    first = early_ratio(r, tc["step"][0] / r["steps"]) if tc.get("step") else float("nan")
    later = [p / e for s, p, e in zip(tc.get("step", []), tc.get("grad_norm/predictor", []), tc.get("grad_norm/encoder", []))
             if 0.1 * r["steps"] < s <= 0.2 * r["steps"] and p is not None and e]
    later = float(np.mean(later)) if later else float("nan")
    ok = None if not (np.isfinite(first) and np.isfinite(later)) else first > later
    oks.append(ok)
    lines.append(f"seed {r['seed']}: ratio {first:.3f} (first logging window, steps ≤ {tc['step'][0]}) → "
                 f"{later:.3f} (10–20% of training)")
  for r in by_variant(records).get("frozen_predictor", []):
    lines.append(f"frozen predictor (cannot fit its target), seed {r['seed']}: ratio {early_ratio(r, 0.02):.3f} (≤ 2%) → "
                 f"{early_ratio(r, 1.0):.3f} (whole run) (for comparison: the ratio grows instead of falling)")
  for r in by_variant(records).get("no_stopgrad", []):
    tc = r.get("train_curves", {})
    if tc.get("step"):
      lines.append(f"no stop-grad, seed {r['seed']}: ratio {early_ratio(r, tc['step'][0] / r['steps']):.3f} (first "
                   f"window), {early_ratio(r, 0.2):.3f} (≤ 20%) (for comparison)")
  return _overall(oks), lines


def claim_toy() -> tuple[str, list[str]]:
  from kexue_jax.tasks import simsiam  # pylint: disable=g-import-not-at-top
  phi_s, th_s = (float(a[-1]) for a in simsiam.su_toy_dynamics(True))
  phi_f, th_f = (float(a[-1]) for a in simsiam.su_toy_dynamics(False))
  ok = abs(th_s - math.sqrt(0.65)) < 0.01 and abs(phi_s - 1) < 0.01 and th_f < 0.01
  return (HOLDS if ok else FAILS), [
      f"stop-grad: φ → {phi_s:.4f}, θ → {th_s:.4f} (√0.65 = {math.sqrt(0.65):.4f}); full gradient: φ → {phi_f:.4f}, "
      f"θ → {th_f:.4f} (Euler, dt = 1e-3, t = 20; tests/tasks/test_simsiam.py checks the same)"]


def claim_mean_target(records) -> tuple[str, list[str]]:
  """Exploratory (Su asked, no prediction): does the target z(x̄) avoid collapse?"""
  g = by_variant(records)
  lines = []
  for v in ("mean_target", "mean_target_nosg"):
    rs = g.get(v)
    if rs:
      lines.append(f"{LABELS[v]}: erank(z) {stat(rs, 'z_erank').fmt(1, 2)}, z_std {stat(rs, 'z_std').fmt(1, 4)}, "
                   f"probe {stat(rs, 'probe').fmt(100)}%, kNN {stat(rs, 'knn').fmt(100)}% → "
                   f"{'collapsed' if stat(rs, 'z_erank').mean <= COLLAPSE_ERANK else 'not collapsed'}")
  return ("exploratory" if lines else UNKNOWN), lines or ["no mean-target run"]


def check_claims(records, baselines) -> list[tuple[str, str, list[str]]]:
  return [
      ("Without stop-gradient the representation collapses: effective rank → ~1, std falls, linear probe "
       "below the untrained network", *claim_collapse(records, "no_stopgrad")),
      ("Without the predictor (stop-gradient kept) the representation collapses (same three tests)",
       *claim_collapse(records, "no_predictor")),
      ("Full SimSiam does not collapse: z_std ≈ 1/√d, high effective rank, linear probe clearly above the "
       "raw-input and the untrained baselines", *claim_simsiam(records, baselines)),
      ("A predictor frozen at its random initialisation does not learn well (probe below SimSiam, loss stays "
       "higher)", *claim_frozen(records)),
      ("A predictor with a constant learning rate is at least as good as a decayed one (paper 68.1 vs 67.7)",
       *claim_constlr(records)),
      ("Su's fast predictor / slow encoder (our operationalisation): the predictor/encoder gradient-norm ratio "
       "is largest at the start and falls early in training", *claim_fast_predictor(records)),
      ("Su's toy model l = ½(φθ − θ)², φ(0) = 0.6, θ(0) = 0.1: stop-gradient → θ ≈ √0.65; full gradient → θ → 0",
       *claim_toy()),
      ("Su's open question: target = representation of the averaged augmentation x̄ (exploratory, no "
       "prediction)", *claim_mean_target(records)),
  ]


# ----------------------------------------------------------------------------------------------- Tables.


def table_ablation(records, baselines) -> list[str]:
  g = by_variant(records)
  out = ["| variant | paper (ImageNet top-1 %) | ours: linear probe % | kNN % | z_std (1/√d) | erank(z) | "
         "final train loss | collapsed? | seeds |", "|" + " --- |" * 9]
  for v in ORDER:
    rs = g.get(v)
    if not rs:
      continue
    d = rs[0]["proj_dim"]
    paper = published.ABLATION.get(v, ("", "—", ""))[1]
    erank = stat(rs, "z_erank")
    out.append(f"| {LABELS[v]} | {paper} | {stat(rs, 'probe').fmt(100)} | {stat(rs, 'knn').fmt(100)} | "
               f"{stat(rs, 'z_std').fmt(1, 4)} ({1 / math.sqrt(d):.4f}) | {erank.fmt(1, 1)} | "
               f"{stat(rs, 'loss', 'train').fmt(1, 3)} | {'yes' if erank.mean <= COLLAPSE_ERANK else 'no'} | {len(rs)} |")
  un = untrained(records)
  if un:
    out.append(f"| baseline: untrained network (BN stats of the train set) | {published.BYOL_RANDOM_INIT_LINEAR} "
               f"(BYOL) | {stat(un, 'probe').fmt(100)} | {stat(un, 'knn').fmt(100)} | {stat(un, 'z_std').fmt(1, 4)} | "
               f"{stat(un, 'z_erank').fmt(1, 1)} | — | — | {len(un)} |")
  raw = baselines.get("raw")
  if raw:
    out.append(f"| baseline: raw input signals | — | {raw['probe'] * 100:.1f} | {raw['knn'] * 100:.1f} | — | — | — | — "
               "| — |")
  return out


def table_paper_notes() -> list[str]:
  out = ["| variant | the paper's row | what the paper reports |", "| --- | --- | --- |"]
  for v, (row, num, note) in published.ABLATION.items():
    out.append(f"| {LABELS[v]} | {row}: {num} | {note} |")
  return out


def table_curve(records) -> list[str]:
  """kNN % over training (checkpoint steps), mean over seeds."""
  g = by_variant(records)
  steps = sorted({c["step"] for r in ok_records(records) for c in r["curve"]})
  out = ["| variant | " + " | ".join(str(s) for s in steps) + " |", "|" + " --- |" * (len(steps) + 1)]
  for v in ORDER:
    rs = g.get(v)
    if not rs:
      continue
    cells = []
    for s in steps:
      vals = [c["knn"] for r in rs for c in r["curve"] if c["step"] == s]
      cells.append(f"{np.mean(vals) * 100:.1f}" if vals else "—")
    out.append(f"| {LABELS[v]} | " + " | ".join(cells) + " |")
  return out


def table_grad_ratio(records) -> list[str]:
  g = by_variant(records)
  fracs = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
  out = ["| variant | " + " | ".join(f"≤ {f:g}·T" for f in fracs) + " |", "|" + " --- |" * (len(fracs) + 1)]
  for v in ORDER:
    rs = g.get(v)
    if not rs or not any(np.isfinite(early_ratio(r, 1.0)) for r in rs):
      continue
    cells = []
    for f in fracs:
      vals = [x for x in (early_ratio(r, f) for r in rs) if np.isfinite(x)]
      cells.append(f"{np.mean(vals):.3f}" if vals else "—")
    out.append(f"| {LABELS[v]} | " + " | ".join(cells) + " |")
  return out


def table_times(records, baselines) -> list[str]:
  out = ["| variant | runs | mean train s | mean eval s | total min |", "| --- | --- | --- | --- | --- |"]
  g = collections.defaultdict(list)
  for r in records:
    g[r["variant"]].append(r)
  total = 0.0
  for v in ORDER:
    rs = g.get(v)
    if not rs:
      continue
    t = sum(r.get("wall_time_s", 0.0) for r in rs)
    total += t
    out.append(f"| {v} | {len(rs)} | {np.mean([r.get('train_time_s', 0) for r in rs]):.0f} | "
               f"{np.mean([r.get('eval_time_s', 0) for r in rs]):.0f} | {t / 60:.1f} |")
  if baselines.get("time_s"):
    total += baselines["time_s"]
    out.append(f"| raw-input baselines | 1 | — | {baselines['time_s']:.0f} | {baselines['time_s'] / 60:.1f} |")
  out.append(f"| all | {len(records)} | | | {total / 60:.1f} |")
  return out


# ------------------------------------------------------------------------------------------------ Plots.


def make_plots(records, baselines, out_dir: str) -> list[str]:
  try:
    # A bare Figure (no pyplot state, no global backend switch): safe inside notebooks and threads.
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    return []
  g = by_variant(records)
  if not g:
    return []
  colors = dict(zip(ORDER, ("C0", "C3", "C1", "C2", "C4", "C5", "C6")))
  fig = Figure(figsize=(13, 9))
  axes = fig.subplots(2, 2)
  d = next(iter(g.values()))[0]["proj_dim"]
  for v in ORDER:
    for i, r in enumerate(g.get(v, [])):
      tc = r.get("train_curves", {})
      kw = dict(color=colors[v], alpha=0.8, lw=1.2, label=LABELS[v] if i == 0 else None)
      if tc.get("step"):
        axes[0, 0].plot(tc["step"], tc["z_std"], **kw)
        axes[0, 1].plot(tc["step"], tc["z_erank"], **kw)
        axes[1, 1].plot(tc["step"], tc["loss"], **kw)
      axes[1, 0].plot([c["step"] for c in r["curve"]], [c["knn"] * 100 for c in r["curve"]], marker="o", ms=3, **kw)
  axes[0, 0].axhline(1 / math.sqrt(d), color="k", ls="--", lw=1, label="1/√d")
  axes[0, 0].set(xlabel="step", ylabel="collapse std of z/‖z‖ (train batch)", title="collapse statistic")
  axes[0, 1].set(xlabel="step", ylabel="effective rank of z (train batch)", yscale="log", title="effective rank")
  raw = baselines.get("raw", {}).get("knn")
  if raw is not None:
    axes[1, 0].axhline(raw * 100, color="gray", ls=":", label="raw input")
  un = stat(untrained(records), "knn")
  if un.n:
    axes[1, 0].axhline(un.mean * 100, color="k", ls="--", lw=1, label="untrained network")
  axes[1, 0].set(xlabel="step", ylabel="kNN accuracy % (test, backbone features)", title="kNN monitor")
  axes[1, 1].axhline(-1, color="k", ls="--", lw=1)
  axes[1, 1].set(xlabel="step", ylabel="training loss (min −1)", title="loss")
  for ax in axes.flat:
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize=7)
  axes[1, 0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "fig_curves.png"), dpi=100)
  files = ["fig_curves.png"]
  fig = Figure(figsize=(7, 4))
  ax = fig.subplots()
  for v in ORDER:
    for i, r in enumerate(g.get(v, [])):
      tc = r.get("train_curves", {})
      gp, ge = tc.get("grad_norm/predictor"), tc.get("grad_norm/encoder")
      if not gp or gp[0] is None:
        continue
      ax.plot(tc["step"], [p / e for p, e in zip(gp, ge)], color=colors[v], alpha=0.8,
              label=LABELS[v] if i == 0 else None)
  ax.set(xlabel="step", ylabel="‖∇ predictor‖ / ‖∇ encoder‖", yscale="log", title="gradient-norm ratio (Su's fast/slow)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "fig_grad_ratio.png"), dpi=100)
  return files + ["fig_grad_ratio.png"]


# ------------------------------------------------------------------------------------------------ Report.


def observed_deviations(records) -> list[str]:
  """Data-driven bullets: where a collapse ablation did not collapse completely, say how far it went."""
  g = by_variant(records)
  ss = g.get("simsiam")
  out = []
  for v in ("no_stopgrad", "no_predictor"):
    rs = g.get(v)
    if not rs or not ss:
      continue
    erank = stat(rs, "z_erank")
    if erank.mean <= COLLAPSE_ERANK:
      continue
    un = untrained(records)
    kept = stat(rs, "probe").mean > stat(un, "probe").mean
    backbone = ("the backbone features keep their information" if kept else
                "the backbone features lose information")
    out.append(
        f"- *{LABELS[v]}: a dimensional, not a complete, collapse.* The effective rank of z falls from "
        f"{stat(rs, 'z_erank', 'untrained').fmt(1, 1)} (untrained) to {erank.fmt(1, 1)} (SimSiam: "
        f"{stat(ss, 'z_erank').fmt(1, 1)}), z_std from {stat(rs, 'z_std', 'untrained').fmt(1, 4)} to "
        f"{stat(rs, 'z_std').fmt(1, 4)}, the training loss ends at {stat(rs, 'loss', 'train').fmt(1, 3)} "
        f"{'(not −1)' if stat(rs, 'loss', 'train').mean > -0.99 else ''}, and {backbone}: linear probe {stat(rs, 'probe').fmt(100)}% "
        f"vs untrained {stat(un, 'probe').fmt(100)}% and SimSiam {stat(ss, 'probe').fmt(100)}%; kNN "
        f"{stat(rs, 'knn').fmt(100)}% vs untrained {stat(un, 'knn').fmt(100)}% and SimSiam {stat(ss, 'knn').fmt(100)}%. "
        "With BatchNorm (no affine) on the projector output, z cannot become constant: every channel has zero mean "
        "and unit variance over the batch. A complete collapse with loss −1 needs the network to make the batch "
        "degenerate (all examples but a few outliers mapped to one point, so that after BN the majority shares "
        f"one direction), which the paper's ImageNet runs reached at once; within our {rs[0]['steps']} steps the "
        "projector only concentrates z on a few directions" + (", and the probe on the backbone — one layer below "
        "— is not destroyed." if kept else ".") + " The claim's three tests are kept as stated (rank ≤ 2, std "
        "falls, probe below untrained) and these runs are scored against them.")
  return out




def render(records, baselines, *, plots: Sequence[str] = (), meta: dict[str, Any] | None = None) -> str:
  meta = meta or {}
  ok = ok_records(records)
  d = ok[0]["proj_dim"] if ok else 64
  steps = ok[0]["steps"] if ok else 0
  lines = ["# SimSiam: why it does not collapse — issue #6", "",
           "Generated by `experiments/simsiam/report.py` from the study's runs; do not edit by hand.", "",
           "Paper: Chen & He, *Exploring Simple Siamese Representation Learning* (arXiv 2011.10566). Su Jianlin's "
           "dynamics explanation: https://kexue.fm/archives/7980. Setup (configs/simsiam/mnist1d.py): MNIST-1D "
           f"(4000 train / 1000 test), 1D CNN backbone, projector with BN on every layer (output BN without "
           f"affine), d = {d}, bottleneck predictor d/4, symmetric negative-cosine loss, SGD momentum 0.9, "
           f"lr 0.2·B/256 (the paper's scaling rule with a larger base lr for a 32-epoch schedule; paper: 0.05), weight "
           f"decay 5e-4, cosine, {steps} steps at batch 256. Evaluation on the backbone "
           "features of checkpoints (experiments/simsiam/evaluate.py): BN statistics of the whole training set, "
           "kNN (cosine, k = 20, weights exp(s/0.1), training set as memory bank) and a linear probe "
           "(L-BFGS logistic regression on standardised features; the primary accuracy number).", "",
           f"Runs: {len(records)}. " + meta.get("summary", ""), "",
           "**Verdict rules.** A difference of means counts only beyond the seed spread max(std_a, std_b) (sample "
           f"std over seeds; a single run has spread 0). *Collapsed*: effective rank of z on the test set ≤ "
           f"{COLLAPSE_ERANK:g}. *High effective rank*: ≥ d/4. *z_std ≈ 1/√d*: z_std·√d in [{STD_BAND[0]}, "
           f"{STD_BAND[1]}]. The untrained network is the step-0 evaluation of the SimSiam seeds (same init as "
           "every variant with that seed).", "", "## Claim checklist", ""]
  for text, verdict, evidence in check_claims(records, baselines):
    lines.append(f"- **{verdict}** — {text}")
    lines.extend(f"  - {e}" for e in evidence)
  failed = [r for r in records if r.get("error")]
  if failed:
    lines += ["", f"**{len(failed)} run(s) failed** (non-finite loss; left out of every statistic):"]
    lines += [f"- `{r.get('name', '?')}`: {r['error'][:200]}" for r in failed]
  lines += ["", "## Ablation table (the paper's Table 1 / Fig. 2 layout)", "",
            "Ours: MNIST-1D linear probe / kNN test accuracy (%) at the end of training, z statistics on the "
            "1000 test examples, mean ± std over seeds. Paper: ImageNet linear evaluation, ResNet-50, 100 epochs.",
            ""] + table_ablation(records, baselines)
  lines += ["", "What the paper reports for each row:", ""] + table_paper_notes()
  lines += ["", "## kNN accuracy over training (%, mean over seeds; step 0 = untrained)", ""] + table_curve(records)
  lines += ["", "## Gradient-norm ratio ‖∇ predictor‖ / ‖∇ encoder‖ (mean over logged steps ≤ f·T)", "",
            "Encoder = backbone + projector. Logged by the training loop every 10 steps "
            "(`task.grad_norm_groups`)."] + [""] + table_grad_ratio(records)
  lines += ["", "## Deviations from the paper at this scale", ""] + observed_deviations(records) + [
            "- *z_std does not go to 0 in a collapse.* The projector's output BatchNorm (no affine) makes every "
            "channel of z zero-mean and unit-variance over the batch, so z cannot become a constant vector. A "
            "collapse shows up instead as all channels becoming (anti-)correlated copies of one direction: z_i ≈ "
            "a_i·v. Then z_i/‖z_i‖ ≈ ±v/‖v‖ and the per-channel std is |v_j|/‖v‖, whose mean over channels is "
            "≤ 1/√d (≈ 0.8/√d for a Gaussian-like v) — the statistic falls only moderately. The effective rank "
            "(→ 1–2) is the reliable collapse indicator here; the paper (Fig. 2) plots the std of the output of "
            "the same BN-ended projector on ImageNet, where it reached 0.",
            "- *Untrained baseline.* A random CNN with BN statistics of the training set is a strong feature "
            "extractor on MNIST-1D (Su's \"deep image prior\" point), far above raw pixels; on ImageNet a random "
            "ResNet-50 gives 1.4% (BYOL). Claims are therefore judged against the untrained network.",
            "- *Scale.* Tiny data and a short schedule (minutes on 2 CPU cores) vs 100–800 epochs on "
            "ImageNet/CIFAR; the paper's absolute numbers are not comparable, only the pattern across rows.",
            "- *Weight decay* is applied to kernels only (the repo's optimizer mask); the paper decays every "
            "parameter including BN."]
  if plots:
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
  lines += ["", "## Run times", ""] + table_times(records, baselines)
  lines += stats.report_footer(meta.get("machine"), meta.get("commands", []), records)
  return "\n".join(lines) + "\n"


def write_report(records, baselines, out_dir: str, *, meta: dict[str, Any] | None = None) -> str:
  os.makedirs(out_dir, exist_ok=True)
  plots = make_plots(records, baselines, out_dir)
  path = os.path.join(out_dir, "REPORT.md")
  with open(path, "w") as f:
    f.write(render(records, baselines, plots=plots, meta=meta))
  return path
