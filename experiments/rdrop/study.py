r"""R-Drop, "dropout twice" (issue #7) on MNIST-1D: consistency, accuracy, regime, semi-supervised, large α.

  python -m experiments rdrop --workdir /tmp/kexue/rdrop --processes 2            # 95 runs (5 seeds)
  python -m experiments rdrop --workdir /tmp/kexue/rdrop --scale full_grid        # + the CNN on the MLP grid (115)
  python -m experiments rdrop --workdir W --scale cnn_6000 --seeds 3              # the follow-up: CNN, 3x steps
  python -m experiments rdrop --workdir W --scale tiny                            # smoke test (< 2 min)

Every run is configs/rdrop/mnist1d.py with one argument string; α = 0 is plain single-pass dropout. Parts:
supervised (MLP: dropout {0.1, 0.3} x α {0, 1, 4}; CNN: dropout 0.3 x α {0, 4}; 1000 examples), data (all 4000
examples, dropout 0.3, α {0, 4}), alpha (MLP α = 64), semi (MLP, 40 / 200 labelled: labelled-only plain,
labelled-only R-Drop α 4, Su's semi-supervised KL on the rest). Prose: report_template.md.
"""
from __future__ import annotations

import collections
import os

import numpy as np

from experiments import stats
from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.framework import report as R
from experiments.rdrop import published

CONFIG = "configs/rdrop/mnist1d.py"
# Wall seconds per run measured in the default study (2000 steps, 2-core CPU shared, load 4-5), by model and
# kind, for the --dry_run estimate only.
EST_S = {("mlp", "single"): 12.0, ("mlp", "two"): 15.0, ("mlp", "semi"): 15.0,
         ("cnn", "single"): 30.0, ("cnn", "two"): 44.0, ("cnn", "semi"): 55.0}
NONINFERIORITY = 0.005   # "equal to or better": accuracy at most half a point below plain dropout (declared)


def run_arg(model, alpha, dropout, train_size=1000, labelled=0, unlabelled=False, seed=0, extra="") -> str:
  two = alpha != 0 or (labelled and unlabelled)  # the unlabelled KL term needs two passes even at α = 0
  parts = [f"model={model}", f"alpha={alpha:g}", f"dropout={dropout:g}", f"passes={'duplicate' if two else 'single'}"]
  parts += [f"labelled={labelled}", f"unlabelled={unlabelled}"] if labelled else [f"train_size={train_size}"]
  return ",".join(parts + [f"seed={seed}"]) + extra


def settings(scale: str) -> list[tuple]:
  """(model, alpha, dropout, train_size, labelled, unlabelled) of every setting of a scale."""
  if scale == "tiny":
    return [("mlp", 0, 0.3, 1000, 0, False), ("mlp", 4, 0.3, 1000, 0, False)]
  if scale == "cnn_6000":
    return [("cnn", a, 0.3, 1000, 0, False) for a in (0, 4)]
  grid = {"mlp": ((0.1, 0.3), (0, 1, 4)), "cnn": ((0.3,), (0, 4))}
  out = []
  for model in ("mlp", "cnn"):
    dropouts, alphas = grid["mlp" if scale == "full_grid" else model]
    out += [(model, a, p, 1000, 0, False) for p in dropouts for a in alphas]
    out += [(model, a, 0.3, 4000, 0, False) for a in (0, 4)]
  out.append(("mlp", 64, 0.3, 1000, 0, False))
  for lab in (40, 200):
    out += [("mlp", 0, 0.3, lab, lab, False), ("mlp", 4, 0.3, lab, lab, False), ("mlp", 0, 0.3, lab, lab, True)]
  return out


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  if scale not in ("default", "full_grid", "cnn_6000", "tiny"):
    raise ValueError(f"rdrop scales are default, full_grid, cnn_6000, tiny; got {scale!r}.")
  seeds = seeds or {"tiny": 1, "cnn_6000": 3}.get(scale, 5)
  extra = {"tiny": ",runlocal", "cnn_6000": ",steps=6000"}.get(scale, "")
  runs = []
  for seed in range(seeds):
    for model, alpha, p, n, lab, unl in settings(scale):
      arg = run_arg(model, alpha, p, n, lab, unl, seed, extra)
      kind = "semi" if lab and unl else "single" if alpha == 0 else "two"
      labels = dict(model=model, alpha=float(alpha), dropout=float(p), train_size=n, labelled=lab, unlabelled=unl,
                    seed=seed)
      runs.append(launcher.Run(arg.replace(",", "_").replace("=", ""), f"{CONFIG}:{arg}", labels,
                               EST_S[(model, kind)] * (3 if scale == "cnn_6000" else 0.2 if scale == "tiny" else 1)))
  return runs


