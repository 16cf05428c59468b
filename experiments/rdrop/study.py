r"""R-Drop, "dropout twice" (issues #7, #16) on MNIST-1D: against the two-pass control, converged, Su's own cell.

Every run is configs/rdrop/mnist1d.py with one argument string. Arms "1pass" (plain dropout), "a0" (the two-pass
control) and "aA" (R-Drop, α = A); the parts and scales are tabled in README.md, the report's prose is
report_template.md.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import os
from typing import Any, NamedTuple

import numpy as np

from experiments import stats
from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.framework import report as R
from experiments.rdrop import published
from kexue_jax import config_lib

CONFIG = "configs/rdrop/mnist1d.py"
mnist1d = config_lib.load_sibling(os.path.join(launcher.REPO, CONFIG), os.path.basename(CONFIG))  # STEPS, labels
# --dry_run estimate: CPU seconds per run = FIXED_S + steps x STEP_MS, i.e. the wall time with both cores of an
# idle 2-core machine busy; one 400-step run per kind measured it (README.md). CNN at 4x width: from its flops.
FIXED_S = {"mlp": 7.0, "cnn": 13.5}
STEP_MS = {("mlp", "1pass"): 1.65, ("mlp", "2pass"): 2.63, ("cnn", "1pass"): 4.5, ("cnn", "2pass"): 8.7,
           ("cnn", "semi"): 16.4}
WIDE = {"mlp": (1024, 11.7 / 2.63), "cnn": (128, 16.0)}   # width, step-cost factor
NONINFERIORITY = 0.005   # "R-Drop >= the control": accuracy at most half a point below it (declared before the run)
SU = 0.3                 # Su's dropout rate; his α is 4
ARMS = ("1pass", 0, 0.5, 1, 2, 4)
# Seeds of the default plan: MLP 5, CNN 3 (to fit 30 minutes), except the settings below. Claim 7 (capacity) at
# 5 seeds: effect +1.48 ± 1.16 (se), inconclusive, 21 seeds for 80% power (claims.units_needed); its four MLP
# settings take 21 (~13 min more with 2 processes). Claim 10 (Su's alternating scheme) pairs 5 seeds with the
# labelled-only two-pass control, which takes 5 as well.
CAPACITY_SEEDS, ALTERNATE_SEEDS = 21, 5
SCALES = ("default", "extended", "full", "tiny")


class Setting(NamedTuple):
  """One arm without its seed; arm "1pass" or α (two passes); semi "alternate": Su's alternating steps."""
  part: str
  model: str
  arm: Any
  p: float = SU
  n: int = 1000
  labelled: int = 0
  unlabelled: bool = False
  width: int = 0
  beta: float | None = None
  semi: str = "joint"
  seeds: int = 5


def settings(scale: str) -> list[Setting]:
  """Every setting of a scale (README.md tables them)."""
  if scale == "tiny":
    return [Setting("grid", "mlp", a) for a in ("1pass", 0, 4)] + [Setting("semi", "cnn", 0, n=0, labelled=100,
                                                                          unlabelled=True)]
  full, ext = scale == "full", scale in ("extended", "full")   # extended: default + the follow-up runs
  seeds = lambda model, k=None: k or (5 if full or model == "mlp" else 3)
  capacity = lambda model, p, n, a: seeds(model, CAPACITY_SEEDS if ext and (model, p, n, a) in (
      ("mlp", SU, 1000, 0), ("mlp", SU, 1000, 4)) else None)
  out = []
  for model in ("mlp", "cnn"):
    for n in (1000, 4000):
      for p in (0.1, SU):
        arms = (ARMS if full or (model, n) == ("mlp", 1000) else
                ("1pass", 0, 4) if p == SU and (model, n) != ("cnn", 4000) else ())
        out += [Setting("grid", model, a, p, n, seeds=capacity(model, p, n, a)) for a in arms]
    if full or model == "mlp":
      out.append(Setting("alpha", model, 64, seeds=seeds(model)))
      out += [Setting("explain", model, a, width=WIDE[model][0], seeds=capacity(model, SU, 1000, a)) for a in (0, 4)]
  for lab in mnist1d.SEMI_LABELLED if full else mnist1d.SEMI_LABELLED[:1]:
    semi = lambda arm, unl, k=None, **kw: Setting("semi", "cnn", arm, SU, 0, lab, unl, seeds=seeds("cnn", k), **kw)
    out += [semi(a, False, ALTERNATE_SEEDS if ext and a == 0 else None) for a in ("1pass", 0, 4)] + [semi(0, True)]
    out += [semi(0, True, beta=b) for b in mnist1d.SEMI_BETAS]   # β (default: Su's 4)
    out += [semi(0, True, ALTERNATE_SEEDS, semi="alternate")] * ext
  return out


