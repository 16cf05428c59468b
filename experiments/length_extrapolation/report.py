"""REPORT.md (+ PNG plots) generated from a results dict (run.py's results.json); nothing here is hard-coded
except Su's published numbers (published.py) and the claims' wording.

Statistics. Every method is evaluated on the same test windows, so two methods are compared *paired*: the
per-window accuracy differences d_w give mean(d) +- SE = sd(d)/sqrt(#windows). A claim "A > B" holds when
mean(d) > t SE, does not hold when mean(d) < -t SE, and is inconclusive in between (t = 2 over windows, the
t quantile with seeds - 1 df over seeds). Comparisons across two
checkpoints (log n pre-trained vs not) are paired on windows too; with seed replicates (run.py --seeds) the
claims that compare them average the per-seed differences and use the SE over seeds, which includes the
seed-to-seed variance of training. Comparisons across lengths (different windows)
use the unpaired SE sqrt(se_a^2 + se_b^2).
"""
from __future__ import annotations

import os
import re

import numpy as np
from scipy import stats as scipy_stats

from experiments.framework import claims as claims_lib
from experiments.framework import report as framework_report
from experiments.length_extrapolation import claims as le_claims
from experiments.length_extrapolation import published



class Results:
  """Accessors over results.json."""

  def __init__(self, res: dict):
    self.res = res
    self.meta = res["meta"]
    self.n = int(self.meta["train_length"])
    self.ext = int(self.meta.get("extension", 8))
    # Seed replicates ("name@s1", run.py --seeds) feed only the seed-aware comparisons (`seed_paired`).
    self.m = {k: v for k, v in res["methods"].items() if "@s" not in k}
    self.reps = {k: v for k, v in res["methods"].items() if "@s" in k}

  def has(self, *names):
    return all(nm in self.m for nm in names)

  def acc(self, name, length, which="nonrep", key="acc"):
    """Per-window values in percent (None if absent)."""
    r = (self.m.get(name) or self.reps.get(name) or {}).get("by_length", {}).get(str(length), {}).get(which)
    if r is None or key not in r:
      return None
    scale = 1.0 if key == "loss" else 100.0
    return np.asarray(r[key], np.float64) * scale

  def mean(self, name, length, which="nonrep", key="acc"):
    a = self.acc(name, length, which, key)
    return None if a is None else float(a.mean())

  def se(self, name, length, which="nonrep", key="acc"):
    a = self.acc(name, length, which, key)
    return None if a is None or len(a) < 2 else float(a.std(ddof=1) / np.sqrt(len(a)))

  def paired(self, a, b, length, which="nonrep", key="acc"):
    """(mean(a - b), SE) over the shared windows, in points."""
    x, y = self.acc(a, length, which, key), self.acc(b, length, which, key)
    if x is None or y is None:
      return None
    d = x - y
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0

  def growing(self, name, ctx, key="loss"):
    g = self.m.get(name, {}).get("growing", {}).get(str(ctx))
    return None if g is None else np.asarray(g[key], np.float64)


def probes_of(res: dict) -> list[dict]:
  """The copy probes of a results dict (older results.json files hold a single "copy_probe")."""
  if "copy_probes" in res:
    return list(res["copy_probes"] or [])
  return [res["copy_probe"]] if res.get("copy_probe") else []


def _fmt(d):
  return "n/a" if d is None else f"{d[0]:+.2f} ± {d[1]:.2f}"


def _su(row, col=2):
  v = published.SU.get(row)
  return "?" if v is None else f"{v[col]:.2f}"


def _su_copy(name: str, n: int) -> str | None:
  """Su's row for a method on a copy-augmented checkpoint ("copy/x" ~ x, "copy-logn/x" ~ logn/x)."""
  if name.startswith("copy-logn/"):
    base = "logn/" + name[len("copy-logn/"):]
  elif name.startswith("copy/"):
    base = name[len("copy/"):]
  else:
    return None
  return {"rope": "Baseline", "logn/rope": "Baseline-log n"}.get(base) or published.su_row(base, n)


def copy_table(R: Results) -> list[str]:
  """The repeated column on the copy-augmented checkpoints, Su's numbers beside ours."""
  n, L8 = R.n, R.n * R.ext
  names = [k for k in R.m if k.startswith(("copy/", "copy-logn/"))]
  lines = [f"| method | Su's row | ours {n} non-rep | ours {n} rep | ours {L8} non-rep | ours {L8} rep | "
           f"ours {L8} rep, copy targets | Su 4096 rep | Su 4096 non-rep |", "|---|---|---|---|---|---|---|---|---|"]
  for k in names:
    row = _su_copy(k, n)
    su = published.SU.get(row) if row else None
    ct = R.acc(k, L8, "rep", "copy_acc")
    f = lambda v, s=None: "n/a" if v is None else f"{v:.2f}" + (f" ± {s:.2f}" if s is not None else "")
    lines.append(f"| {k} | {row or '–'} | {f(R.mean(k, n), R.se(k, n))} | {f(R.mean(k, n, 'rep'))} | "
                 f"{f(R.mean(k, L8), R.se(k, L8))} | {f(R.mean(k, L8, 'rep'), R.se(k, L8, 'rep'))} | "
                 f"{f(None if ct is None else float(ct.mean()))} | {'–' if su is None else f'{su[1]:.2f}'} | "
                 f"{'–' if su is None else f'{su[2]:.2f}'} |")
  return lines