# ------------------------------------------------------------------------------------------- Samples + claims.


def key(r: dict) -> str:
  """A setting's name (everything but the seed): "mlp/n1000/p0.3/a4" or "mlp/lab40/semi/p0.3/a0"."""
  data = f"lab{r['labelled']}/{'semi' if r['unlabelled'] else 'only'}" if r["labelled"] else f"n{r['train_size']}"
  return f"{r['model']}/{data}/p{float(r['dropout']):g}/a{float(r['alpha']):g}"


def samples(records) -> dict[str, dict]:
  """{metric:setting: {seed: value}} for acc, kl (consistency), dis, ce (final train CE); gain:setting = acc(α)
  - acc(0) per seed (same seed = same initialisation and data order)."""
  out: dict[str, dict] = collections.defaultdict(dict)
  for r in records:
    if r.get("error"):
      continue
    for name, v in (("acc", r["eval"].get("accuracy")), ("kl", r["eval"].get("consistency_kl")),
                    ("dis", r["eval"].get("consistency_disagree")), ("ce", r["train"].get("ce"))):
      if v is not None:
        out[f"{name}:{key(r)}"][r["seed"]] = float(v)
  for k in [k for k in out if k.startswith("acc:") and not k.endswith("/a0")]:
    base = out.get(k.rsplit("/a", 1)[0] + "/a0", {})
    out["gain:" + k[4:]] = {s: v - base[s] for s, v in out[k].items() if s in base}
  return dict(out)


def supervised(data) -> list[str]:
  """Supervised settings without α ("mlp/n1000/p0.3") that have plain dropout and some R-Drop run."""
  base = {k[4:].rsplit("/a", 1)[0] for k in data if k.startswith("acc:") and "/n" in k and k.endswith("/a0")}
  return sorted(b for b in base if any(k.startswith(f"acc:{b}/a") and not k.endswith("/a0") for k in data))


def claims(data) -> list[C.Claim]:
  sup, out = supervised(data), []
  for s in sup:
    out.append(C.Claim(f"1 {s}", f"R-Drop (α = 4) shrinks the consistency gap KL(P̄‖P0) ({s})", "paired",
                       f"kl:{s}/a4", f"kl:{s}/a0", direction="<", family="consistency", digits=4))
    out += [C.Claim(f"2 {s} α{a}", f"Test accuracy with R-Drop α = {a} is not below plain dropout (non-inferiority, "
                    f"margin {NONINFERIORITY * 100:g} point) ({s})", "paired", f"acc:{s}/a{a}", f"acc:{s}/a0",
                    margin=-NONINFERIORITY, family="accuracy", scale=100) for a in (1, 4) if f"acc:{s}/a{a}" in data]
  for model in sorted({s.split("/")[0] for s in sup}):
    mine = [s for s in sup if s.startswith(model + "/") and f"gain:{s}/a4" in data]
    low = min(mine, key=lambda s: (int(s.split("/")[1][1:]), -float(s.split("/")[2][1:])), default=None)
    out += [C.Claim(f"3 {model} {o}", f"The α = 4 gain is larger at low data / high dropout ({low}) than at {o}",
                    "paired", f"gain:{low}/a4", f"gain:{o}/a4", family="regime", scale=100) for o in mine if o != low]
  for lab in sorted({k.split("/")[1] for k in data if "/lab" in k}):
    s = f"mlp/{lab}"
    out.append(C.Claim(f"4 {lab}", f"Semi-supervised ({lab[3:]} labels): the KL-only term on unlabelled data beats "
                       "labelled-only plain training (Su, 1% labels: +1.44 valid, +0.80 test)", "paired",
                       f"acc:{s}/semi/p0.3/a0", f"acc:{s}/only/p0.3/a0", family="semi", scale=100))
  for s in sup:
    if f"acc:{s}/a64" in data:
      out += [C.Claim(f"5 {s} ce", f"Too large an α under-fits: train CE at α = 64 above α = 4 ({s})", "paired",
                      f"ce:{s}/a64", f"ce:{s}/a4", family="underfit", digits=3),
              C.Claim(f"5 {s} acc", f"Too large an α under-fits: test accuracy at α = 64 below α = 4 ({s})",
                      "paired", f"acc:{s}/a64", f"acc:{s}/a4", direction="<", family="underfit", scale=100)]
  return out


# ------------------------------------------------------------------------------------------- Tables + plots.