def run_arg(s: Setting, seed: int) -> str:
  parts = [f"model={s.model}", f"alpha={0 if s.arm == '1pass' else s.arm:g}", f"dropout={s.p:g}",
           f"passes={'single' if s.arm == '1pass' else 'duplicate'}"]
  parts += [f"labelled={s.labelled}", f"unlabelled={s.unlabelled}"] if s.labelled else [f"train_size={s.n}"]
  parts += [f"width={s.width}"] * bool(s.width) + ([] if s.beta is None else [f"beta={s.beta:g}"])
  return ",".join(parts + [f"semi={s.semi}"] * (s.semi != "joint") + [f"seed={seed}"])


def est_s(s: Setting) -> float:
  kind = "semi" if s.unlabelled else "1pass" if s.arm == "1pass" else "2pass"
  factor = WIDE[s.model][1] if s.width else 1.0
  return FIXED_S[s.model] + mnist1d.default_steps(s.model, s.labelled or s.n) * STEP_MS[(s.model, kind)] * factor / 1e3


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  tiny = scale == "tiny"

  def run(s: Setting, seed: int) -> launcher.Run:
    labels = dict(part=s.part, model=s.model, alpha=0.0 if s.arm == "1pass" else float(s.arm), dropout=s.p,
                  passes="single" if s.arm == "1pass" else "duplicate", train_size=s.labelled or s.n,
                  labelled=s.labelled, unlabelled=s.unlabelled, width=s.width, seed=seed,
                  **({} if s.beta is None else dict(beta=s.beta)), **({} if s.semi == "joint" else dict(semi=s.semi)))
    arg = run_arg(s, seed)
    return launcher.Run(launcher.slug(arg), f"{CONFIG}:{arg}" + ",runlocal" * tiny, labels,
                        10.0 if tiny else round(est_s(s), 1))
  return launcher.seed_major([(s, 1 if tiny else s.seeds) for s in settings(scale)], seeds, run)


def key(r: dict) -> str:
  """A setting's name (all but the seed): "mlp/n1000/p0.3/a4", "mlp/n1000w1024/p0.3/a0", "cnn/lab100/semi/p0.3/a0",
  "cnn/lab100/only/p0.3/1pass", "cnn/lab100/semib1/p0.3/a0" (β = 1; no beta label: Su's 4),
  "cnn/lab100/semialt/p0.3/a0" (Su's alternating steps). Records of the former plan have no passes label: there
  α = 0 alone was one pass."""
  semi = "semi" + (f"b{r['beta']:g}" if r.get("beta") is not None else "") + ("alt" if r.get("semi") else "")
  data = (f"lab{r['labelled']}/{semi if r['unlabelled'] else 'only'}" if r["labelled"] else
          f"n{r['train_size']}" + (f"w{r['width']}" if r.get("width") else ""))
  one = r.get("passes", "single" if r["alpha"] == 0 and not (r["labelled"] and r["unlabelled"]) else "") == "single"
  return f"{r['model']}/{data}/p{float(r['dropout']):g}/" + ("1pass" if one else f"a{float(r['alpha']):g}")


def samples(records) -> dict:
  """{metric:setting: {seed: value}} for acc (test accuracy), gap (dropout_kl: ½ symmetric KL between two dropout
  passes on the test set), kl (KL(P̄‖P0)), ce (train CE, last log window); gain:setting/aA = acc(aA) − acc(a0) per
  seed (same seed = same initialisation and data order); slope:setting = {seed: the slope of log10 gap on α over
  that seed's two-pass arms with α <= 4} (a slope per seed keeps the seed blocking that one fit over all points
  drops; seeds with fewer than 3 values of α, e.g. claim 7's extra seeds, have none)."""
  out: dict = collections.defaultdict(dict)
  for r in R.finished(records):
    for name, v in (("acc", r["eval"].get("accuracy")), ("gap", r["eval"].get("dropout_kl")),
                    ("kl", r["eval"].get("consistency_kl")), ("ce", r["train"].get("ce"))):
      if v is not None:
        out[f"{name}:{key(r)}"][r["seed"]] = float(v)
  for k in [k for k in out if k.startswith("acc:") and "/a" in k and not k.endswith("/a0")]:
    out["gain:" + k[4:]] = stats.diff(out[k], out.get(k.rsplit("/a", 1)[0] + "/a0", {}))
  for s in supervised(out):   # claim 1, blocked by seed: one slope per seed (stats.slopes)
    pts = collections.defaultdict(dict)
    for a in (a for a in alphas(out, s) if a <= 4):
      for seed, g in out.get(f"gap:{s}/a{a:g}", {}).items():
        pts[seed].update({a: math.log10(g)} if g > 0 else {})
    if slopes := stats.slopes(pts):
      out[f"slope:{s}"] = slopes
  return dict(out)