def su_table(R: Results, names) -> list[str]:
  n, L8 = R.n, R.n * R.ext
  lines = [f"| method | Su's row | ours {n} (train) | ours {L8} repeated | ours {L8} non-repeated | "
           "Su 512 (train) | Su 4096 repeated | Su 4096 non-repeated |", "|---|---|---|---|---|---|---|---|"]
  for nm in names:
    row = published.su_row(nm, n) or ""
    su = published.SU.get(row)
    def f(v, se=None):
      return "–" if v is None else f"{v:.2f}" + (f" ± {se:.2f}" if se is not None else "")
    lines.append(f"| {nm} | {row or '–'} | {f(R.mean(nm, n), R.se(nm, n))} | "
                 f"{f(R.mean(nm, L8, 'rep'), R.se(nm, L8, 'rep'))} | {f(R.mean(nm, L8), R.se(nm, L8))} | "
                 + (" | ".join(f"{v:.2f}" for v in su) if su else "– | – | –") + " |")
  return lines


def lengths_table(R: Results, names, which="nonrep", key="acc") -> list[str]:
  lens = R.meta["test_lengths"]
  lines = ["| method | " + " | ".join(str(L) for L in lens) + " |", "|---|" + "---|" * len(lens)]
  for nm in names:
    cells = []
    for L in lens:
      v = R.mean(nm, L, which, key)
      cells.append("" if v is None else (f"{v:.3f}" if key == "loss" else f"{v:.2f}"))
    lines.append(f"| {nm} | " + " | ".join(cells) + " |")
  return lines


def paired_table(R: Results, names, ref="rope") -> list[str]:
  n, L8 = R.n, R.n * R.ext
  lines = [f"| method | ckpt | Δacc vs {ref} at {n} (tax) | Δacc vs {ref} at {L8} non-rep | "
           f"Δacc vs {ref} at {L8} repeated |", "|---|---|---|---|---|"]
  for nm in names:
    lines.append(f"| {nm} | {R.m[nm]['ckpt']} | {_fmt(R.paired(nm, ref, n))} | {_fmt(R.paired(nm, ref, L8))} | "
                 f"{_fmt(R.paired(nm, ref, L8, 'rep'))} |")
  return lines


def growing_table(R: Results) -> list[str]:
  n, L8 = R.n, R.n * R.ext
  ctxs = [n * k for k in (1, 2, 4, R.ext)]
  names = [nm for nm in R.m if "growing" in R.m[nm]]
  lines = [f"| method | " + " | ".join(f"loss, C={c}" for c in ctxs) + " |", "|---|" + "---|" * len(ctxs)]
  for nm in names:
    cells = []
    for c in ctxs:
      g = R.growing(nm, c)
      cells.append("" if g is None else f"{g.mean():.3f}")
    lines.append(f"| {nm} | " + " | ".join(cells) + " |")
  return lines


