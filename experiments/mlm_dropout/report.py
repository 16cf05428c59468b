"""REPORT.md for the MLM/MAE-as-dropout study (issue #8) from the results run.py collects.

results = {
  "finetune": [record, ...]   one per fine-tuning run: {"init": "mlm"|"mae"|"none", "correction", "drop", "seed",
                              "eval": {"accuracy", "loss"}, "wall_time_s", "steps_per_sec", "command", ...},
  "pretrain": {"mlm"|"mae": record},  "timing": {"droptoken": {p: s/step}, "pretrain": {name: s/step}},
  "drift": {...} (run.drift_study),   "classes": [...], "eval_counts": [...]}

Significance rule (stated in the report): for two settings a, b with per-seed values, the difference
d = mean_a - mean_b counts only if |d| > spread = max(std_a, std_b) (sample std over seeds); a difference inside
the seed spread is "no difference". Accuracy claims need >= MIN_SEEDS seeds per setting, else "inconclusive".
"""
from __future__ import annotations

import collections
import json
import os
from typing import Any, Sequence

import numpy as np

from experiments import stats
from experiments.mlm_dropout import published

MIN_SEEDS = 3
HOLDS, PARTLY, FAILS, UNKNOWN = "✅ holds", "⚠️ partly", "❌ fails", "❔ inconclusive"
BASE = ("mlm", 0.0, 0.0)
INIT_NAMES = {"mlm": "MLM", "mae": "MAE-style", "none": "from scratch"}


Stat = stats.Stat


def setting_of(r) -> tuple:
  return (r["init"], float(r["correction"]), float(r["drop"]))


def collect(records, metric: str = "accuracy") -> dict[tuple, Stat]:
  out: dict[tuple, Stat] = collections.defaultdict(lambda: Stat([]))
  for r in records:
    v = r.get("eval", {}).get(metric) if metric != "wall_time_s" else r.get("wall_time_s")
    if v is not None and np.isfinite(v):
      out[setting_of(r)].values.append(float(v))
  return dict(out)


def compare(a: Stat, b: Stat) -> tuple[str, float, float]:
  """('better'|'worse'|'same'|'few seeds', d = mean_a - mean_b, spread)."""
  d, spread = a.mean - b.mean, max(a.std, b.std)
  if min(a.n, b.n) < MIN_SEEDS:
    return "few seeds", d, spread
  if abs(d) <= spread:
    return "same", d, spread
  return ("better" if d > 0 else "worse"), d, spread


def _name(setting) -> str:
  init, corr, drop = setting
  s = INIT_NAMES[init]
  if corr:
    s += f" + correction r={corr:g}"
  if drop:
    s += f", DropToken p={drop:g}"
  return s


# ------------------------------------------------------------------------------------------------ Claims.