def supervised(data) -> list[str]:
  """Supervised settings without the arm ("mlp/n1000/p0.3") that have the two-pass control."""
  return sorted({k[4:-3] for k in data if k.startswith("acc:") and "/n" in k and k.endswith("/a0")})


def semi_labels(data) -> list[str]:
  """The semi-supervised label counts measured ("lab100", "lab200")."""
  return sorted({k.split("/")[1] for k in data if "/lab" in k}, key=lambda x: int(x[3:]))


def alphas(data, s) -> list[float]:
  return sorted(float(k.rsplit("/a", 1)[1]) for k in data if k.startswith(f"acc:{s}/a"))


# The claims, as data: (binding, template). A template's id, text, a and b are formatted with each binding of its
# kind (bindings(): s = a supervised setting, low / o = two of them, lab = a label budget, b = a smaller β,
# model / width / wide = claim 7's pair, p = Su's dropout, m = the margin in points); a claim is made where both
# of its samples exist. Margins and directions are declared here, before the run.
_SEMI = "Semi-supervised ({n} labels)"
CLAIMS = (
    ("s", C.Claim("1 {s}", "The consistency gap (½ sym. KL between two dropout passes, test set) shrinks as α grows "
                  "from 0 to 4: the slope of log10 gap on α, fitted per seed, is below 0 ({s})", "one_sample",
                  "slope:{s}", reference=0.0, direction="<", family="gap", digits=3)),
    ("su", C.Claim("2 {s}", "At Su's setting (α = 4, p = {p:g}) R-Drop is not below the two-pass control "
                   "(non-inferiority, margin {m:g} point) ({s})", "paired", "acc:{s}/a4", "acc:{s}/a0",
                   margin=-NONINFERIORITY, family="control", scale=100)),
    ("regime", C.Claim("3 {o}", "The R-Drop gain acc(α = 4) − acc(two-pass control) is larger at low data / high "
                       "dropout ({low}) than at {o}", "paired", "gain:{low}/a4", "gain:{o}/a4", family="regime",
                       scale=100)),
    ("s", C.Claim("4 {s} ce", "Too large an α under-fits: train CE at α = 64 above α = 4 ({s})", "paired",
                  "ce:{s}/a64", "ce:{s}/a4", family="underfit", digits=3)),
    ("s", C.Claim("4 {s} acc", "Too large an α under-fits: test accuracy at α = 64 below α = 4 ({s})", "paired",
                  "acc:{s}/a64", "acc:{s}/a4", direction="<", family="underfit", scale=100)),
    *(("lab", C.Claim(f"5 {{lab}} {arm}", f"{_SEMI}: the KL term on the unlabelled rest beats labelled-only {text}",
                      "paired", "acc:cnn/{lab}/semi/p{p:g}/a0", f"acc:cnn/{{lab}}/only/p{{p:g}}/{arm}", family="semi",
                      scale=100))
      for arm, text in (("1pass", "plain dropout (Su, 1% labels: +1.44 valid, +0.80 test)"),
                        ("a0", "two-pass training (the control)"), ("a4", "R-Drop (KL on labelled data)"))),
    # The explanation of claim 5: β = 4 in one joint step is too large.
    ("lab b", C.Claim("8 {lab} b{b:g}", f"{_SEMI} at β = {{b:g}}: the KL term on the unlabelled rest beats "
                      "labelled-only two-pass training (the control)", "paired", "acc:cnn/{lab}/semib{b:g}/p{p:g}/a0",
                      "acc:cnn/{lab}/only/p{p:g}/a0", family="semi-beta", scale=100)),
    ("lab b", C.Claim("9 {lab} b{b:g} acc", "Su's β = 4 is too large in one joint step: β = {b:g} beats β = 4 "
                      "({n} labels, test accuracy)", "paired", "acc:cnn/{lab}/semib{b:g}/p{p:g}/a0",
                      "acc:cnn/{lab}/semi/p{p:g}/a0", family="semi-beta", scale=100)),
    ("lab b", C.Claim("9 {lab} b{b:g} ce", "β = 4 under-fits the labelled examples: their train CE at β = 4 is "
                      "above β = {b:g} ({n} labels)", "paired", "ce:cnn/{lab}/semi/p{p:g}/a0",
                      "ce:cnn/{lab}/semib{b:g}/p{p:g}/a0", family="semi-beta", digits=3)),
    ("lab", C.Claim("10 {lab}", f"{_SEMI} in Su's alternating steps (a labelled CE step with one AdamW, then an "
                    "unlabelled KL step with a second at half the lr): the KL term on the unlabelled rest beats "
                    "labelled-only two-pass training (the control)", "paired", "acc:cnn/{lab}/semialt/p{p:g}/a0",
                    "acc:cnn/{lab}/only/p{p:g}/a0", family="semi-alternate", scale=100)),
    ("su", C.Claim("6 {s}", "Su's cell (α = 4, p = {p:g}): R-Drop beats plain one-pass dropout (Su: +0.9 to +2.4 on "
                   "CLUE) ({s})", "paired", "acc:{s}/a4", "acc:{s}/1pass", family="su", scale=100)),
    ("width", C.Claim("7 {model}", "Capacity explains Su's cell: at 4x width ({width}) the gain over the two-pass "
                      "control is larger than at the default width ({s})", "paired", "gain:{wide}/a4", "gain:{s}/a4",
                      family="explain", scale=100)),
)


