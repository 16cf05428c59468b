"""REPORT.md for the R-Drop study (issue #7) from per-run records: tables, plots, claim checklist.

A record is one finished run (written by run.py)::

  {"name", "model", "alpha", "dropout", "train_size", "labelled", "unlabelled", "seed",
   "eval": {"accuracy", "loss", "consistency_kl", "consistency_disagree", "mc_accuracy", "mc_loss",
            "dropout_kl"},
   "train": {"ce", "accuracy", ...}, "wall_time_s", "command"}   (+ "error" for a run that diverged: its
                                                                  eval/train are empty and it is left out)

`labelled > 0` marks the semi-supervised comparison (`unlabelled` says whether the KL-only term on the rest of
the training set was on); otherwise `train_size` labelled examples were used. alpha = 0 is plain dropout.

Significance rule (stated in the report): for two settings a, b with per-seed values, the difference
d = mean_a - mean_b counts only if |d| > spread = max(std_a, std_b) (sample std over seeds); a difference inside
the seed spread is "no difference". Accuracy claims need >= MIN_SEEDS_ACCURACY seeds per setting, otherwise
they are "inconclusive"; the consistency claim needs >= MIN_SEEDS_OTHER.
"""
from __future__ import annotations

import collections
import os
from typing import Any, Iterable, Sequence

import numpy as np

from experiments import stats
from experiments.rdrop import published

MIN_SEEDS_ACCURACY = 5
MIN_SEEDS_OTHER = 3
HOLDS, PARTLY, FAILS, UNKNOWN = "✅ holds", "⚠️ partly", "❌ fails", "❔ inconclusive"


# ------------------------------------------------------------------------------------------ Statistics.


def setting_of(r: dict[str, Any]) -> tuple:
  """A run's setting: everything but the seed."""
  return (r["model"], int(r["train_size"]), int(r["labelled"]), bool(r["unlabelled"]), float(r["dropout"]),
          float(r["alpha"]))


Stat = stats.Stat


def collect(records: Iterable[dict[str, Any]], metric: str) -> dict[tuple, Stat]:
  """setting -> Stat of `metric` ("eval/<k>" or "train/<k>" or "wall_time_s") over seeds."""
  out: dict[tuple, Stat] = collections.defaultdict(lambda: Stat([]))
  for r in records:
    if metric == "wall_time_s":
      v = r.get("wall_time_s")
    else:
      part, key = metric.split("/")
      v = r.get(part, {}).get(key)
    if v is not None and np.isfinite(v):
      out[setting_of(r)].values.append(float(v))
  return dict(out)


def compare(a: Stat, b: Stat, min_seeds: int) -> tuple[str, float, float]:
  """(verdict, d, spread) for d = mean_a - mean_b: 'higher' / 'lower' / 'same' / 'inconclusive'."""
  d = a.mean - b.mean
  spread = max(a.std, b.std)
  if min(a.n, b.n) < min_seeds:
    return "inconclusive", d, spread
  if d > spread:
    return "higher", d, spread
  if d < -spread:
    return "lower", d, spread
  return "same", d, spread


def _sym(verdict: str, good: str) -> str:
  """A table mark for a comparison whose desired direction is `good` ('higher' or 'lower')."""
  if verdict == "inconclusive":
    return "?"
  if verdict == "same":
    return "="
  return "▲" if verdict == good else "▼"


def _overall(results: Sequence[bool | None]) -> str:
  known = [x for x in results if x is not None]
  if not known:
    return UNKNOWN
  if all(known):
    return HOLDS
  if any(known):
    return PARTLY
  return FAILS


# ---------------------------------------------------------------------------------------------- Claims.


def supervised_settings(stats: dict[tuple, Stat]) -> list[tuple]:
  """(model, train_size, dropout) with both plain dropout (alpha 0) and some R-Drop alpha run, sorted."""
  out = set()
  for (model, n, lab, _, p, a) in stats:
    if lab == 0 and a == 0 and any(k[:5] == (model, n, 0, False, p) and k[5] > 0 for k in stats):
      out.add((model, n, p))
  return sorted(out)


def _sup(model, n, p, a):
  return (model, int(n), 0, False, float(p), float(a))


