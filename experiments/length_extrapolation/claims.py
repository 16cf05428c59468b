r"""The length-extrapolation checklist as framework claims (experiments/framework/claims.py): CHECKLIST, a table
of claim templates in report order, filled in with each run's quantities.

Samples (accuracies in percent, losses in nats/byte), built from the results dict:
  nonrep/L/x, rep/L/x   {window: accuracy} of method x at test length L (every method sees the same windows,
                        so two methods at one length are compared paired over windows; two lengths, Welch)
  grow/C/x              {document: loss on its last N bytes with C bytes of context} (paired over documents)
  seeds/L/x, seeds-rep/L/x   {seed: mean non-repeated / repeated accuracy} of x at L on the checkpoint of each
                        training seed: claims that compare two training runs (and those whose window-level
                        effect is about the seed spread) pair these over seeds, so seed-to-seed noise counts;
                        they need SEED_MIN_N = 5 seeds (issue #18), else they say how many
  mlm/L/x, seeds/L/mlm/x   Su's MLM log-n table (8823): {window: masked-byte accuracy} of Attention-O / -E
The accuracy of a window follows the evaluation protocol (``samples(res, protocol)``; default: the run's
``study.eval_protocol``, kexue_jax/evals/length.py): "all" targets, the "tail" beyond N (at L = N: all), or "last"
(the non-repeated samples become the growing-context documents' last N bytes with L bytes of context).
Claims sharing a number (3a-old, 3a-mixed, ...) form a Holm family. Su's numbers: kexue.fm/archives/8823-9859.
"""
from __future__ import annotations

import string

import numpy as np
from scipy import stats

from experiments.framework import claims as C
from experiments.length_extrapolation import methods as methods_lib
from experiments.length_extrapolation import published

# Su's smallest ReRoPE gain over the baseline at 8x (w = 64..384, T5b, kexue.fm/archives/9708): 45.19 - 23.16.
SU_SPREAD_GAIN = min(published.SU[f"ReRoPE-w{w}"][2] for w in (64, 128, 256, 384)) - published.SU["Baseline"][2]
ROBUST_SPREAD = 0.25             # claim 6a: windows within a quarter of that gain of each other
SEED_MIN_N = 5                   # training seeds a seed-level claim needs (issue #18)
BY_SEEDS = dict(unit="seeds", min_n=SEED_MIN_N)   # a claim paired over training seeds (seeds/L/x samples)
DOCS = dict(unit="documents", digits=3)            # a claim paired over growing-context documents (grow/C/x)
PROTOCOLS = ("all", "tail", "last")


def _acc(m: dict, which: str, length: str, protocol: str):
  """Per-window accuracies (fractions) of one method at one length under the protocol; None if not measured."""
  r = m.get("by_length", {}).get(length, {}).get(which)
  if protocol == "last" and which == "nonrep":   # the growing documents (older results: core methods only)
    r = m["by_length"][length].get("growing") or (m.get("growing") or {}).get(length)
  if not r:
    return None
  return r.get("tail_acc", r["acc"]) if protocol == "tail" else r["acc"]


def samples(res: dict, protocol: str | None = None) -> dict[str, dict]:
  """The samples the claims read, by key (module docstring), under an evaluation protocol (default: the run's)."""
  n, ext = int(res["meta"]["train_length"]), int(res["meta"].get("extension", 8))
  protocol = protocol or res["meta"].get("eval_protocol", "all")
  if protocol not in PROTOCOLS:
    raise ValueError(f"evaluation protocol {protocol!r}; use one of {PROTOCOLS}.")
  out: dict[str, dict] = {}
  for name, m in res["methods"].items():
    for length in m.get("by_length", {}):
      for which in ("nonrep", "rep"):
        acc = _acc(m, which, length, protocol)
        if acc is not None:
          out[f"{which}/{length}/{name}"] = dict(enumerate(100 * np.asarray(acc, float)))
    by_ctx = {L: r["growing"] for L, r in m.get("by_length", {}).items() if "growing" in r}
    for ctx, g in {**by_ctx, **(m.get("growing") or {})}.items():
      out[f"grow/{ctx}/{name}"] = dict(enumerate(np.asarray(g["loss"], float)))
  for name in [k for k in res["methods"] if "@s" not in k]:
    reps = {0: name, **{int(k.rsplit("@s", 1)[1]): k for k in res["methods"]
                           if "@s" in k and k.rsplit("@s", 1)[0] == name}}
    for which, kind in (("nonrep", "seeds"), ("rep", "seeds-rep")):
      for length in res["methods"][name].get("by_length", {}):
        per_seed = {s: _mean(out[f"{which}/{length}/{k}"]) for s, k in reps.items() if f"{which}/{length}/{k}" in out}
        if per_seed:
          out[f"{kind}/{length}/{name}"] = per_seed
  for r in (res.get("mlm") or {}).values():
    for length, x in r["by_length"].items():
      acc = 100 * np.asarray(x["acc"], float)
      if not r["seed"]:
        out[f"mlm/{length}/{r['variant']}"] = dict(enumerate(acc))
      out.setdefault(f"seeds/{length}/mlm/{r['variant']}", {})[r["seed"]] = float(np.nanmean(acc))
  for k in ("nonrep", "rep"):
    for x in ("rope", "copy/rope", "qna", "kna_nope"):
      if f"{k}/{n}/{x}" in out:
        out[f"0.75x {k}/{n}/{x}"] = {i: 0.75 * v for i, v in out[f"{k}/{n}/{x}"].items()}
  for key, (a, b) in gain_pairs(n).items():
    A, B = out.get(f"seeds/{n * ext}/{a}", {}), out.get(f"seeds/{n * ext}/{b}", {})
    if set(A) & set(B):
      out[f"gain/{key}"] = {s: A[s] - B[s] for s in A if s in B}
  if "gain/pre/rope" in out:
    out["logn gain/rope"] = out["gain/pre/rope"]
  for p in probes(res):
    out[f"probe gap/{p['arg']}"] = {0: 100 * (p["curve"][-1]["rep_acc"] - p["curve"][-1]["nonrep_acc"])}
  return out