def bindings(data, kind: str) -> list[dict]:
  """The values a claim template of `kind` is made for (CLAIMS)."""
  sup = supervised(data)
  if kind in ("s", "su"):
    return [dict(s=s) for s in sup if kind == "s" or s.endswith(f"/p{SU}")]
  if kind == "regime":   # each model's low-data / high-dropout setting against its other default-width ones
    return [dict(low=f"{s.split('/')[0]}/n1000/p{SU}", o=s) for s in sup
            if "w" not in s.split("/")[1] and s != f"{s.split('/')[0]}/n1000/p{SU}"]
  if kind == "width":
    return [dict(model=m, width=w, s=f"{m}/n1000/p{SU}", wide=f"{m}/n1000w{w}/p{SU}") for m, (w, _) in WIDE.items()]
  return [dict(lab=lab, n=lab[3:], b=b) for lab in semi_labels(data)
          for b in (semi_betas(data, lab) if kind == "lab b" else [None])]


def claims(data) -> list[C.Claim]:
  out = []
  for kind, t in CLAIMS:
    for env in bindings(data, kind):
      fields = {f: getattr(t, f).format(p=SU, m=NONINFERIORITY * 100, **env) for f in ("id", "text", "a", "b")
                if getattr(t, f) is not None}
      if fields["a"] in data and fields.get("b", fields["a"]) in data:
        out.append(dataclasses.replace(t, **fields))
  return out


def _cell(data, name, scale=100.0, digits=1) -> str:
  return stats.cell(data.get(name), scale, digits)


def table_supervised(data) -> str:
  rows = []
  for s in supervised(data):
    for arm in ["1pass"] * (f"acc:{s}/1pass" in data) + [f"a{a:g}" for a in alphas(data, s)]:
      k = f"{s}/{arm}"
      rows.append(s.split("/") + [arm, _cell(data, f"acc:{k}"), _cell(data, f"gain:{k}", 100, 2),
                                  _cell(data, f"gap:{k}", 1e3, 2), _cell(data, f"kl:{k}", 1e3, 2),
                                  _cell(data, f"ce:{k}", 1, 3), len(data.get(f"acc:{k}", {}))])
  return R.table(["model", "data (w: width)", "dropout", "arm", "test acc %", "gain vs a0 (points)",
                  "gap ×10⁻³", "KL(P̄‖P0) ×10⁻³", "final train CE", "seeds"], rows)


def semi_betas(data, lab) -> list[float]:
  """The β of the semi-supervised arms other than Su's 4 (mnist1d.SEMI_BETAS) that have runs."""
  return sorted({float(k.split("/")[2][5:]) for k in data if k.startswith(f"acc:cnn/{lab}/semib")})