def claim_consistency(records, alpha: float = 4.0) -> tuple[str, list[str]]:
  """R-Drop (alpha) lowers KL(Pbar || P0) relative to plain dropout, in every supervised setting."""
  kl = collect(records, "eval/consistency_kl")
  dis = collect(records, "eval/consistency_disagree")
  oks, lines = [], []
  for model, n, p in supervised_settings(kl):
    a, b = kl.get(_sup(model, n, p, alpha)), kl.get(_sup(model, n, p, 0))
    if a is None:
      continue
    verdict, d, spread = compare(a, b, MIN_SEEDS_OTHER)
    oks.append(None if verdict == "inconclusive" else verdict == "lower")
    da, db = dis.get(_sup(model, n, p, alpha), Stat([])), dis.get(_sup(model, n, p, 0), Stat([]))
    lines.append(f"{model}, n={n}, p={p}: KL(P̄‖P0) {b.mean:.4f} → {a.mean:.4f} (Δ {d:+.4f}, spread "
                 f"{spread:.4f}: {verdict}); disagreement {db.mean * 100:.1f}% → {da.mean * 100:.1f}%")
  return _overall(oks), lines


def claim_accuracy(records, alphas: Sequence[float] = (1.0, 4.0)) -> tuple[str, list[str]]:
  """Test accuracy with R-Drop is not below plain dropout (beyond the seed spread) in any setting."""
  acc = collect(records, "eval/accuracy")
  oks, lines = [], []
  for model, n, p in supervised_settings(acc):
    for alpha in alphas:
      a = acc.get(_sup(model, n, p, alpha))
      if a is None:
        continue
      verdict, d, spread = compare(a, acc[_sup(model, n, p, 0)], MIN_SEEDS_ACCURACY)
      oks.append(None if verdict == "inconclusive" else verdict != "lower")
      lines.append(f"{model}, n={n}, p={p}, α={alpha:g}: Δacc {d * 100:+.2f} pts (spread "
                   f"{spread * 100:.2f}): {verdict}")
  return _overall(oks), lines


def claim_regime(records, alpha: float = 4.0) -> tuple[str, list[str]]:
  """The R-Drop gain is largest in the low-data, high-dropout setting (per model).

  Low-data/high-dropout = the smallest train_size with the largest dropout; it is compared with every other
  supervised setting of the same model. Gains are differences of means; a gain difference counts only beyond
  the largest seed std among the four settings involved.
  """
  acc = collect(records, "eval/accuracy")
  settings = [s for s in supervised_settings(acc) if _sup(*s, alpha) in acc]
  oks, lines = [], []
  for model in sorted({s[0] for s in settings}):
    mine = [s for s in settings if s[0] == model]
    if len(mine) < 2:
      continue
    low = min(mine, key=lambda s: (s[1], -s[2]))
    def gain(s):
      a, b = acc[_sup(*s, alpha)], acc[_sup(*s, 0)]
      return a.mean - b.mean, max(a.std, b.std), min(a.n, b.n)
    g_low, sd_low, n_low = gain(low)
    for other in mine:
      if other == low:
        continue
      g, sd, n = gain(other)
      spread = max(sd_low, sd)
      if min(n, n_low) < MIN_SEEDS_ACCURACY:
        ok, word = None, "inconclusive"
      else:
        ok = g_low - g > spread
        word = "larger" if ok else ("no difference" if abs(g_low - g) <= spread else "smaller")
      oks.append(ok)
      lines.append(f"{model}: gain at n={low[1]}, p={low[2]} is {g_low * 100:+.2f} pts vs {g * 100:+.2f} at "
                   f"n={other[1]}, p={other[2]} (spread {spread * 100:.2f}): {word}")
  return _overall(oks), lines


def semi_settings(stats) -> list[tuple]:
  """(model, labelled, dropout, alpha) of semi-supervised runs (unlabelled on)."""
  return sorted({(m, lab, p, a) for (m, _, lab, unl, p, a) in stats if lab > 0 and unl})