def gain_pairs(n: int) -> dict[str, tuple[str, str]]:
  """The log-n gains of issue #18 as (with log n, without) method pairs: "†/<arm>x" = x + log n† - x on one
  checkpoint, "pre/<arm>x" = x on the log-n pre-trained twin - x (paired by seed), for x in RoPE / NTK-mixed /
  ReRoPE w = N/2 on our baseline (arm ""), the pre-norm 2-head model ("pre2h/") and the baseline at 2x steps
  ("2xsteps/", no twin): study.GAP_VARIANTS."""
  w2, out = max(1, n // 2), {}
  for kind in ("†", "pre"):
    for arm, twin in (("", "logn/"), ("pre2h/", "pre2h-logn/"), ("2xsteps/", None)):
      for x in ("rope", "ntk_mixed", f"rerope_w{w2}"):
        if kind == "†":
          out[f"†/{arm}{x}"] = (arm + ("logn†" if x == "rope" else f"{x}+logn†"), arm + x)
        elif twin:
          out[f"pre/{arm}{x}"] = (twin + x, arm + x)
  return out


def logn_gains(res: dict) -> list[dict]:
  """Issue #18's finding (are our log-n gains small because of the protocol?): the gain of log n-dagger and of
  pre-trained log n over none at 8x under each evaluation protocol, paired over training seeds (gain_pairs).
  [{"pair", "protocol", "effect", "se", "n", "ci"}] in points (ci: the 95% t interval, n - 1 degrees of freedom);
  pairs without two seeds are left out."""
  n, ext = int(res["meta"]["train_length"]), int(res["meta"].get("extension", 8))
  rows = []
  for p in PROTOCOLS:
    S = samples(res, p)
    for a, b in gain_pairs(n).values():
      est = C.estimate(C.Claim("gain", "", "paired", f"seeds/{n * ext}/{a}", f"seeds/{n * ext}/{b}"), S)
      if est is not None and est.n > 1:
        half = float(stats.t.ppf(0.975, est.df)) * est.se
        rows.append(dict(pair=f"{a} - {b}", protocol=p, effect=est.effect, se=est.se, n=est.n,
                         ci=(est.effect - half, est.effect + half)))
  return rows


def probes(res: dict) -> list[dict]:
  """The copy probes with a curve (older results.json files hold a single "copy_probe")."""
  ps = res["copy_probes"] if "copy_probes" in res else [res["copy_probe"]] if res.get("copy_probe") else []
  return [p for p in ps or [] if p.get("curve")]


def _mean(s: dict | None) -> float | None:
  return float(np.mean(list(s.values()))) if s else None


def _c(cid: str, su: str, text: str, test: str, a: str, b: str | None = None, **kw) -> tuple:
  """One row of CHECKLIST: (id, Su's numbers, claim, test, sample a, sample b, Claim options)."""
  return cid, su, text, test, a, b, kw


def _probe_claims(res: dict, q: dict) -> list[tuple]:
  """0c: each copy probe copies within L_train at its last checkpoint (one run each: a one-sample check)."""
  ps = probes(res)
  return [_c("0c" + "abcdefgh"[k] * (len(ps) > 1), "-", f"The copy probe rope.py:{p['arg']} copies within L_train "
             "(repeated > non-repeated by > 10 points at L = {n}, last checkpoint)", "one_sample",
             f"probe gap/{p['arg']}", margin=10.0, reference=0.0, unit="runs", family="0c")
          for k, p in enumerate(ps)]


def _mlm_claims(res: dict, q: dict) -> list[tuple]:
  """Su's first log-n table (8823, T1): MLM trained at n = N_mlm, Attention-E (log_512 n) vs Attention-O."""
  runs = [r for r in (res.get("mlm") or {}).values() if not r["seed"]]
  if not runs:
    return []
  n, su = int(runs[0]["train_length"]), runs[0].get("published") or {}
  col, out = {L: k for k, L in enumerate(su.get("lengths", []))}, []
  for L in sorted(int(x) for x in runs[0]["by_length"]):
    k = col.get(L * su["lengths"][0] // n) if col else None
    nums = f"{su['attention_e'][k]} vs {su['attention_o'][k]} (n={su['lengths'][k]})" if k is not None else "-"
    e, o = f"seeds/{L}/mlm/attention_e", f"seeds/{L}/mlm/attention_o"
    if L == n:
      out.append(_c("T1-N", nums, f"MLM at its training length {n}: Attention-E (log n) is within 1 point of (or "
                    "above) Attention-O (non-inferiority, paired over training seeds)", "paired", e, o, margin=-1.0,
                    **BY_SEEDS))
    else:
      out.append(_c(f"T1-{L // n}x", nums, f"MLM at {L} ({L // n}x its training length): Attention-E (log n) is "
                    "above Attention-O (paired over training seeds)", "paired", e, o, family="T1", **BY_SEEDS))
  return out


def _gap_claims(res: dict, q: dict) -> list[tuple]:
  """Why our log-n gains are 3-8x smaller than an independent measurement's (issue #18: a pre-norm 4-layer 2-head
  d = 128 byte LM trained at 128; its gains beside each claim): the per-seed gain (gain_pairs) on the pre-norm
  2-head model (G1 log n†, G3 pre-trained) and on the baseline at 2x steps (G2) against ours, Welch over seeds."""
  n, out = q["n"], []
  arms = (("G1", "†", "pre2h/", "log n† gain is larger on the pre-norm 2-head model (arch=prenorm4x2)"),
          ("G2", "†", "2xsteps/", "log n† gain is larger on the baseline trained 2x the steps"),
          ("G3", "pre", "pre2h/", "pre-trained log-n gain is larger on the pre-norm 2-head model"))
  independent = (("rope", "+3.0-4.5"), ("ntk_mixed", "+2.8-3.0"), (f"rerope_w{q['w2']}", "+1.8-2.2"))
  for cid, kind, arm, text in arms:
    for x, ind in independent:
      rows = [published.su_row(m, n) for m in gain_pairs(n)[f"{kind}/{x}"]]
      su = f"Su {published.SU[rows[0]][2] - published.SU[rows[1]][2]:+.2f}; " if all(rows) else ""
      out.append(_c(f"{cid}-{x}", f"{su}independent {ind}", f"The {text} than on ours: {x} at 8x (Welch over "
                    "training seeds)", "welch", f"gain/{kind}/{arm}{x}", f"gain/{kind}/{x}", family=cid, **BY_SEEDS))
  return out


def _seeds(cid: str, su: str, text: str, a: str, b: str, at: str = "{L8}", **kw) -> tuple:
  """A row comparing two checkpoints, paired over training seeds (issue #18): seeds/<at>/a vs seeds/<at>/b."""
  return _c(cid, su, text, "paired", f"seeds/{at}/{a}", f"seeds/{at}/{b}", **BY_SEEDS, **kw)


def _windows(cid: str, su: str, text: str, a: str, b: str, at: str = "{L8}", which: str = "nonrep", **kw) -> tuple:
  """A row comparing two methods on the same test windows, paired over them: <which>/<at>/a vs <which>/<at>/b."""
  return _c(cid, su, text, "paired", f"{which}/{at}/{a}", f"{which}/{at}/{b}", **kw)


# Su's claims (kexue.fm/archives/8823-9859) in report order. Texts and sample keys are templates over the run's
# quantities (_quantities: n = L_train, L8 = 8n, w4 / w2 = n/4, n/2, ...); a row that names a quantity this run
# lacks (e.g. {bigram} without the n-gram baselines) or whose `needs` method was not evaluated is left out.
# `reference` names a quantity. Options are framework Claim fields; unit "windows" unless given; family: the id's
# number ("3a-old" -> "3"). A function stands for rows that depend on the runs (probes, MLM lengths, gap arms).
CHECKLIST = (
    _c("0a", "(implicit: 80%+ repeated vs 49% at 8x)", "The baseline copies within L_train: repeated > "
       "non-repeated by > 10 points at L = {n}", "paired", "rep/{n}/rope", "nonrep/{n}/rope", margin=10.0),
    _c("0b", "-", "The baseline at L_train is > 10 points above a bigram predictor ({bigram:.2f}%)", "one_sample",
       "nonrep/{n}/rope", margin=10.0, reference="bigram"),
    _probe_claims,
    _c("1a", "49.41 -> 23.16 (0.47x)", "Baseline RoPE collapses at 8x: accuracy at {L8} < 0.75x its accuracy at "
       "{n}", "welch", "nonrep/{L8}/rope", "0.75x nonrep/{n}/rope", direction="<"),
    _c("1b", "23.16 -> 24.02", "Log-n pre-training alone barely helps at 8x: its gain < 1/4 of the baseline's drop "
       "({drop:.2f} points)", "one_sample", "logn gain/rope", direction="<", reference="drop4", **BY_SEEDS),
    _seeds("2", "13.54 < 23.16", "PI without fine-tuning is worse than the baseline at 8x (paired over training "
           "seeds)", "rope", "pi"),
    *(_windows(f"3a-{v}", "39.27 / 40.12 vs 23.16", f"NTK-RoPE ({v}) beats the baseline at 8x without "
               "fine-tuning", f"ntk_{v}", "rope") for v in ("old", "mixed")),
    *(_windows(f"3b-{a}", "40.12 >= 39.61 >= 39.27", f"NTK {a} is not worse than NTK {b} at 8x (non-inferiority, 1 "
               "point)", f"ntk_{a}", f"ntk_{b}", margin=-1.0) for a, b in (("mixed", "fixed"), ("fixed", "old"))),
    *(row for cid, x, lab, su in (("4a", "ntk_mixed", "NTK-mixed", "45.41 > 42.38 > 40.12"),
                                  ("4b", "rerope_w{w2}", "ReRoPE w={w2}", "49.07 > 48.85 > 48.48")) for row in (
        _seeds(f"{cid}-pre", su, f"Log n helps {lab}: pre-trained log n > none at 8x", f"logn/{x}", x),
        _seeds(f"{cid}-retro", su, f"{lab}: pre-trained log n > inference-only log n† at 8x", f"logn/{x}",
               f"{x}+logn†", needs=f"{x}+logn†"),
        _seeds(f"{cid}-none", su, f"{lab}: log n† (retrofit) > none at 8x", f"{x}+logn†", x,
               needs=f"{x}+logn†"))),
    *(_c(cid, "49.07 vs 49.40 (log n, w=256)", f"{x} at 8x stays within 1 point of (or above) its own L_train "
         "accuracy (non-inferiority, paired over training seeds)", "paired", f"seeds/{{L8}}/{x}", f"seeds/{{n}}/{x}",
         margin=-1.0, **BY_SEEDS) for cid, x in (("5a", "logn/rerope_w{w4}"), ("5a'", "rerope_w{w4}"))),
    *(_windows(cid, "48.48 vs 40.12; 49.07 vs 45.41", f"{a} is ahead of {b} at 8x", a, b)
      for cid, a, b in (("5b", "rerope_w{w4}", "ntk_mixed"), ("5b'", "logn/rerope_w{w4}", "logn/ntk_mixed"))),
    _windows("5c", "85.12 vs 68.91 (log n)", "ReRoPE is ahead of NTK on the repeated set at 8x (meaningful only if "
             "the baseline copies, 0a)", "logn/rerope_w{w4}", "logn/ntk_mixed", which="rep"),
    _windows("6a", "45.19 / 47.82 / 48.48 / 48.15 (w=64..384)", "ReRoPE is robust for w in N/8..3N/4 at 8x: the "
             "best (w={hi}) and worst (w={lo}) windows are equivalent within {robust:g} x Su's smallest gain over the "
             "baseline ({spread:.1f} points; #14: formerly a ratio of means without a test)", "rerope_w{hi}",
             "rerope_w{lo}", direction="~", margin=ROBUST_SPREAD * SU_SPREAD_GAIN),
    _windows("6b", "8.25 vs 23.16", "ReRoPE with w = L_train collapses below the baseline at 8x", "rope",
             "rerope_w{n}"),
    _windows("7a", "49.10 vs 48.87 (w=128)", "Leaky ReRoPE (k=16) ≈ ReRoPE at 8x (equivalent within 1 point)",
             "logn/leaky_w{w4}_k16", "logn/rerope_w{w4}", direction="~", margin=1.0),
    _windows("7b", "48.87 (k16) > 45.72 (k8), w=256", "Leaky ReRoPE degrades at k=8 (w = N/2)",
             "logn/leaky_w{w2}_k16", "logn/leaky_w{w2}_k8"),
    # Checkpoints trained differently are compared paired over training seeds (issue #18: one seed's windows leave
    # the seed-to-seed spread out); inference methods on one checkpoint (12, 13) over its windows.
    _seeds("8a", "48.70 vs 49.41", "HWFA costs little at L_train (non-inferior to the baseline, margin 3 points; "
           "paired over training seeds)", "hwfa", "rope", at="{n}", margin=-3.0),
    _seeds("8b-far", "48.15 vs 23.16", "HWFA extrapolates with no inference change: above the baseline at 8x "
           "(paired over training seeds)", "hwfa", "rope"),
    _c("8b-own", "48.15 vs 48.70 at 512", "HWFA at 8x is within 2 points of (or above) its L_train accuracy",
       "welch", "nonrep/{L8}/hwfa", "nonrep/{n}/hwfa", margin=-2.0),
    _seeds("9-hwfa", "48.15 <= 48.32", "InvLeaky is above HWFA at 8x (paired over training seeds)", "inv_leaky",
           "hwfa"),
    _seeds("9-rerope", "48.32 <= 49.07", "ReRoPE (log n) is above InvLeaky at 8x (paired over training seeds)",
           "logn/rerope_w{w4}", "inv_leaky"),
    _seeds("10a", "49.46 vs 49.41", "HWFA2 at Su's best setting ({best2}) is not worse than the baseline at "
           "L_train (non-inferiority, 1 point; paired over training seeds)", "{best2}", "rope", at="{n}",
           margin=-1.0),
    _seeds("10b", "49.36 (best with w64-f1 49.37)", "HWFA2 at Su's best setting ({best2}) is not worse than the "
           "best other method with seed replicates at 8x ({best}, by seed 0; non-inferiority, 1 point; paired over "
           "training seeds)", "{best2}", "{best}", margin=-1.0),
    _windows("10c", "qualitative", "HWFA2 does not extrapolate without the ReRoPE swap", "hwfa2+rerope", "hwfa2"),
    *(row for v, su1, su8 in (("kna", "49.60", "47.69"), ("cosa", "49.73", "46.98")) for row in (
        _seeds(f"11a-{v}", f"{su1} vs 49.41", f"{v.upper()} does not hurt accuracy at L_train (non-inferiority, 1 "
               "point; paired over training seeds)", v, "rope", at="{n}", margin=-1.0),
        _seeds(f"11b-{v}", f"{su8} vs 23.16", f"{v.upper()} extrapolates with no inference change (above the "
               "baseline at 8x; paired over training seeds)", v, "rope"))),
    _windows("12a", "47.45 vs 42.20", "YaRN (drop-in) beats NTK at 8x", "yarn", "ntk_old"),
    _windows("12b", "47.45 vs 47.82", "YaRN is within 1 point of (or above) ReRoPE at 8x", "yarn", "rerope_w{w4}",
             margin=-1.0),
    *(_windows(f"13a-{k}", "LLaMA loss 1.6081 vs 1.4967 (NTK)", f"{k} costs in-range accuracy (a tax at L_train)",
               k, "rope", at="{n}", direction="<") for k in ("pi", "ntk_old", "ntk_mixed", "yarn")),
    _windows("13b", "1.4996 vs 1.6081 (LLaMA loss)", "ReRoPE's tax (w = N/2) is smaller than NTK's: rerope_w{w2} "
             "above ntk_old at L_train", "rerope_w{w2}", "ntk_old", at="{n}"),
    # W, H: Su's two orderings that our data reverse (issue #18), each with the test of our hypothesis for it
    # (report_template.md: finding_window, finding_hwfa). {rr}: the stronger of Su's recommended ReRoPE windows
    # (N/4, N/2) on seed 0 (the hard side for W1, the fair one for W2).
    _seeds("W1", "qualitative (9431: a very strong baseline)", "The sliding window (N) is within 1 point of (or "
           "above) {rr} at 8x on non-repeated text (non-inferiority, paired over training seeds)", "window", "{rr}",
           margin=-1.0, family="W"),
    _seeds("W2", "qualitative (9708: ReRoPE keeps the far tokens)", "{rr} is above the sliding window (N) at 8x on "
           "non-repeated text (paired over training seeds)", "{rr}", "window", family="W"),
    *(_windows(cid, "1.4996 -> 1.4267 (LLaMA, ReRoPE)", "Far context helps ReRoPE, not the window: on the same last "
               f"{{n}} bytes with {{L8}} bytes of context, {p}rerope_w{{w4}}'s loss is below {p}window's",
               f"{p}window", f"{p}rerope_w{{w4}}", which="grow", family="W3", **DOCS)
      for cid, p in (("W3", ""), ("W3'", "logn/"))),
    _windows("W4", "qualitative (windows lose far tokens)", "Repeated column at 8x: ReRoPE (w={w4}) retrieves beyond "
             "N where the window cannot (copy-augmented checkpoint)", "copy/rerope_w{w4}", "copy/window",
             which="rep", family="W4"),
    *(_seeds(cid, su, f"{x} is above HWFA at 8x on non-repeated text (paired over training seeds)", x, "hwfa",
             family="H") for cid, x, su in (("H1", "rerope_w{w2}", "48.48 vs 48.15 (w=256)"),
                                            ("H1'", "logn/rerope_w{w2}", "49.07 vs 48.15 (log n, w=256)"))),
    _c("H2", "85.12 vs 80.84 (log n, w=256)", "Repeated column at 8x: ReRoPE-log n (w={w4}) is above HWFA "
       "(copy-augmented checkpoints, paired over training seeds)", "paired",
       "seeds-rep/{L8}/copy-logn/rerope_w{w4}", "seeds-rep/{L8}/copy/hwfa", family="H2", **BY_SEEDS),
    *(_c(cid, "1.4996 -> 1.4267 -> 1.4001", f"Longer context, lower loss: {x}'s loss on the same last {{n}} bytes "
         "falls from context {n} to {L8}", "paired", f"grow/{{n}}/{x}", f"grow/{{L8}}/{x}", **DOCS)
      for cid, x in (("14a", "logn/rerope_w{w4}"), ("14a'", "rerope_w{w4}"))),
    _c("14b", "1.4967 -> 8.8615", "Baseline RoPE's loss on the same bytes rises with more context", "paired",
       "grow/{L8}/rope", "grow/{n}/rope", **DOCS),
    _windows("15a", "qualitative (LLM perplexity)", "A sliding window without the first tokens is worse than the "
             "Lambda-mask at 8x (attention sinks)", "lambda", "window"),
    _seeds("15b", "qualitative", "Training with ReRoPE from scratch gives no extrapolation (no training config for "
           "it at this scale; paired over training seeds)", "rerope_scratch", "rope"),
    # The repeated column on the copy-augmented checkpoints (R5 compares two of them: paired over training seeds).
    _c("R0", "(implicit)", "The copy-augmented baseline copies within L_train (repeated > non-repeated by > 10 "
       "points at {n})", "paired", "rep/{n}/copy/rope", "nonrep/{n}/copy/rope", margin=10.0, needs="copy/rope"),
    _c("R1", "24.17 at 4096 vs 49.41 at 512", "Repeated column: the baseline loses its copying at 8x (repeated "
       "accuracy at {L8} < 0.75x that at {n})", "welch", "rep/{L8}/copy/rope", "0.75x rep/{n}/copy/rope",
       direction="<", needs="copy/rope"),
    *(_windows(cid, su, f"Repeated column at 8x: {text}", a, b, which="rep", family="R", needs="copy/rope")
      for cid, a, b, su, text in (
          ("R2", "copy/ntk_mixed", "copy/rope", "53.09 vs 24.17", "NTK-mixed keeps more than the baseline"),
          ("R4", "copy/rerope_w{w4}", "copy/ntk_mixed", "77.90 vs 53.09", "ReRoPE is ahead of NTK-mixed"),
          ("R4'", "copy-logn/rerope_w{w4}", "copy-logn/ntk_mixed", "85.12 vs 68.91 (log n)",
           "ReRoPE is ahead of NTK-mixed (log n)"))),
    _c("R5", "80.84 vs 24.17", "Repeated column at 8x: HWFA is above the baseline (paired over training seeds)",
       "paired", "seeds-rep/{L8}/copy/hwfa", "seeds-rep/{L8}/copy/rope", family="R", needs="copy/rope", **BY_SEEDS),
    _windows("R7", "7.09 vs 24.17", "Repeated column at 8x: ReRoPE with w = L_train is below the baseline",
             "copy/rope", "copy/rerope_w{n}", which="rep", family="R", needs="copy/rope"),
    _c("R3", "77.90 vs 48.48 (w=256)", "ReRoPE retrieves beyond L_train: at 8x its repeated accuracy is above its "
       "non-repeated accuracy", "paired", "rep/{L8}/copy/rerope_w{w4}", "nonrep/{L8}/copy/rerope_w{w4}",
       family="R", needs="copy/rope"),
    _windows("R6", "85.15 vs 85.47 (log n, w=128)", "Repeated column: Leaky ReRoPE (k=16) ≈ ReRoPE at 8x "
             "(equivalent within 2 points)", "copy/leaky_w{w4}_k16", "copy/rerope_w{w4}", which="rep",
             direction="~", margin=2.0, family="R", needs="copy/rope"),
    *(_c(cid, "1.4996 -> 1.4267 -> 1.4001 (LLaMA)", f"Longer context, lower loss on a model that copies: {x}'s "
         "loss on the same last {n} bytes falls from context {n} to {L8}", "paired", f"grow/{{n}}/{x}",
         f"grow/{{L8}}/{x}", family="R8", needs="copy/rope", **DOCS)
      for cid, x in (("R8", "copy-logn/rerope_w{w4}"), ("R8'", "copy/rerope_w{w4}"))),
    _mlm_claims,
    # Issue #18's variants (extended plan): Su's negative controls QNA and KeyNorm + NoPE (9859: "QNA does not
    # extrapolate", "KeyNorm needs RoPE"), InvLeaky with the RoPE base x8 (9728 T6) and the HWFA2 grid (9731 T7:
    # "too large a window hurts"; {wide_f1} = w~ N/2, {narrow_f1} = w~ N/8 with 1 full layer).
    _c("11c", "22.18 vs 0.75 x 49.55", "QNA does not extrapolate: its accuracy at 8x < 0.75x its L_train accuracy",
       "welch", "nonrep/{L8}/qna", "0.75x nonrep/{n}/qna", direction="<", family="QNA"),
    _seeds("11d", "49.55 vs 49.41", "QNA does not hurt accuracy at L_train (non-inferiority, 1 point; paired over "
           "training seeds)", "qna", "rope", at="{n}", margin=-1.0, family="QNA"),
    _seeds("11e", "47.69 vs 22.18", "The key norm extrapolates, the query norm does not: KNA is above QNA at 8x "
           "(paired over training seeds)", "kna", "qna", family="QNA"),
    _c("11f", "qualitative (9859: KeyNorm needs RoPE)", "KNA + NoPE does not extrapolate: its accuracy at 8x < 0.75x "
       "its L_train accuracy", "welch", "nonrep/{L8}/kna_nope", "0.75x nonrep/{n}/kna_nope", direction="<",
       family="NoPE"),
    _seeds("11g", "qualitative (9859)", "KNA with RoPE is above KNA + NoPE at 8x (paired over training seeds)",
           "kna", "kna_nope", family="NoPE"),
    _seeds("9b", "48.85 vs 48.32", "InvLeaky with the RoPE base x8 (b8) is above InvLeaky at 8x (paired over "
           "training seeds)", "inv_leaky_b8", "inv_leaky", family="9b"),
    _seeds("9b-far", "48.85 vs 23.16", "InvLeaky b8 extrapolates with no inference change (above the baseline at "
           "8x; paired over training seeds)", "inv_leaky_b8", "rope", family="9b"),
    *(_seeds(f"10d-f{f}", f"{su} (w256 vs w64)", f"HWFA2 with too large a window: {{wide_f{f}}} (w~ = N/2) is "
             f"below {{narrow_f{f}}} (w~ = N/8) at 8x (paired over training seeds)", f"{{wide_f{f}}}",
             f"{{narrow_f{f}}}", direction="<", family="10d")
      for f, su in ((1, "47.64 vs 49.37"), (2, "48.42 vs 49.36"))),
    _gap_claims,
)


def _quantities(res: dict, S: dict) -> dict:
  """The run's numbers CHECKLIST's templates name (None: not measured in this run, its rows are left out)."""
  n, ext = int(res["meta"]["train_length"]), int(res["meta"].get("extension", 8))
  L8, w8, w4, w2 = n * ext, max(1, n // 8), max(1, n // 4), max(1, n // 2)
  mean8 = lambda x: _mean(S.get(f"nonrep/{L8}/{x}"))
  big = 100 * res.get("baselines", {}).get("bigram_acc", np.nan)
  drop = (_mean(S.get(f"nonrep/{n}/rope")) or 0) - (mean8("rope") or 0)
  ws = [w for w in (w8, w4, w2, max(1, 3 * n // 4)) if f"nonrep/{L8}/rerope_w{w}" in S]
  means = {w: mean8(f"rerope_w{w}") for w in ws} if len(ws) > 1 else {}
  layers = int((res["meta"].get("model") or {}).get("num_layers", 4))
  hwfa2 = lambda w, f: methods_lib.hwfa2_ckpt(n, layers, w, f) + "+rerope"   # its ReRoPE swap, window w, f full
  seeded = methods_lib.seed_method_names(n, layers)   # methods with seed replicates (the `seeds` scale): testable
  others = {k: np.mean(m["by_length"][str(L8)]["nonrep"]["acc"]) for k, m in res["methods"].items()
            if k in seeded and not k.startswith(("hwfa2",) + methods_lib.GAP_PREFIXES)   # not the grid / gap runs
            and "nonrep" in m.get("by_length", {}).get(str(L8), {})}
  return dict(
      n=n, L8=L8, w4=w4, w2=w2, bigram=big if np.isfinite(big) else None, drop=drop, drop4=drop / 4,
      hi=max(means, key=means.get) if means else None, lo=min(means, key=means.get) if means else None,
      robust=ROBUST_SPREAD, spread=ROBUST_SPREAD * SU_SPREAD_GAIN,
      rr=max((f"rerope_w{w}" for w in (w4, w2)), key=lambda x: mean8(x) or -np.inf),
      best2=hwfa2(w8, 2),   # Su's best w64-f2 (published.su_row: windows scale with N)
      best=max(others, key=others.get) if others else None,
      **{f"{size}_f{f}": hwfa2(w, f) for f in (1, 2) for size, w in (("wide", w2), ("narrow", w8))})


def _claim(row: tuple, q: dict, methods: dict) -> list[tuple[C.Claim, str]]:
  """A CHECKLIST row filled in with the run's quantities: [(claim, Su's numbers)], [] if the run lacks them."""
  cid, su, text, test, a, b, kw = row
  kw = {"unit": "windows", "family": cid.split("-")[0].rstrip("'abc") or cid, **kw}
  needs, ref = kw.pop("needs", None), kw.get("reference")
  names = {f for s in (su, text, a, b or "") for _, f, _, _ in string.Formatter().parse(s) if f}
  names |= {ref} if isinstance(ref, str) else set()
  if any(q[f] is None for f in names) or (needs and needs.format(**q) not in methods):
    return []
  if isinstance(ref, str):
    kw["reference"] = q[ref]
  fill = lambda s: s.format(**q)
  return [(C.Claim(cid, fill(text), test, fill(a), b and fill(b), **kw), fill(su))]


def checklist(res: dict, S: dict) -> list[tuple[C.Claim, str]]:
  """(claim, Su's numbers) for every row of CHECKLIST this run measured."""
  q = _quantities(res, S)
  return [item for entry in CHECKLIST
          for row in (entry(res, q) if callable(entry) else [entry]) for item in _claim(row, q, res["methods"])]


def findings(n: int) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
  """Issue #18's finding section: where our small-scale results differ from Su, as (template block, Su's claims,
  the claims that test our hypothesis for the difference); report.py prints each claim's computed verdict."""
  gap = tuple(f"G{k}-{x}" for k in (1, 2, 3) for x in ("rope", "ntk_mixed", f"rerope_w{max(1, n // 2)}"))
  return (("finding_window", ("W1", "W2"), ("W3", "W3'", "W4")),
          ("finding_hwfa", ("H1", "H1'"), ("H2",)),
          ("finding_rerope_n", ("6b",), ("R7",)),
          ("finding_logn", ("1b", "4a-none", "4b-none", "4a-pre", "4b-pre"), gap))


def verdicts(res: dict, protocol: str | None = None) -> list[tuple[C.Verdict, str]]:
  """(verdict, Su's numbers) per claim under an evaluation protocol (default: the run's); 5c is inconclusive
  unless the baseline copies."""
  S = samples(res, protocol)
  items = checklist(res, S)
  vs = C.judge_all([c for c, _ in items], S)
  copies = next((v.verdict for v in vs if v.claim.id == "0a"), None) == C.HOLDS
  out = []
  for v, (c, su) in zip(vs, items):
    if c.id == "5c" and not copies and v.verdict == C.HOLDS:
      v = C.Verdict(c, C.INCONCLUSIVE, note="the baseline does not copy (0a), so the repeated column does not "
                    "measure long-range retrieval: " + v.line())
    out.append((v, su))
  return out


def _label(key: str) -> str:
  """"nonrep/1024/rope" -> "rope (nonrep @1024)"; derived samples as they are."""
  parts = key.split("/", 2)
  return f"{parts[2]} ({parts[0]} @{parts[1]})" if len(parts) == 3 and parts[0] in SAMPLE_KINDS else key


SAMPLE_KINDS = ("nonrep", "rep", "grow", "seeds", "seeds-rep", "mlm")


def means_text(v: C.Verdict, S: dict) -> str:
  """"rope (nonrep @1024) 35.94 vs pi (nonrep @1024) 31.46" from the claim's samples (a paired claim: over the
  units both samples have, e.g. the seeds both checkpoints were trained with)."""
  c = v.claim
  shared = set(S[c.a]) & set(S[c.b]) if c.test == "paired" and c.a in S and c.b in S else None
  pick = lambda x: {k: y for k, y in x.items() if k in shared} if shared and x else x
  parts = [f"{_label(s)} {m:.2f}" for s in (c.a, c.b) if s if (m := _mean(pick(S.get(s)))) is not None]
  return " vs ".join(parts) + (f" (reference {c.reference:.2f})" if c.reference is not None else "")