def table_semi(data) -> str:
  labs = semi_labels(data)
  betas = sorted({b for lab in labs for b in semi_betas(data, lab)})
  rows = [[lab[3:]] + [_cell(data, f"acc:cnn/{lab}/{arm}") for arm in (
      f"only/p{SU}/1pass", f"only/p{SU}/a0", f"only/p{SU}/a4", f"semi/p{SU}/a0",
      *(f"semib{b:g}/p{SU}/a0" for b in betas), f"semialt/p{SU}/a0")] for lab in labs]
  return R.table(["labels", "labelled only, plain", "labelled only, two-pass control", "labelled only, R-Drop α=4",
                  "+ unlabelled KL (β = 4, joint step)", *(f"+ unlabelled KL, β = {b:g}" for b in betas),
                  "+ unlabelled KL, Su's alternating steps"], rows)


def _diff(data, a, b) -> str:
  """Mean ± sd over seeds of the per-seed difference a − b, in points."""
  return stats.Stat.of(stats.diff(data.get(a, {}), data.get(b, {}))).fmt(100, 2)


def table_published(data) -> str:
  rows = [["Su (kexue.fm/archives/8496)", f"{t}, {m}", f"{b:.2f}", "—", f"{r:.2f}", f"{r - b:+.2f}", "—"]
          for t, m, b, r in published.SU_SUPERVISED]
  for s in (s for s in supervised(data) if s.endswith(f"/p{SU}") and f"acc:{s}/1pass" in data):
    one, two, rd = (f"acc:{s}/{arm}" for arm in ("1pass", "a0", "a4"))
    rows.append(["ours, Su's cell (α = 4)", f"MNIST-1D {s}, accuracy %", _cell(data, one), _cell(data, two),
                 _cell(data, rd), _diff(data, rd, one), _diff(data, rd, two)])
  rows += [["Su, semi-supervised 1% labels", f"sentiment {sp}, accuracy % (VAT {vat:.2f})", f"{sup:.2f}", "—",
            f"{rd:.2f}", f"{rd - sup:+.2f}", "—"] for sp, sup, vat, rd in published.SU_SEMI]
  for lab, (semi, how) in itertools.product(semi_labels(data), (("semi", "joint step"), ("semialt", "alternating"))):
    one, two, rd = (f"acc:cnn/{lab}/{arm}/p{SU}/{a}" for arm, a in (("only", "1pass"), ("only", "a0"), (semi, "a0")))
    if rd in data:
      rows.append([f"ours, semi-supervised {lab[3:]} labels, {how}", "MNIST-1D CNN, accuracy %", _cell(data, one),
                   _cell(data, two), _cell(data, rd), _diff(data, rd, one), _diff(data, rd, two)])
  return R.table(["source", "task", "baseline (plain dropout)", "two-pass control", "R-Drop (semi: + unlabelled KL)",
                  "gain vs baseline", "gain vs control"], rows)


def plots(data, out_dir) -> list[str]:
  """One row per model: test accuracy, gap and train CE against α (two passes), plain dropout dotted."""
  sup = supervised(data)
  models = sorted({s.split("/")[0] for s in sup})
  if not sup:
    return []
  fig, ax = R.figure(len(models), 3)
  for i, s in enumerate(sup):
    row, al, color = ax[models.index(s.split("/")[0])], alphas(data, s), f"C{i % 10}"
    for axis, metric, sc in zip(row, ("acc", "gap", "ce"), (100, 1, 1)):
      R.mean_sd(axis, al, [data.get(f"{metric}:{s}/a{a:g}") for a in al], sc, capsize=3, label=s, color=color)
      if f"{metric}:{s}/1pass" in data:   # plain one-pass dropout: a dotted level
        axis.axhline(stats.Stat.of(data[f"{metric}:{s}/1pass"]).mean * sc, color=color, ls=":")
  for row in ax:
    for axis, label in zip(row, ("test accuracy %", "gap: ½ sym. KL of two dropout passes", "final train CE")):
      axis.set(xlabel="α (two passes; dotted: plain one-pass dropout)", ylabel=label, xscale="symlog")
      axis.set_xlim(left=-0.1)
    row[1].set_yscale("log")
  return [R.save(fig, out_dir, "fig_supervised.png")]


def write_report(records, extras, out_dir: str, meta: dict) -> str:
  del extras
  data = samples(records)
  return R.write(__file__, out_dir, meta, C.judge_all(claims(data), data), records, plots(data, out_dir),
                 supervised=table_supervised(data), semi=table_semi(data), published=table_published(data),
                 margin=f"{NONINFERIORITY * 100:g}",
                 mean_run_s=f"{np.mean([r.get('wall_time_s', 0) for r in records]):.1f}" if records else "—")