def check_claims(records, timing) -> list[tuple[str, str, list[str]]]:
  stats = collect(records)
  base = stats.get(BASE, Stat([]))
  out = []

  corr = stats.get(("mlm", 0.15, 0.0), Stat([]))
  v, d, s = compare(corr, base)
  verdict = UNKNOWN if v == "few seeds" else (HOLDS if v == "same" else FAILS)
  out.append(("The embedding correction changes fine-tuning accuracy little (Su: no significant change)", verdict,
              [f"MLM + correction {corr.fmt(100)} vs MLM {base.fmt(100)}: d = {d * 100:+.2f} pts, spread {s * 100:.2f}"]))

  out.append(("Dropping tokens with kept positions is exactly attention-column masking (a test, not a claim)",
              HOLDS, ["tests/tasks/test_mlm.py::test_droptoken_gather_equals_attention_column_masking (NumPy float64, "
                      "rtol 1e-4) and tests/nn/test_transformer.py::test_dropping_tokens_equals_masking_them"]))

  lines, results = [], []
  for p in (0.1, 0.15):
    st = stats.get(("mlm", 0.0, p), Stat([]))
    v, d, s = compare(st, base)
    results.append(None if v == "few seeds" else v in ("same", "better"))
    lines.append(f"p={p:g}: {st.fmt(100)} vs p=0 {base.fmt(100)}: d = {d * 100:+.2f} pts, spread {s * 100:.2f} ({v})")
  verdict = UNKNOWN if None in results else (HOLDS if all(results) else PARTLY if any(results) else FAILS)
  out.append(("DropToken at 0.1-0.15 is neutral to slightly positive", verdict, lines))

  st = stats.get(("mlm", 0.0, 0.5), Stat([]))
  v, d, s = compare(st, base)
  verdict = UNKNOWN if v == "few seeds" else (HOLDS if v == "worse" else FAILS)
  out.append(("DropToken at 0.5 hurts", verdict,
              [f"p=0.5: {st.fmt(100)} vs p=0 {base.fmt(100)}: d = {d * 100:+.2f} pts, spread {s * 100:.2f} ({v})"]))

  tt = (timing or {}).get("droptoken") or {}
  if tt:
    ps = sorted(tt, key=float)
    ts = [tt[p] for p in ps]
    monotone = all(b < a for a, b in zip(ts, ts[1:]))
    verdict = HOLDS if monotone else (PARTLY if ts[-1] < ts[0] else FAILS)
    lines = [", ".join(f"p={float(p):g}: {t * 1000:.1f} ms" for p, t in zip(ps, ts))]
  else:
    verdict, lines = UNKNOWN, ["no timing measured"]
  out.append(("DropToken step time falls with the kept fraction", verdict, lines))

  tp = (timing or {}).get("pretrain") or {}
  if "mae@0.75" in tp and "mlm@0.75" in tp:
    faster = tp["mae@0.75"] < tp["mlm@0.75"]
    out.append(("MAE-style pre-training is cheaper per step than MLM at MAE's 75% ratio (MAE paper)",
                HOLDS if faster else FAILS,
                [f"75%: MAE-style {tp['mae@0.75'] * 1000:.1f} ms vs MLM {tp['mlm@0.75'] * 1000:.1f} ms; "
                 f"15%: {tp.get('mae', float('nan')) * 1000:.1f} vs {tp.get('mlm', float('nan')) * 1000:.1f} ms"]))

  mae, scratch = stats.get(("mae", 0.0, 0.0), Stat([])), stats.get(("none", 0.0, 0.0), Stat([]))
  v, d, s = compare(mae, base)
  verdict = UNKNOWN if v == "few seeds" else (HOLDS if v in ("same", "better") else FAILS)
  out.append(("MAE-style pre-training transfers at least as well as MLM (MAE paper; not a firm expectation at "
              "this scale)", verdict, [f"MAE-style {mae.fmt(100)} vs MLM {base.fmt(100)}: d = {d * 100:+.2f} pts, "
                                       f"spread {s * 100:.2f} ({v})"]))
  v, d, s = compare(base, scratch)
  verdict = UNKNOWN if v == "few seeds" else (HOLDS if v == "better" else FAILS)
  out.append(("Sanity: MLM pre-training transfers (beats training from scratch in test accuracy)", verdict,
              [f"MLM {base.fmt(100)} vs scratch {scratch.fmt(100)}: d = {d * 100:+.2f} pts, spread {s * 100:.2f}"]))
  losses = collect(records, "loss")
  lb, ls = losses.get(BASE, Stat([])), losses.get(("none", 0.0, 0.0), Stat([]))
  v, d, s = compare(ls, lb)  # "better" here = scratch's loss is higher, i.e. the MLM encoder's is lower
  verdict = UNKNOWN if v == "few seeds" else (HOLDS if v == "better" else FAILS)
  out.append(("Sanity: MLM pre-training transfers (lower test cross-entropy than training from scratch)", verdict,
              [f"MLM {lb.fmt(digits=3)} vs scratch {ls.fmt(digits=3)} nats: d = {-d:+.3f}, spread {s:.3f}"]))
  return out


def claim_drift(drift) -> tuple[str, str, list[str]] | None:
  if not drift:
    return None
  closer = (drift["kl_mc_vs_corrected"] < drift["kl_mc_vs_plain"],
            drift["cos_dist_mc_vs_corrected"] < drift["cos_dist_mc_vs_plain"])
  verdict = HOLDS if all(closer) else PARTLY if any(closer) else FAILS
  return ("Su's reading: on clean input the corrected model is closer to the masked-input average (model "
          "average) than the uncorrected one", verdict,
          [f"KL(Pbar || P): plain {drift['kl_mc_vs_plain']:.4f}, corrected {drift['kl_mc_vs_corrected']:.4f}; "
           f"1 - cos(hbar, h): plain {drift['cos_dist_mc_vs_plain']:.4f}, corrected "
           f"{drift['cos_dist_mc_vs_corrected']:.4f}"])


# ------------------------------------------------------------------------------------------------ Tables.