def _style(i):
  import matplotlib  # pylint: disable=g-import-not-at-top
  return dict(color=matplotlib.colormaps["tab20"](i % 20), marker="os^vDP*X"[i % 8], ms=4,
              ls=("-", "--", ":")[(i // 8) % 3], lw=1.4)


def _axes(size):
  """One panel in the house style (experiments/framework/report.py)."""
  fig, axes = framework_report.figure(size=size)
  return fig, axes[0, 0]


def _finish(fig, path, ncol=2):
  framework_report.save(fig, os.path.dirname(path) or ".", os.path.basename(path), ncol=ncol)


def _plot(R: Results, names, path, which="nonrep", title=""):
  lens = R.meta["test_lengths"]
  fig, ax = _axes((8, 5))
  for i, nm in enumerate(names):
    pts = [(L, R.mean(nm, L, which)) for L in lens if R.mean(nm, L, which) is not None]
    if not pts:
      continue
    ax.plot([p[0] for p in pts], [p[1] for p in pts], **_style(i), label=nm)
  ax.set_xscale("log", base=2)
  ax.set_xticks(lens)
  ax.set_xticklabels([str(L) for L in lens])
  ax.axvline(R.n, color="gray", ls=":", lw=1)
  ax.set_xlabel("test length (tokens); dotted = L_train")
  ax.set_ylabel(f"next-token accuracy (%), {'repeated' if which == 'rep' else 'non-repeated'} set")
  ax.set_title(title + " (± SE in the tables)")
  _finish(fig, path)


def _plot_growing(R, path):
  ctxs = [R.n * k for k in (1, 2, 4, R.ext)]
  fig, ax = _axes((7.5, 4.8))
  for i, nm in enumerate([k for k in R.m if "growing" in R.m[k]]):
    ys = [R.growing(nm, c) for c in ctxs]
    if any(y is None for y in ys):
      continue
    ax.plot(ctxs, [y.mean() for y in ys], **_style(i), label=nm)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xticks(ctxs)
  ax.set_xticklabels([str(c) for c in ctxs])
  ax.set_xlabel(f"context length C (the same last {R.n} tokens are scored)")
  ax.set_ylabel("loss (nats/byte)")
  ax.set_title("Growing-context protocol (9948 / bojone/rerope eval_loss.py)")
  _finish(fig, path)


def _plot_copy(R, path):
  cc = R.res.get("copy_vs_steps") or []
  if not cc:
    return False
  fig, ax = _axes((6, 4))
  steps = [c["step"] for c in cc]
  ax.plot(steps, [100 * c["nonrep_acc"] for c in cc], marker="o", label="non-repeated")
  ax.plot(steps, [100 * c["rep_acc"] for c in cc], marker="o", label="repeated (all targets)")
  ax.plot(steps, [100 * c["rep_copy_acc"] for c in cc], marker="o", label="repeated (copy targets)")
  ax.set_xlabel("training step (baseline RoPE)")
  ax.set_ylabel(f"accuracy (%) at L = L_train = {R.n}")
  ax.set_title("Copy check: does the baseline copy within L_train?")
  _finish(fig, path, ncol=1)
  return True


COPY_ARG_TEXT = "copy=0.25,copy_source=random,copy_warmup=600"
RANDOM_COPY_NOTE = ("*Random bytes, copy targets*: printable random bytes, a segment of s ~ U{N/4..N/2} tiled to "
                    "N; accuracy on the targets after the first copy. Only copying predicts them (chance ~1%), so "
                    "this column isolates in-context copying; *n/a* = not measured in that run.")


def copy_trend(curve, tokens_per_step: float, target: float = 10.0) -> dict | None:
  """Least-squares slope of the copy gap (points) vs tokens over the last half (>= 3 points) of a copy-vs-steps
  curve, its standard error, and the tokens at which that line would reach `target` points. `reach_mtok` is None
  unless the gap is rising: the framework's one-sided linregress slope test holds at alpha = 0.05 (n - 2 degrees
  of freedom: three points leave one, where a 2-SE slope has p ~ 0.15).

  A linear extrapolation of a measured trend, not a prediction: copying typically appears in a phase change,
  so the real budget can be smaller (a sudden jump) or larger (a plateau)."""
  pts = [(c["step"] * tokens_per_step, 100 * (c["rep_acc"] - c["nonrep_acc"])) for c in curve]
  pts = pts[-max(3, len(pts) // 2):]
  if len(pts) < 3 or not tokens_per_step:
    return None
  x, y = np.array([p[0] for p in pts]) / 1e6, np.array([p[1] for p in pts])
  slope, icpt = np.polyfit(x, y, 1)
  resid = y - (slope * x + icpt)
  se = float(np.sqrt(resid @ resid / (len(x) - 2) / np.sum((x - x.mean()) ** 2)))
  last_x, last_y = float(x[-1]), float(y[-1])
  rising = claims_lib.judge(claims_lib.Claim("gap", "the copy gap rises", "trend", "gap"),
                           {"gap": list(zip(x, y))}).verdict == claims_lib.HOLDS
  reach = last_x + (target - last_y) / slope if rising and last_y < target else None
  return {"slope_per_mtok": float(slope), "slope_se": se, "points": len(x), "last_mtok": last_x,
          "last_gap": last_y, "target": target, "reach_mtok": None if reach is None else float(reach)}


def trend_sentence(t: dict, n: int, tokens_per_s: float | None = None) -> str:
  head = (f"Trend over the last {t['points']} checkpoints: the copy gap at {n} moves {t['slope_per_mtok']:+.2f} ± "
          f"{t['slope_se']:.2f} points per million training tokens (last: {t['last_gap']:+.2f} at "
          f"{t['last_mtok']:.1f}M tokens).")
  if t["last_gap"] >= t["target"]:
    return head + f" It is above the {t['target']:.0f}-point threshold."
  if t["reach_mtok"] is None:
    return head + " It is not significantly rising (one-sided linregress slope test, p ≥ 0.05), so no budget can be read off it."
  cost = ""
  if tokens_per_s:
    minutes = t["reach_mtok"] * 1e6 / tokens_per_s / 60
    cost = (f"; at this run's measured {tokens_per_s / 1e3:.1f}k tokens/s that is ~{minutes:.0f} min of training "
            "per checkpoint on this machine")
  return (head + f" Extrapolated linearly, it would reach +{t['target']:.0f} points at ~{t['reach_mtok']:.0f}M "
          f"tokens ({t['reach_mtok'] / t['last_mtok']:.1f}x this run){cost}; a phase change can make it sooner.")


def copy_regime_verdict(res: dict) -> str:
  """One paragraph from the copy curves: which baselines are rising, and the cheapest measured route's budget."""
  n = int(res["meta"]["train_length"])
  runs = res.get("runs", {})
  curves = []
  for key, name, run in (("copy_vs_steps", "the baseline (`rope.py`)", "rope"),
                         ("copy_vs_steps_copy_aug", f"the copy-augmented baseline (`rope.py:{COPY_ARG_TEXT}`)",
                          "rope_copy")):
    if res.get(key):
      curves.append((name, res[key], res["meta"].get("batch_size", 0) * n, _tokens_per_s(runs.get(run, {}))))
  for p in probes_of(res):
    if p.get("curve"):
      ps = p["summary"]
      curves.append((f"`rope.py:{p['arg']}`", p["curve"], ps.get("tokens", 0) / max(1, ps.get("step", 1)),
                     _tokens_per_s(ps)))
  if not curves:
    return ""
  copying = [name for name, c, _, _ in curves if 100 * (c[-1]["rep_acc"] - c[-1]["nonrep_acc"]) > 10]
  if copying:
    plain = [name for name, c, _, _ in curves if name not in copying]
    return (f"Yes, with copy augmentation: {', '.join(copying)} copies within L_train (gap > 10 points), so Su's "
            "repeated-column claims are tested on the copy-augmented checkpoints (claims R0-R7 and their "
            f"section). Without it no run copies: {', '.join(plain) or 'none'} (tables below); the claims marked "
            "'the baseline does not copy' refer to the plain checkpoints.")
  routes = []
  for name, c, tps, speed in curves:
    t = copy_trend(c, tps)
    if t and t["reach_mtok"] is not None and speed:
      routes.append((t["reach_mtok"] * 1e6 / speed, name, t))
  flat = [name for name, c, tps, _ in curves if not (copy_trend(c, tps) or {}).get("reach_mtok")]
  text = (f"No run copies within L_train (gap > 10 points). Not rising (or too few checkpoints): "
          f"{', '.join(flat) or 'none'}.")
  if routes:
    secs, name, t = min(routes)
    k = len(res["meta"].get("variants", [])) or 1
    text += (f" The cheapest measured route is {name}: its gap rises {t['slope_per_mtok']:+.2f} ± "
             f"{t['slope_se']:.2f} points per million tokens, so a straight line reaches +{t['target']:.0f} at "
             f"~{t['reach_mtok']:.0f}M tokens, ~{secs / 60:.0f} min of training per checkpoint at its measured "
             f"speed, ~{k * secs / 3600:.1f} h for the study's {k} checkpoints: beyond the 60-min budget of the "
             "default study, so the repeated-column claims stay untested here. The `medium` scale (131M tokens, "
             "the Colab TPU notebook) is the next measurement.")
  else:
    text += " No curve rises significantly, so no budget can be read off them at this scale."
  return text


def _tokens_per_s(summary: dict) -> float | None:
  """Training throughput of one run (tokens / wall seconds; the machine may have been shared)."""
  tok, wall = summary.get("tokens"), summary.get("wall_time_s")
  return tok / wall if tok and wall else None


def load_copy_controls(out_dir: str) -> list[tuple[str, dict]]:
  """copy_control*.json files next to the report (written by copy_control.py --out)."""
  import glob  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  out = []
  for path in sorted(glob.glob(os.path.join(out_dir, "copy_control*.json"))):
    with open(path) as f:
      out.append((os.path.basename(path), json.load(f)))
  return out


def copy_control_md(c: dict) -> str:
  lines = [f"Config `{c['config']}`: {c['batch_size']} sequences of {c['train_length'] + 1} tokens per step, "
           f"{c['wall_s']:.0f} s on {c['hardware']}.", "",
           "| step | sequences seen | copy accuracy % (random bytes) | train loss |", "|---|---|---|---|"]
  lines += [f"| {r['step']} | {r['sequences']:,} | {100 * r['copy_acc']:.2f} | {r['train_loss']:.3f} |"
            for r in c["curve"]]
  s50 = next((r["step"] for r in c["curve"] if r["copy_acc"] >= 0.5), None)
  lines += ["", f"First evaluation with copy accuracy >= 50%: {'none' if s50 is None else f'step {s50}'} "
                f"(of {c['steps']}).", ""]
  return "\n".join(lines)


def _pct(v):
  return "n/a" if v is None else f"{100 * v:.2f}"


def write_report(res: dict, out_dir: str, plots: bool = True, footer: str = "") -> str:
  """Writes REPORT.md (report_template.md filled in) and the PNGs into out_dir; returns the markdown."""
  R = Results(res)
  checklist, copies = checklist_md(res)
  text = framework_report.fill(os.path.join(os.path.dirname(os.path.abspath(__file__)), "report_template.md"), dict(
      _setup(R, res), checklist="\n".join(checklist), tables="\n".join(_tables_md(R, res, copies, out_dir, plots)),
      copy="\n".join(_copy_md(R, res, out_dir)), cost="\n".join(_cost_md(R, res)), footer=footer))
  with open(os.path.join(out_dir, "REPORT.md"), "w") as f:
    f.write(text)
  return text


def _setup(R: Results, res: dict) -> dict[str, str]:
  """The computed lines of the template's Setup section."""
  meta, n, L8, m = R.meta, R.n, R.n * R.ext, R.meta["model"]
  seeds, b = int(meta.get("seeds", 1)), res.get("baselines", {})
  return dict(
      ours=f"- **Ours:** byte-level causal LM on the built-in Python-stdlib corpus (train 11.2 MB; test split held "
      f"out), L_train = N = {n}, tested at {', '.join(map(str, meta['test_lengths']))} (1x..{R.ext}x). Model: "
      f"{m.get('num_layers')} layers, d = {m.get('embed_dim')}, {m.get('num_heads')} head(s) of {m.get('head_dim')}, "
      f"MLP {m.get('mlp_dim')}, {m.get('norm')}-norm, block {m.get('block')}. Each variant: {meta['steps']} steps of "
      f"batch {meta['batch_size']} ({meta['steps'] * meta['batch_size'] * n / 1e6:.2f}M tokens), AdamW lr "
      f"{meta['optimizer'].get('learning_rate')}, cosine, warmup {meta['optimizer'].get('warmup_steps')}, "
      + (f"seed 0 ({seeds} seeds of `rope` and `rope_logn`)." if seeds > 1 else "one seed."),
      su_setup=f"{published.SU_SETUP['params']} {published.SU_SETUP['layers']}-layer {published.SU_SETUP['block']}",
      test_sets=f"- **Test sets** (held-out `test` split): non-repeated = contiguous windows, "
      f"{', '.join(f'{v} at {k}' for k, v in meta['windows'].items())} (the same number of tokens per length); "
      f"repeated = each window's first s bytes tiled to the test length, {meta['segment_rule']}, so at L > N every "
      f"copy is at least N tokens back (beyond every trained distance); growing context = the last {n} bytes of "
      f"{meta['growing_docs']} long documents scored with {n}..{L8} bytes of context.",
      ext=R.ext,
      seeds=(f"`rope` and `rope_logn` are trained with {seeds} seeds (`--seeds`): claims 1b, 4a and 4b, which compare "
             "those checkpoints, pair the per-seed means over seeds (training noise included); the tables show seed "
             "0. Every other variant has one training seed, so its differences across checkpoints also carry seed "
             "noise that the window SE does not show." if seeds > 1 else "One training seed per variant, so "
             "differences across checkpoints also carry seed noise that this SE does not show."),
      ngram=(f"**N-gram references** (counted on the training split, scored on the non-repeated windows at {n}): "
             f"unigram {100 * b['unigram_acc']:.2f}%, bigram {100 * b['bigram_acc']:.2f}%." if b else ""))


def _tables_md(R: Results, res: dict, copies: bool, out_dir: str, plots: bool) -> list[str]:
  """Su's layout, paired differences, accuracy / loss by length, growing context, plots."""
  n, L8 = R.n, R.n * R.ext
  names = list(R.m)
  core = [k for k in names if R.m[k].get("core")]
  md = []
  md.append(f"## Main table in Su's layout (accuracy %, ours at {n} / {L8}, Su's at 512 / 4096)\n")
  md.append(f"Our {n} column is re-measured under each method (Su's 512 column is the unmodified checkpoint for "
            "inference-only methods), so it shows the extrapolation tax.\n")
  if not copies:
    copy_arm = ("; the repeated column is tested on the copy-augmented checkpoints instead (section \"Repeated "
                "column on copy-augmented checkpoints\", claims R0-R7)" if "copy/rope" in R.m else "")
    md.append("**Caution:** the baseline does not copy within L_train (claim 0a), so our *repeated* columns "
              "measure tolerance of the tiled text, not long-range retrieval; compare methods on the "
              f"non-repeated columns{copy_arm}.\n")
  md.extend(su_table(R, names))
  md.append("")
  md.append(f"## Paired differences against the baseline (points, ± paired SE)\n")
  md.extend(paired_table(R, [k for k in names if k != "rope"]))
  md.append("")
  md.append("## Accuracy by test length (non-repeated, %)\n")
  md.extend(lengths_table(R, names))
  md.append("\n## Accuracy by test length (repeated, %)\n")
  md.extend(lengths_table(R, names, "rep"))
  md.append("\n## Loss by test length (non-repeated, nats/byte)\n")
  md.extend(lengths_table(R, names, "nonrep", "loss"))
  md.append(f"\n## Growing context: loss on the same last {n} tokens\n")
  md.extend(growing_table(R))
  md.append("")
  if plots:
    os.makedirs(out_dir, exist_ok=True)
    a_names = [k for k in core if R.m[k]["ckpt"] == "rope"]
    b_names = [k for k in core if R.m[k]["ckpt"] != "rope"]
    _plot(R, a_names, os.path.join(out_dir, "acc_vs_length_rope.png"), "nonrep",
          "Inference-time methods on the RoPE checkpoint (non-repeated)")
    _plot(R, b_names + (["rope"] if "rope" in R.m else []), os.path.join(out_dir, "acc_vs_length_pretrained.png"),
          "nonrep", "Log-n checkpoint and pre-training-time methods (non-repeated)")
    _plot(R, core, os.path.join(out_dir, "acc_vs_length_repeated.png"), "rep", "Repeated set")
    _plot_growing(R, os.path.join(out_dir, "growing_context.png"))
    has_copy = _plot_copy(R, os.path.join(out_dir, "copy_vs_steps.png"))
    md.append("## Plots\n")
    md.append("![RoPE checkpoint](acc_vs_length_rope.png)\n")
    md.append("![log n and pre-training methods](acc_vs_length_pretrained.png)\n")
    md.append("![repeated](acc_vs_length_repeated.png)\n")
    md.append("![growing context](growing_context.png)\n")
    if has_copy:
      md.append("![copy check vs steps](copy_vs_steps.png)\n")
  return md


def _copy_md(R: Results, res: dict, out_dir: str) -> list[str]:
  """The copy-augmented checkpoints, the copy regime, copy vs steps, probes, positive control."""
  meta, n, L8 = R.meta, R.n, R.n * R.ext
  runs = res.get("runs", {})
  md = []
  if "copy/rope" in R.m:
    md.append("## Repeated column on copy-augmented checkpoints (claims R0-R7)\n")
    md.append(f"The `*_copy` variants: `rope`, `rope_logn` and `hwfa` retrained with a quarter of the training windows "
              f"replaced by random printable bytes tiled with a period of N/4..N/2 (`{COPY_ARG_TEXT}`): copies are "
              f"only ever seen within L_train. At {L8} the repeated windows repeat with a period of {n}..{L8 // 2}, "
              "so copying needs distances never trained. Accuracy %, ± one SE over windows.\n")
    md += copy_table(R)
    md.append("")
  verdict = copy_regime_verdict(res)
  if verdict:
    md.append("## Copy regime: can the repeated column be tested on this machine?\n")
    md.append(verdict + "\n")
  for key, title, run in (("copy_vs_steps", "baseline RoPE", "rope"),
                          ("copy_vs_steps_copy_aug", "copy-augmented RoPE, `rope_copy`", "rope_copy")):
    cc = res.get(key) or []
    if not cc:
      continue
    md.append(f"## Copy check vs training steps ({title}, at L_train)\n")
    md.append(RANDOM_COPY_NOTE + "\n")
    md.append("| step | non-repeated | repeated | repeated, copy targets only | gap | random bytes, copy targets |")
    md.append("|---|---|---|---|---|---|")
    for c in cc:
      md.append(f"| {c['step']} | {100 * c['nonrep_acc']:.2f} | {100 * c['rep_acc']:.2f} | "
                f"{100 * c['rep_copy_acc']:.2f} | {100 * (c['rep_acc'] - c['nonrep_acc']):+.2f} | "
                f"{_pct(c.get('rand_copy_acc'))} |")
    t = copy_trend(cc, meta.get("batch_size", 0) * n)
    if t:
      md.append(f"\n{trend_sentence(t, n, _tokens_per_s(runs.get(run, {})))}")
    md.append("")
  for probe in probes_of(res):
    if not probe.get("curve"):
      continue
    ps = probe["summary"]
    md.append(f"## Copy probe: `rope.py:{probe['arg']}` ({ps.get('num_params', 0):,} parameters, "
              f"{ps.get('tokens', 0) / 1e6:.1f}M tokens, {ps.get('wall_time_s', 0):.0f} s)\n")
    md.append("Outside the default study's time budget: does a different baseline (architecture/budget) reach the "
              "copying regime? Plain RoPE, evaluated at L_train and at 8x.\n")
    md.append(f"| step | non-rep {n} | rep {n} | rep {n} copy targets | gap {n} | random bytes {n}, copy targets | "
              f"non-rep {L8} | rep {L8} | rep {L8} copy targets |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for c in probe["curve"]:
      md.append(f"| {c['step']} | {100 * c['nonrep_acc']:.2f} | {100 * c['rep_acc']:.2f} | "
                f"{100 * c['rep_copy_acc']:.2f} | {100 * (c['rep_acc'] - c['nonrep_acc']):+.2f} | "
                f"{_pct(c.get('rand_copy_acc'))} | "
                f"{100 * c['nonrep_acc_8x']:.2f} | {100 * c['rep_acc_8x']:.2f} | {100 * c['rep_copy_acc_8x']:.2f} |")
    c0, c1 = probe["curve"][0], probe["curve"][-1]
    md.append(f"\nFrom step {c0['step']} to {c1['step']}: the copy gap at {n} goes from "
              f"{100 * (c0['rep_acc'] - c0['nonrep_acc']):+.2f} to {100 * (c1['rep_acc'] - c1['nonrep_acc']):+.2f} "
              f"points, while non-repeated accuracy rises at {n} ({100 * c0['nonrep_acc']:.2f} -> "
              f"{100 * c1['nonrep_acc']:.2f}) and changes at {L8} ({100 * c0['nonrep_acc_8x']:.2f} -> "
              f"{100 * c1['nonrep_acc_8x']:.2f}).")
    t = copy_trend(probe["curve"], ps.get("tokens", 0) / max(1, ps.get("step", 1)))
    if t:
      md.append(f"\n{trend_sentence(t, n, _tokens_per_s(ps))}")
    md.append("")
  controls = load_copy_controls(out_dir)
  if controls:
    md.append("## Positive control: copying on pure copy data (`copy_control.py`)\n")
    md.append("Every training sequence is random printable bytes tiled with period s ~ U{N/4..N/2}, so copying is "
              "the only thing to learn. It shows how many steps the architecture needs to form copying when "
              "copying is all the data asks for (a lower bound for natural text, where copies are rare).\n")
    for name, c in controls:
      md.append(f"`{name}`, command `python -m experiments.length_extrapolation.copy_control"
                f"{' --arg ' + c['arg'] if c.get('arg') else ''} --steps {c['steps']}"
                f"{' --every ' + str(c['every']) if c.get('every') else ''}`:\n")
      md.append(copy_control_md(c))
  return md


def _cost_md(R: Results, res: dict) -> list[str]:
  """Runs, wall times and commands."""
  meta, n = R.meta, R.n
  runs = res.get("runs", {})
  md = []
  md.append("## Runs, cost and commands\n")
  md.append("| variant | steps | parameters | tokens | train wall (s) | steps/s median / max | final train acc | "
            "config |")
  md.append("|---|---|---|---|---|---|---|---|")
  for v, r in runs.items():
    md.append(f"| {v} | {r.get('step')} | {r.get('num_params', 0):,} | {r.get('tokens', 0):,} | "
              f"{r.get('wall_time_s', 0):.0f} | {r.get('steps_per_sec_median', float('nan')):.1f} / "
              f"{r.get('steps_per_sec_max', float('nan')):.1f} | "
              f"{100 * (r.get('train') or {}).get('accuracy', float('nan')):.2f} | `{r.get('config_arg', '')}` |")
  md.append("")
  md.append(f"- Hardware: {meta['hardware']}; JAX {meta['jax']}; generated {meta['date_utc']}.")
  invs = res.get("invocations") or [{"command": meta["command"], "date_utc": meta["date_utc"],
                                     "total_wall_s": meta["total_wall_s"],
                                     "train_wall_this_invocation_s": meta.get("train_wall_this_invocation_s", 0),
                                     "eval_wall_s": meta["eval_wall_s"]}]
  first = invs[0]
  # The default study = the default variants and their seed replicates; the rest are opt-in extras.
  default = set(meta.get("default_variants") or
                [v for v in runs if not v.endswith("_copy") and not re.search(r"_s\d+$", v)])
  in_default = lambda v: re.sub(r"_s\d+$", "", v) in default
  ckpt_of = lambda m: m.get("ckpt", "")
  all_m = {**R.m, **R.reps}
  train_s = sum(r.get("wall_time_s", 0) for v, r in runs.items() if in_default(v))
  eval_s = sum(m.get("eval_time_s", 0) for m in all_m.values() if in_default(ckpt_of(m)))
  extra_runs = [v for v in runs if not in_default(v)]
  copy_train_s = sum(runs[v].get("wall_time_s", 0) for v in extra_runs)
  copy_eval_s = sum(m.get("eval_time_s", 0) for m in all_m.values() if not in_default(ckpt_of(m)))
  tot_tokens = sum(r.get("tokens", 0) for v, r in runs.items() if in_default(v))
  n_default = sum(1 for v in runs if in_default(v))
  if len(invs) == 1:
    md.append(f"- **Measured wall time of the study** (`{first['command']}`, one invocation, training and "
              f"evaluation): {first['total_wall_s']:.0f} s = {first['total_wall_s'] / 60:.1f} min (training "
              f"{first['train_wall_this_invocation_s']:.0f} s for {len(runs)} variants, {tot_tokens / 1e6:.1f}M "
              f"tokens; evaluation {first['eval_wall_s']:.0f} s); the steps/s column shows how contended the "
              "machine was (max = least contended).")
  else:
    md.append(f"- **Measured wall time of the default study** ({len(default)} variants, `rope`/`rope_logn` with "
              f"{int(meta.get('seeds', 1))} seeds), summed over its measured parts (trained and evaluated over "
              f"{len(invs)} invocations, listed below): training {train_s:.0f} s for {n_default} runs "
              f"({tot_tokens / 1e6:.1f}M tokens) + method evaluations {eval_s:.0f} s = "
              f"{(train_s + eval_s) / 60:.1f} min (the copy checks and copy probes are extra, inside their "
              "invocations' times). The steps/s column shows how contended the machine was (max = least "
              "contended).")
    if extra_runs:
      md.append(f"- Opt-in extras ({', '.join(f'`{v}`' for v in extra_runs)}; the plan's extra variants): "
                f"training {copy_train_s:.0f} s + evaluations {copy_eval_s:.0f} s = "
                f"{(copy_train_s + copy_eval_s) / 60:.1f} min more.")
  md.append("- All invocations of this workdir (later ones reuse the trained runs and cached evaluations; a "
            "copy probe's training is counted in its invocation's evaluation time):")
  for inv in invs:
    md.append(f"  - `{inv['command']}` at {inv['date_utc']}: {inv['total_wall_s']:.0f} s "
              f"({inv['total_wall_s'] / 60:.1f} min; training {inv['train_wall_this_invocation_s']:.0f} s, "
              f"evaluation {inv['eval_wall_s']:.0f} s)")
  md.append("- Each training run alone: " + "; ".join(f"`{c}`" for c in meta["train_commands"].values()))
  return md



def checklist_md(res: dict) -> tuple[list[str], bool]:
  """The claim table (verdicts of claims.py by the framework's tests) and whether the baseline copies (0a)."""
  S, vs = le_claims.samples(res), le_claims.verdicts(res)
  md = ["## Claim checklist (orderings in Su's published tables)\n",
        framework_report.RULES + " Samples and Holm families: experiments/length_extrapolation/claims.py.\n",
        "| # | claim | Su | ours | verdict |", "|---|---|---|---|---|"]
  for v, su, old in vs:
    was = (f" (was *{old}* under the former rule: 2 SE, no minimum n, no Holm; #14)"
           if old and old != v.verdict else "")
    md.append(f"| {v.claim.id} | {v.claim.text} | {su} | {le_claims.means_text(v, S)}; {v.line()} | "
              f"{framework_report.MARK[v.verdict]}{was} |")
  md.append(f"\n{claims_lib.summary([v for v, _, _ in vs])}.\n")
  failing = [v for v, _, _ in vs if v.verdict != claims_lib.HOLDS]
  if failing:
    md.append("### Claims that do not hold (or are inconclusive) at this scale\n")
    md.append("For each: the numbers are in the table above. " + HYPOTHESES_INTRO + "\n")
    md += [f"- **{v.claim.id}** ({v.verdict}): {_hypothesis(v.claim.id)}" for v in failing] + [""]
  return md, next((v.verdict for v, _, _ in vs if v.claim.id == "0a"), None) == claims_lib.HOLDS


def _hypothesis(cid: str) -> str:
  """Our hypothesis for a claim id, from hypotheses.md ("11a-kna" -> "11a", "5a'" -> "5a", "0ca" -> "0c")."""
  with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "hypotheses.md")) as f:
    found = re.findall(r"^- \*\*(\S+)\*\*: (.+?)(?=^- \*\*|\Z)", f.read(), re.S | re.M)
  hyp = {k: " ".join(v.split()) for k, v in found}
  key = cid.split("-")[0].rstrip("'")
  return hyp.get("0c" if key.startswith("0c") else key, hyp["default"])


HYPOTHESES_INTRO = "Hypotheses below are ours (hypotheses.md); each names the run that would test it."