def claim_semi(records) -> tuple[str, list[str]]:
  """Adding the KL-only term on unlabelled data beats labelled-only training with the same labelled loss.

  The verdict compares semi (alpha on labelled, KL on unlabelled) with labelled-only at the same alpha -- one
  factor, as in Su's comparison (alpha = 0: plain CE on the labelled examples). Other labelled-only runs
  (e.g. R-Drop alpha = 4 on the labelled examples alone) are listed for information.
  """
  acc = collect(records, "eval/accuracy")
  oks, lines = [], []
  for model, lab, p, alpha in semi_settings(acc):
    semi = acc[(model, lab, lab, True, p, alpha)]
    bases = sorted(k[5] for k in acc if k[:5] == (model, lab, lab, False, p))
    for base_alpha in sorted(bases, key=lambda x: x != alpha):
      verdict, d, spread = compare(semi, acc[(model, lab, lab, False, p, base_alpha)], MIN_SEEDS_ACCURACY)
      matched = base_alpha == alpha
      if matched:
        oks.append(None if verdict == "inconclusive" else verdict == "higher")
      what = "plain" if base_alpha == 0 else f"R-Drop α={base_alpha:g}"
      lines.append(f"{model}, {lab} labels, p={p}: semi (α={alpha:g} + unlabelled KL) vs labelled-only {what}: "
                   f"Δacc {d * 100:+.2f} pts (spread {spread * 100:.2f}): {verdict}"
                   + ("" if matched else " (for information)"))
  return _overall(oks), lines


def claim_underfit(records, ref_alpha: float = 4.0) -> tuple[str, list[str]]:
  """The largest alpha (> ref) has higher training CE and lower test accuracy than alpha = ref."""
  ce = collect(records, "train/ce")
  acc = collect(records, "eval/accuracy")
  oks, lines = [], []
  for model, n, p in supervised_settings(acc):
    alphas = sorted(k[5] for k in acc if k[:5] == (model, n, 0, False, p))
    if not alphas or alphas[-1] <= ref_alpha or _sup(model, n, p, ref_alpha) not in acc:
      continue
    big = alphas[-1]
    v_ce, d_ce, s_ce = compare(ce[_sup(model, n, p, big)], ce[_sup(model, n, p, ref_alpha)], MIN_SEEDS_OTHER)
    v_acc, d_acc, s_acc = compare(acc[_sup(model, n, p, big)], acc[_sup(model, n, p, ref_alpha)],
                                  MIN_SEEDS_ACCURACY)
    ok = None if "inconclusive" in (v_ce, v_acc) else (v_ce == "higher" and v_acc == "lower")
    oks.append(ok)
    lines.append(f"{model}, n={n}, p={p}: α={big:g} vs α={ref_alpha:g}: train CE {d_ce:+.3f} (spread "
                 f"{s_ce:.3f}: {v_ce}), test acc {d_acc * 100:+.2f} pts (spread {s_acc * 100:.2f}: {v_acc})")
  return _overall(oks), lines


CLAIMS = (
    ("R-Drop shrinks the consistency gap KL(P̄‖P0) between the dropout-off prediction and the MC average "
     "(Su's train/inference consistency argument)", claim_consistency),
    ("Test accuracy with R-Drop (α = 1, 4) is equal to or better than plain dropout", claim_accuracy),
    ("The accuracy gain is largest in the low-data / high-dropout regime", claim_regime),
    ("Semi-supervised: adding the KL-only term on unlabelled data beats labelled-only training with the same "
     "labelled loss (Su, 1% labels: +1.44 valid, +0.80 test)", claim_semi),
    ("Too large an α under-fits: higher training CE and lower test accuracy than α = 4", claim_underfit),
)


def check_claims(records) -> list[tuple[str, str, list[str]]]:
  return [(text, *fn(records)) for text, fn in CLAIMS]


# ----------------------------------------------------------------------------------------------- Tables.


def _alphas(stats, pred) -> list[float]:
  return sorted({k[5] for k in stats if pred(k)})


def table_supervised(records) -> list[str]:
  acc = collect(records, "eval/accuracy")
  kl = collect(records, "eval/consistency_kl")
  settings = supervised_settings(acc)
  alphas = _alphas(acc, lambda k: k[2] == 0)
  head = "| model | train size | dropout | " + " | ".join(
      ("plain dropout (α=0)" if a == 0 else f"α={a:g}") for a in alphas) + " |"
  out = ["Test accuracy (%) and consistency KL(P̄‖P0) (×10⁻³), mean ± std over seeds (n). ▲/▼: above/below "
         "plain dropout by more than the seed spread, =: inside it, ?: fewer than "
         f"{MIN_SEEDS_ACCURACY} seeds.", "", head, "|" + " --- |" * (3 + len(alphas))]
  for model, n, p in settings:
    cells = []
    for a in alphas:
      s = acc.get(_sup(model, n, p, a))
      if s is None:
        cells.append("—")
        continue
      mark = "" if a == 0 else " " + _sym(compare(s, acc[_sup(model, n, p, 0)], MIN_SEEDS_ACCURACY)[0], "higher")
      k = kl.get(_sup(model, n, p, a), Stat([]))
      cells.append(f"{s.fmt(100)} ({s.n}){mark}<br>KL {k.fmt(1e3, 2)}")
    out.append(f"| {model} | {n} | {p:g} | " + " | ".join(cells) + " |")
  return out