def table_finetune(records) -> list[str]:
  stats = collect(records)
  base = stats.get(BASE, Stat([]))
  order = [("mlm", 0.0, 0.0), ("mlm", 0.15, 0.0), ("mae", 0.0, 0.0), ("none", 0.0, 0.0)]
  losses = collect(records, "loss")
  lines = ["| encoder init | seeds | test accuracy % | vs MLM (pts) | verdict | test cross-entropy (nats) |",
           "|---|---|---|---|---|---|"]
  for s in order:
    st = stats.get(s, Stat([]))
    v, d, sp = compare(st, base)
    lines.append(f"| {_name(s)} | {st.n} | {st.fmt(100)} | {'—' if s == BASE else f'{d * 100:+.2f}'} | "
                 f"{'baseline' if s == BASE else v} | {losses.get(s, Stat([])).fmt(digits=3)} |")
  return lines


def table_droptoken(records, timing) -> list[str]:
  stats = collect(records)
  base = stats.get(BASE, Stat([]))
  tt = (timing or {}).get("droptoken") or {}
  t0 = tt.get("0.0")
  sps = collections.defaultdict(list)
  for r in records:
    if r["init"] == "mlm" and not r["correction"] and r.get("steps_per_sec"):
      sps[float(r["drop"])].append(r["steps_per_sec"])
  lines = ["| DropToken p | kept tokens | seeds | test accuracy % | vs p=0 (pts) | verdict | step time (ms, "
           "benchmark) | relative | steps/s in the runs |", "|---|---|---|---|---|---|---|---|---|"]
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  for p in (0.0, 0.1, 0.15, 0.25, 0.5):
    st = stats.get(("mlm", 0.0, p), Stat([]))
    v, d, sp = compare(st, base)
    t = tt.get(str(p))
    run_sps = f"{np.mean(sps[p]):.2f}" if sps[p] else "—"
    lines.append(f"| {p:g} | {mlm.num_kept(64, p)} / 64 | {st.n} | {st.fmt(100)} | "
                 f"{'—' if not p else f'{d * 100:+.2f}'} | {'baseline' if not p else v} | "
                 f"{'—' if t is None else f'{t * 1000:.1f}'} | {'—' if t is None or not t0 else f'{t / t0:.2f}'} | "
                 f"{run_sps} |")
  return lines


def table_published_droptoken(records) -> list[str]:
  stats = collect(records)
  base = stats.get(BASE, Stat([]))
  tasks = published.SU_DROPTOKEN_TASKS
  lines = ["| p | " + " | ".join(tasks) + " | Su: mean Δ vs p=0 | ours: Δ vs p=0 (pts) |",
           "|---|" + "---|" * (len(tasks) + 2)]
  ref = np.array(published.SU_DROPTOKEN[0.0])
  for p, row in published.SU_DROPTOKEN.items():
    st = stats.get(("mlm", 0.0, p), Stat([]))
    ours = "—" if not st.n or not base.n else f"{(st.mean - base.mean) * 100:+.2f}"
    lines.append(f"| {p:g} | " + " | ".join(f"{x:.2f}" for x in row) +
                 f" | {np.mean(np.array(row) - ref):+.2f} | {ours} |")
  return lines