def _cell(data, name, scale=100.0, digits=1) -> str:
  return stats.Stat(list(data.get(name, {}).values())).fmt(scale, digits)


def alphas_of(data, s) -> list[float]:
  return sorted(float(k.rsplit("/a", 1)[1]) for k in data if k.startswith(f"acc:{s}/a"))


def table_supervised(data) -> str:
  rows = []
  for s in supervised(data):
    for a in alphas_of(data, s):
      k = f"{s}/a{a:g}"
      rows.append(s.split("/") + [f"{a:g}", _cell(data, f"acc:{k}"), _cell(data, f"kl:{k}", 1e3, 2),
                                  _cell(data, f"dis:{k}", 100, 2), _cell(data, f"ce:{k}", 1, 3),
                                  len(data.get(f"acc:{k}", {}))])
  return R.table(["model", "train size", "dropout", "α", "test acc %", "KL(P̄‖P0) ×10⁻³", "disagree %",
                  "final train CE", "seeds"], rows)


def table_semi(data) -> str:
  rows = []
  for lab in sorted({k.split("/")[1] for k in data if "/lab" in k}, key=lambda x: int(x[3:])):
    s = f"mlp/{lab}"
    rows.append([lab[3:], _cell(data, f"acc:{s}/only/p0.3/a0"), _cell(data, f"acc:{s}/only/p0.3/a4"),
                 _cell(data, f"acc:{s}/semi/p0.3/a0")])
  return R.table(["labels", "labelled only, plain", "labelled only, R-Drop α=4", "+ unlabelled KL (Su)"], rows)


def table_published(data) -> str:
  rows = [["Su (kexue.fm/archives/8496)", f"{t}, {m}", f"{b:.2f}", f"{r:.2f}", f"{r - b:+.2f}"]
          for t, m, b, r in published.SU_SUPERVISED]
  for s in supervised(data):
    if f"acc:{s}/a4" in data:
      g = stats.Stat(list(data.get(f"gain:{s}/a4", {}).values()))
      rows.append(["ours", f"MNIST-1D {s}, α=4, accuracy %", _cell(data, f"acc:{s}/a0"), _cell(data, f"acc:{s}/a4"),
                   g.fmt(100, 2)])
  rows += [["Su, semi-supervised 1% labels", f"sentiment {sp}, accuracy %", f"{sup:.2f}", f"{rd:.2f}",
            f"{rd - sup:+.2f} (VAT {vat:.2f})"] for sp, sup, vat, rd in published.SU_SEMI]
  return R.table(["source", "task", "baseline", "R-Drop", "gain"], rows)


def plots(data, out_dir) -> list[str]:
  sup = supervised(data)
  if not sup:
    return []
  fig, ax = R.figure(1, 3)
  for s in sup:
    al = alphas_of(data, s)
    for axis, metric, sc in ((ax[0, 0], "acc", 100), (ax[0, 1], "kl", 1), (ax[0, 2], "ce", 1)):
      st = [stats.Stat(list(data.get(f"{metric}:{s}/a{a:g}", {}).values())) for a in al]
      axis.errorbar(al, [x.mean * sc for x in st], yerr=[x.std * sc for x in st], marker="o", capsize=3, label=s)
  for axis, label in zip(ax[0], ("test accuracy %", "KL(P̄‖P0)", "final train CE (dropout on)")):
    axis.set(xlabel="α (0: plain dropout)", ylabel=label, xscale="symlog")
  ax[0, 1].set_yscale("log")
  return [R.save(fig, out_dir, "fig_supervised.png")]


def write_report(records, extras, out_dir: str, meta: dict) -> str:
  del extras
  data = samples(records)
  verdicts = C.judge_all(claims(data), data)
  os.makedirs(out_dir, exist_ok=True)
  figs = plots(data, out_dir)
  failed = [f"- `{r['name']}`: {r['error'][:200]}" for r in records if r.get("error")]
  text = R.fill(os.path.join(os.path.dirname(__file__), "report_template.md"), dict(
      runs=len(records), seeds=sorted({r["seed"] for r in records}), rules=R.RULES,
      checklist=R.checklist(verdicts, data if meta.get("legacy") else None), failed="\n".join(failed) or "none",
      supervised=table_supervised(data), semi=table_semi(data), published=table_published(data),
      plots="\n\n".join(f"![{p}]({p})" for p in figs), footer=R.footer(meta),
      mean_run_s=f"{np.mean([r.get('wall_time_s', 0) for r in records]):.1f}" if records else "—"))
  path = os.path.join(out_dir, "REPORT.md")
  with open(path, "w") as f:
    f.write(text)
  return path