def table_consistency(records) -> list[str]:
  names = [("eval/accuracy", "acc (dropout off) %", 100, 1), ("eval/mc_accuracy", "acc (MC avg) %", 100, 1),
           ("eval/consistency_kl", "KL(P̄‖P0) ×10⁻³", 1e3, 2), ("eval/consistency_disagree", "disagree %", 100, 2),
           ("eval/dropout_kl", "test R-Drop KL ×10⁻³", 1e3, 1)]
  stats = [collect(records, m) for m, *_ in names]
  out = ["| model | train size | dropout | α | " + " | ".join(n for _, n, *_ in names) + " |",
         "|" + " --- |" * (4 + len(names))]
  for model, n, p in supervised_settings(stats[0]):
    for a in _alphas(stats[0], lambda k, m=model, n_=n, p_=p: k[:5] == (m, n_, 0, False, p_)):
      key = _sup(model, n, p, a)
      out.append(f"| {model} | {n} | {p:g} | {a:g} | " + " | ".join(
          s.get(key, Stat([])).fmt(sc, dg) for s, (_, _, sc, dg) in zip(stats, names)) + " |")
  return out


def table_alpha(records) -> list[str]:
  acc, ce = collect(records, "eval/accuracy"), collect(records, "train/ce")
  kl = collect(records, "eval/consistency_kl")
  out = ["| model | train size | dropout | α | test acc % | final train CE (dropout on) | KL(P̄‖P0) ×10⁻³ |",
         "| --- | --- | --- | --- | --- | --- | --- |"]
  for model, n, p in supervised_settings(acc):
    alphas = _alphas(acc, lambda k, m=model, n_=n, p_=p: k[:5] == (m, n_, 0, False, p_))
    if len(alphas) < 4:
      continue
    for a in alphas:
      key = _sup(model, n, p, a)
      out.append(f"| {model} | {n} | {p:g} | {a:g} | {acc[key].fmt(100)} | {ce.get(key, Stat([])).fmt(1, 3)} | "
                 f"{kl.get(key, Stat([])).fmt(1e3, 2)} |")
  return out if len(out) > 2 else ["(no α sweep beyond the main grid in these results)"]


def table_semi(records) -> list[str]:
  acc = collect(records, "eval/accuracy")
  rows = sorted({(m, lab, p) for (m, _, lab, _, p, _) in acc if lab > 0})
  alphas = sorted({k[5] for k in acc if k[2] > 0 and not k[3]})
  semis = sorted({k[5] for k in acc if k[2] > 0 and k[3]})
  cols = [(False, a) for a in alphas] + [(True, a) for a in semis]
  names = [(f"+ unlabelled KL (α={a:g} on labelled)" if u else
            ("labelled only, plain" if a == 0 else f"labelled only, R-Drop α={a:g}")) for u, a in cols]
  out = [f"Test accuracy (%), mean ± std (n). ▲/▼/=: semi vs labelled-only with the same α (significance rule).",
         "", "| model | labels | dropout | " + " | ".join(names) + " |", "|" + " --- |" * (3 + len(cols))]
  for model, lab, p in rows:
    txt = []
    for u, a in cols:
      c = acc.get((model, lab, lab, u, p, a))
      cell = f"{c.fmt(100)} ({c.n})" if c else "—"
      base = acc.get((model, lab, lab, False, p, a))
      if u and c and base:
        cell += " " + _sym(compare(c, base, MIN_SEEDS_ACCURACY)[0], "higher")
      txt.append(cell)
    out.append(f"| {model} | {lab} ({lab / 40:g}%) | {p:g} | " + " | ".join(txt) + " |")
  return out