def table_pretrain(pre, timing, records) -> list[str]:
  stats = collect(records)
  tp = (timing or {}).get("pretrain") or {}
  lines = ["| pre-training | steps | wall time (s) | steps/s in the run | step time 15% (ms, benchmark) | "
           "step time 50% | step time 75% | eval loss (masked bytes) | eval acc (masked bytes) | fine-tune acc % |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for mode in ("mlm", "mae"):
    r = pre.get(mode)
    ft = stats.get((mode, 0.0, 0.0), Stat([]))
    ms = lambda k: "—" if k not in tp else f"{tp[k] * 1000:.1f}"
    if r is None:
      lines.append(f"| {INIT_NAMES[mode]} | — | — | — | {ms(mode)} | {ms(mode + '@0.5')} | {ms(mode + '@0.75')} "
                   "| — | — "
                   f"| {ft.fmt(100)} |")
      continue
    lines.append(f"| {INIT_NAMES[mode]} | {r['step']} | {r['wall_time_s']:.0f} | {r.get('steps_per_sec') or 0:.2f} | "
                 f"{ms(mode)} | {ms(mode + '@0.5')} | {ms(mode + '@0.75')} | {r['eval']['loss']:.3f} | "
                 f"{r['eval']['accuracy'] * 100:.1f} | {ft.fmt(100)} |")
  return lines


def table_drift(drift) -> list[str]:
  if not drift:
    return ["(not measured)"]
  return ["| on clean validation text (byte positions) | without correction | with correction (r = "
          f"{drift.get('correction_r', 0.15)}) |", "|---|---|---|",
          f"| 1 - cos(h(x; E_corr), h(x; E)) | — | {drift['cos_dist_corrected_vs_plain']:.4f} |",
          f"| 1 - cos(hbar, h(x; ·)), hbar = mean of h over {drift['mc_draws']} BERT maskings | "
          f"{drift['cos_dist_mc_vs_plain']:.4f} | {drift['cos_dist_mc_vs_corrected']:.4f} |",
          f"| KL(Pbar ‖ P(x; ·)), Pbar = mean MLM distribution over the maskings | {drift['kl_mc_vs_plain']:.4f} | "
          f"{drift['kl_mc_vs_corrected']:.4f} |",
          f"| MLM accuracy on unmasked bytes (predict the visible byte) | {drift['acc_unmasked_plain'] * 100:.2f}% | "
          f"{drift['acc_unmasked_corrected'] * 100:.2f}% |"]


def table_times(records, pre) -> list[str]:
  lines = ["| run | wall time (s) | steps/s | command |", "|---|---|---|---|"]
  for mode, r in pre.items():
    lines.append(f"| pretrain {mode} | {r['wall_time_s']:.0f} | {r.get('steps_per_sec') or 0:.2f} | `{r['command']}` |")
  for r in records:
    lines.append(f"| {r['name']} | {r['wall_time_s']:.0f} | {r.get('steps_per_sec') or 0:.2f} | `{r['command']}` |")
  return lines


# ------------------------------------------------------------------------------------------------- Plots.


def make_plots(records, timing, out_dir: str) -> list[str]:
  # A bare Figure (no pyplot state, no global backend switch): safe inside notebooks and threads.
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  stats = collect(records)
  paths = []
  ps = [p for p in (0.0, 0.1, 0.15, 0.25, 0.5) if ("mlm", 0.0, p) in stats]
  if ps:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.errorbar(ps, [stats[("mlm", 0.0, p)].mean * 100 for p in ps],
                yerr=[stats[("mlm", 0.0, p)].std * 100 for p in ps], marker="o", capsize=4, label="test accuracy")
    ax.set_xlabel("DropToken ratio p")
    ax.set_ylabel("test accuracy % (mean ± std over seeds)")
    tt = (timing or {}).get("droptoken") or {}
    if tt:
      ax2 = ax.twinx()
      tps = sorted(tt, key=float)
      ax2.plot([float(p) for p in tps], [tt[p] * 1000 for p in tps], "s--", color="tab:red", label="step time")
      ax2.set_ylabel("forward+backward step time (ms)", color="tab:red")
    ax.set_title("DropToken during fine-tuning (MLM encoder)")
    fig.tight_layout()
    paths.append("droptoken.png")
    fig.savefig(os.path.join(out_dir, paths[-1]), dpi=120)
  order = [s for s in (("mlm", 0.0, 0.0), ("mlm", 0.15, 0.0), ("mae", 0.0, 0.0), ("none", 0.0, 0.0)) if s in stats]
  if order:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for i, s in enumerate(order):
      st = stats[s]
      ax.bar(i, st.mean * 100, yerr=st.std * 100, capsize=4)
      ax.scatter([i] * st.n, np.array(st.values) * 100, color="k", s=10, zorder=3)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([_name(s).replace(" + correction r=0.15", "\n+ correction") for s in order], fontsize=8)
    ax.set_ylabel("test accuracy %")
    ax.set_title("Fine-tuning by encoder initialisation (dots: seeds)")
    fig.tight_layout()
    paths.append("init.png")
    fig.savefig(os.path.join(out_dir, paths[-1]), dpi=120)
  tp = (timing or {}).get("pretrain") or {}
  if tp:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    rates = [0.15, 0.5, 0.75]
    for j, mode in enumerate(("mlm", "mae")):
      keys = [mode if r == 0.15 else f"{mode}@{r:g}" for r in rates]
      ax.bar(np.arange(3) + 0.38 * j, [tp.get(k, np.nan) * 1000 for k in keys], width=0.38,
             label=INIT_NAMES[mode])
    ax.set_xticks(np.arange(3) + 0.19)
    ax.set_xticklabels([f"{int(r * 100)}% masked" for r in rates])
    ax.set_ylabel("pre-training forward+backward step (ms)")
    ax.legend()
    ax.set_title("Pre-training step time: MLM vs MAE-style")
    fig.tight_layout()
    paths.append("pretrain_time.png")
    fig.savefig(os.path.join(out_dir, paths[-1]), dpi=120)
  return paths


def ft_steps(records) -> int:
  """The fine-tuning length of the runs (the most common final step; the config's 150 if none)."""
  steps = [int(r["step"]) for r in records if r.get("step")]
  return max(set(steps), key=steps.count) if steps else 150


def _train_pool(setup) -> str:
  k = int(setup.get("train_per_class") or 0)
  if not k:
    return "class-balanced sampling over all their windows"
  return (f"a fixed labelled pool of {k} windows per class, drawn with replacement: the low-resource regime in "
          "which pre-training should pay off")


def _pool_text(setup) -> str:
  if setup.get("pool", "first") == "mean":
    return ("a linear head on the mean of the final token states (MLM never trains the [CLS] state: in the "
            "first study, first_study_cls_head/REPORT.md, the MLM encoder with a [CLS] head fine-tuned to 4.3 "
            "points below training from scratch)")
  return "[CLS] linear head"


def caveats(records, setup=None) -> list[str]:
  """Data-driven warnings about what the numbers can and cannot show."""
  setup = setup or {}
  stats = collect(records)
  base, scratch = stats.get(BASE, Stat([])), stats.get(("none", 0.0, 0.0), Stat([]))
  out = []
  if base.n and scratch.n and compare(base, scratch)[0] != "better":
    out.append(f"Pre-training did not transfer at this budget: the MLM encoder reaches {base.fmt(100)}% after the "
               f"{ft_steps(records)} fine-tuning steps, from scratch {scratch.fmt(100)}%. The correction and DropToken "
               "comparisons "
               "below are therefore made in a regime where the pre-trained weights are no better than random ones "
               "for this task, which weakens them as tests of Su's claims (his were on converged BERT fine-tuning). "
               f"Likely causes: a short fine-tuning ({ft_steps(records)} steps), a tiny and briefly "
               "pre-trained encoder" + (", and a [CLS] state that gets no pre-training signal (no NSP; [CLS] is "
               "never masked), so the head starts from an untrained summary token." if setup.get("pool", "first")
               == "first" else "."))
  accs = [v for st in stats.values() for v in st.values]
  if accs and max(accs) < 0.5:
    out.append(f"All fine-tuning accuracies are below 50% (best run {max(accs) * 100:.1f}%, chance 11.1%): "
               "differences of a point or two are small against the seed spread.")
  return out


# ------------------------------------------------------------------------------------------------ Render.


def render(results: dict[str, Any], *, plots: Sequence[str] = (), meta: dict[str, Any] | None = None) -> str:
  meta = meta or {}
  records, pre = results.get("finetune") or [], results.get("pretrain") or {}
  timing, drift = results.get("timing"), results.get("drift")
  setup = results.get("setup") or {}
  claims = check_claims(records, timing)
  cd = claim_drift(drift)
  if cd:
    claims.insert(1, cd)
  classes, counts = results.get("classes") or [], results.get("eval_counts") or []
  n_eval = sum(counts)
  out = ["# MLM and MAE seen as dropout (issue #8)", "",
         "Su Jianlin, *Dropout视角下的MLM和MAE：一些新的启发* (https://kexue.fm/archives/8770), reproduced at "
         "toy scale "
         "on a byte-level Python-stdlib corpus. Generated by `experiments/mlm_dropout/report.py`; do not edit.", "",
         "## Setup", "",
         "- Pre-training (`configs/mlm_dropout/pretrain.py`): [CLS] + 63 bytes of the `train` split of "
         "`python_stdlib_text`; encoder 3 layers, width 128, 4 heads, FFN 512, RoPE, pre-norm, untied MLM head "
         f"(vocabulary 259: bytes, [CLS], [PAD], [MASK]); AdamW 1e-3, batch 64, {setup.get('pretrain_steps', 600)} "
         "steps, no dropout. **MLM**: "
         "BERT's 15% with 80/10/10, loss on the selected bytes. **MAE-style**: 15% of the bytes dropped from the "
         "encoder (gathered out, original RoPE positions kept), a 1-layer decoder with a learned mask vector predicts "
         "them. Sizes are cut from the plan (4 layers, L = 128, 1500-3000 steps) to fit a shared 2-core CPU.",
         f"- Fine-tuning (`configs/mlm_dropout/finetune.py`): which of {len(classes)} top-level stdlib packages "
         f"({', '.join(classes)}) a window of [CLS] + 63 bytes comes from; train windows from the `train` files "
         f"({_train_pool(setup)}), test windows from the `validation+test` files (files never cross splits): "
         f"{n_eval} test windows, {', '.join(map(str, counts))} per class, so the majority-class baseline is "
         f"{(max(counts) / n_eval * 100 if n_eval else float('nan')):.1f}%. AdamW 3e-4, batch 32, "
         f"{ft_steps(records)} steps, "
         f"dropout 0.1, {_pool_text(setup)}; encoder from the pre-training checkpoint via `config.init_from`.",
         "- Embedding correction: `kexue_jax.tasks.mlm.embedding_correction`, every row "
         "E_i ← 0.85 E_i + 0.15 (0.8 E_[MASK] + 0.1 E_i + 0.1 mean_bytes E), applied when the checkpoint is loaded.",
         "- DropToken: [CLS] kept; exactly round((1 − p) · 63) of the 63 bytes kept per example (a uniformly random "
         "subset), gathered to a shorter sequence with their original positions; inference uses all tokens.",
         "- Significance rule: a difference d of seed means counts only if |d| > max(std_a, std_b) (sample std over "
         f"seeds); a difference inside the seed spread is \"no difference\". Claims need >= {MIN_SEEDS} seeds.", "",
         "## Claim checklist", "", "| claim | verdict | evidence |", "|---|---|---|"]
  for name, verdict, lines in claims:
    out.append(f"| {name} | {verdict} | {'<br>'.join(lines)} |")
  notes = caveats(records, setup)
  if notes:
    out += ["", "## Caveats", ""] + [f"- {n}" for n in notes]
  out += ["", "## Fine-tuning accuracy by encoder initialisation (DropToken off)", ""] + table_finetune(records)
  out += ["", "## DropToken: accuracy and step time vs ratio (MLM encoder)", "",
          "Step time: median over 5 interleaved rounds of a jitted forward+backward on one batch of 32 (same "
          "machine load for every ratio); `steps/s in the runs` is the training loop's own measurement (noisier: "
          "the CPU is shared).", ""] + table_droptoken(records, timing)
  out += ["", "## MLM vs MAE-style pre-training: cost and transfer", ""] + table_pretrain(pre, timing, records)
  out += ["", "Eval loss/accuracy are over the predicted bytes of the `validation` split (MLM: the 15% selected "
          "with 80/10/10 corruption; MAE-style: the dropped 15%) with fixed masks.", "",
          "## Representation drift on unmasked inputs (MLM encoder, with vs without the correction)", "",
          "h = final hidden states, P = MLM predictive distribution, x = clean (unmasked) validation windows; "
          "hbar, Pbar = averages over BERT maskings of x (the model average the pre-training fits; Su: "
          "dropout's consistent inference model is the weight average, i.e. the corrected embedding).", ""]
  out += table_drift(drift)
  out += ["", "## Su's reported outcomes beside ours", "",
          f"- Embedding correction (r = {published.SU_CORRECTION_R}): Su — {published.SU_CORRECTION}. Ours: see "
          "the first claim.",
          f"- DropToken (BERT-base, CLUE dev accuracy %): Su — {published.SU_DROPTOKEN_VERDICT}.", ""]
  out += table_published_droptoken(records)
  out += ["", "- MAE (He et al., ViT-L/16): mask tokens in the encoder vs not — fine-tune / linear / FLOPs: " +
          "; ".join(f"{k}: {v[0]} / {v[1]} / {v[2]}" for k, v in published.MAE_MASK_TOKEN.items()) +
          ". Pre-training wall-clock: " + "; ".join(f"{a} {b} ({c})" for a, b, c in published.MAE_WALLCLOCK) + "."]
  if plots:
    out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
  out += ["", "## Run times and commands", "", meta.get("summary", ""), "", f"Machine: {meta.get('machine', '?')}",
          "", "Study command:", ""] + [f"    {c}" for c in meta.get("commands", [])] + [""]
  out += table_times(records, pre)
  return "\n".join(out) + "\n"


def write_report(results: dict[str, Any], out_dir: str, *, meta: dict[str, Any] | None = None) -> str:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(results, f, indent=1, sort_keys=True, default=float)
  plots = make_plots(results.get("finetune") or [], results.get("timing"), out_dir)
  path = os.path.join(out_dir, "REPORT.md")
  with open(path, "w") as f:
    f.write(render(results, plots=plots, meta=meta))
  return path