def table_published(records, alpha: float = 4.0) -> list[str]:
  acc = collect(records, "eval/accuracy")
  out = ["| source | task | baseline | R-Drop | gain |", "| --- | --- | --- | --- | --- |"]
  for task, metric, base, rd in published.SU_SUPERVISED:
    out.append(f"| Su (kexue.fm/archives/8496) | {task}, {metric} | {base:.2f} | {rd:.2f} | {rd - base:+.2f} |")
  for model, n, p in supervised_settings(acc):
    a, b = acc.get(_sup(model, n, p, alpha)), acc[_sup(model, n, p, 0)]
    if a is not None:
      out.append(f"| ours | MNIST-1D {model}, {n} train, p={p:g}, α={alpha:g}, accuracy % | {b.fmt(100)} | "
                 f"{a.fmt(100)} | {(a.mean - b.mean) * 100:+.2f} |")
  for split, sup, vat, rd in published.SU_SEMI:
    out.append(f"| Su, semi-supervised 1% labels | sentiment {split}, accuracy % | {sup:.2f} | {rd:.2f} | "
               f"{rd - sup:+.2f} (VAT {vat:.2f}) |")
  for model, lab, p, a in semi_settings(acc):
    base = acc.get((model, lab, lab, False, p, 0.0))
    semi = acc[(model, lab, lab, True, p, a)]
    if base is not None:
      out.append(f"| ours, semi-supervised {lab} labels | MNIST-1D {model}, accuracy % | {base.fmt(100)} | "
                 f"{semi.fmt(100)} | {(semi.mean - base.mean) * 100:+.2f} |")
  return out


def table_times(records) -> list[str]:
  groups = collections.defaultdict(list)
  for r in records:
    kind = "semi-supervised" if r["labelled"] else "supervised"
    groups[(kind, r["model"])].append(float(r.get("wall_time_s", 0.0)))
  out = ["| runs | model | count | mean s / run | total min |", "| --- | --- | --- | --- | --- |"]
  for (kind, model), ts in sorted(groups.items()):
    out.append(f"| {kind} | {model} | {len(ts)} | {np.mean(ts):.1f} | {np.sum(ts) / 60:.1f} |")
  total = sum(float(r.get("wall_time_s", 0.0)) for r in records)
  out.append(f"| all | | {len(records)} | {total / max(len(records), 1):.1f} | {total / 60:.1f} |")
  return out


# ------------------------------------------------------------------------------------------------ Plots.


def make_plots(records, out_dir: str) -> list[str]:
  """PNG plots in out_dir; returns their file names (empty if matplotlib is unavailable)."""
  try:
    # A bare Figure (no pyplot state, no global backend switch): safe inside notebooks and threads.
    from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  except ImportError:
    return []
  files = []
  acc, kl, ce = (collect(records, m) for m in ("eval/accuracy", "eval/consistency_kl", "train/ce"))
  settings = supervised_settings(acc)
  if settings:
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    for model, n, p in settings:
      alphas = _alphas(acc, lambda k, m=model, n_=n, p_=p: k[:5] == (m, n_, 0, False, p_))
      lab = f"{model} n={n} p={p:g}"
      for ax, st, sc in ((axes[0], acc, 100), (axes[1], kl, 1), (axes[2], ce, 1)):
        ss = [st.get(_sup(model, n, p, a), Stat([])) for a in alphas]
        ax.errorbar(alphas, [s.mean * sc for s in ss], yerr=[s.std * sc for s in ss], marker="o", capsize=3,
                    label=lab)
    axes[0].set(xlabel="α", ylabel="test accuracy %", title="accuracy vs α (α=0: plain dropout)")
    axes[1].set(xlabel="α", ylabel="KL(P̄‖P0)", yscale="log", title="consistency gap vs α")
    axes[2].set(xlabel="α", ylabel="final train CE (dropout on)", title="training fit vs α")
    ticks = sorted({k[5] for k in acc if k[2] == 0})
    for ax in axes:
      ax.set_xscale("symlog", linthresh=1.0)
      ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
      ax.set_xlim(-0.3, max(ticks) * 1.15)
      ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "fig_supervised.png"), dpi=110)
    files.append("fig_supervised.png")
  semis = sorted({(m, lab, p) for (m, _, lab, _, p, _) in acc if lab > 0})
  if semis:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    width = 0.27
    for j, (name, pred) in enumerate((("labelled only, plain", lambda k: not k[3] and k[5] == 0),
                                      ("labelled only, R-Drop", lambda k: not k[3] and k[5] > 0),
                                      ("+ unlabelled KL (semi)", lambda k: k[3]))):
      ms, ss = [], []
      for model, lab, p in semis:
        s = next((v for k, v in acc.items() if k[0] == model and k[2] == lab and k[4] == p and pred(k)), Stat([]))
        ms.append(s.mean * 100)
        ss.append(s.std * 100)
      ax.bar(np.arange(len(semis)) + (j - 1) * width, ms, width, yerr=ss, capsize=3, label=name)
    ax.set_xticks(np.arange(len(semis)), [f"{m}\n{lab} labels" for m, lab, _ in semis])
    ax.set(ylabel="test accuracy %", title="semi-supervised R-Drop on MNIST-1D")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "fig_semi.png"), dpi=110)
    files.append("fig_semi.png")
  return files


# ------------------------------------------------------------------------------------------------ Report.


def render(records: list[dict[str, Any]], *, plots: Sequence[str] = (), meta: dict[str, Any] | None = None) -> str:
  """The REPORT.md text."""
  meta = meta or {}
  seeds = sorted({r["seed"] for r in records})
  lines = ["# R-Drop (\"dropout twice\") on MNIST-1D — issue #7", "",
           "Generated by `experiments/rdrop/report.py` from the study's runs; do not edit by hand.", "",
           "Article: https://kexue.fm/archives/8496 (Su Jianlin); paper: arXiv 2106.14448. Loss (tasks/classify.py): "
           "batch mean of ½[CE(z1,y)+CE(z2,y)] + (α/2)·½[KL(P1‖P2)+KL(P2‖P1)] = ½ × the paper's per-example "
           "loss, i.e. Su's code; α has the paper's and Su's meaning. α = 0 is plain (single-pass) dropout. "
           "Consistency gap: KL(P̄‖P0) between the mean P̄ of 20 dropout-on passes and the dropout-off "
           "prediction P0, on the 1000 test examples.", "",
           f"Runs: {len(records)}; seeds: {seeds}. " + meta.get("summary", ""), "",
           "**Significance rule.** A difference d between two settings counts only if |d| exceeds the seed "
           "spread, max(std_a, std_b) (sample std over seeds); otherwise it is reported as *no difference*. "
           f"Accuracy verdicts need ≥ {MIN_SEEDS_ACCURACY} seeds per setting, others ≥ {MIN_SEEDS_OTHER}.", "",
           "## Claim checklist", ""]
  for text, verdict, evidence in check_claims(records):
    lines.append(f"- **{verdict}** — {text}")
    lines.extend(f"  - {e}" for e in evidence)
  failed = [r for r in records if r.get("error")]
  if failed:
    lines += ["", f"**{len(failed)} run(s) failed** (non-finite loss; left out of every statistic):"]
    lines += [f"- `{r.get('name', '?')}`: {r['error'][:200]}" for r in failed]
  lines += ["", "## Supervised: accuracy and consistency", ""] + table_supervised(records)
  lines += ["", "### Consistency diagnostic (all metrics)", ""] + table_consistency(records)
  lines += ["", "### α sweep (under-fitting)", ""] + table_alpha(records)
  lines += ["", "## Semi-supervised (first N training examples labelled, the rest unlabelled)", ""]
  lines += table_semi(records)
  lines += ["", "## Su's published gains beside ours", ""] + table_published(records)
  lines += ["", "Su's numbers are BERT-base on Chinese CLUE / sentiment data; ours are small MLP/CNN models on "
            "MNIST-1D, so only the direction and rough size of the gains are comparable."]
  if plots:
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
  lines += ["", "## Run times", ""] + table_times(records)
  lines += stats.report_footer(meta.get("machine"), meta.get("commands", []), records)
  return "\n".join(lines) + "\n"


def write_report(records, out_dir: str, *, meta: dict[str, Any] | None = None) -> str:
  os.makedirs(out_dir, exist_ok=True)
  plots = make_plots(records, out_dir)
  path = os.path.join(out_dir, "REPORT.md")
  with open(path, "w") as f:
    f.write(render(records, plots=plots, meta=meta))
  return path
