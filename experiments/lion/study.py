r"""Lion and Tiger against AdamW (issue #19): Su's and the Lion paper's claims on the byte LM and MNIST-1D.

  python -m experiments lion --workdir W --processes 2    # default: CPU, <= 30 min on 2 cores
  python -m experiments lion --workdir W --scale full     # accelerator: longer runs, more seeds, finer grids
  python -m experiments lion --workdir W --scale tiny     # smoke test (< 2 min)

The plan (grids: configs/lion/_sweeps.py), the claims (test, margin, minimum n: declared before any run) and the
tables. The setup, Su's setting and the published numbers are prose in report_template.md.
"""
from __future__ import annotations

import collections
import math
import os

import numpy as np

from experiments import stats
from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.framework import report as R
from kexue_jax import config_lib

LM, CLS = "configs/lion/byte_lm.py", "configs/lion/mnist1d.py"
SWEEPS = config_lib.load_sibling(os.path.join(launcher.REPO, LM), "_sweeps.py")   # grids per scale, settings()
SCALES, TRANSFER, AMOS_A0 = SWEEPS.SCALES, SWEEPS.TRANSFER, SWEEPS.AMOS_A0
EVAL_SEQS = 512                # held-out sequences per LM evaluation, whatever the batch
EMB_CKPTS = 5                  # checkpoints of an anomaly run (its row-max curve)
# Wall s of a default run (--dry_run), from the committed default's records (load 11-13, one process): 11.5 s
# + STEP_S[batch] a step + 1.5 s per checkpoint read back; MNIST-1D (2500 MLP steps): 11-19 s in the R-Drop
# study's records, 14.7 s CPU measured. --processes 2 halves the sum: a run's process keeps ~1 core busy (26.5 s
# CPU for a batch-16 150-step run whose committed wall time was 27-33 s).
OVERHEAD_S, STEP_S, CKPT_S, CLS_S = 11.5, {4: 0.021, 8: 0.06, 16: 0.125, 32: 0.25, 64: 0.5, 128: 1.0}, 1.5, 15.0
LR_BAND = (math.log10(3.0), 1.0)   # the transfer rule's 3-10x, as log10 ratios
TIGER_MARGIN = 0.05                # nats of eval loss: "Tiger ≈ Lion" (declared)
BEST_MARGIN = 0.02                 # nats: "Lion matches or beats AdamW" (non-inferiority, declared)
CLS_MARGIN = 0.01                  # test error (1 point): the same on MNIST-1D


def amos_hp(alpha0: float) -> tuple[float, float]:
  """(lr, λ) of Su's recipe for the byte LM's embedding width d = 128 (σ = 1/√d, as configs/lion/byte_lm.py)."""
  from kexue_jax import optim  # pylint: disable=g-import-not-at-top
  hp = optim.amos_lion_hparams(alpha0, 128 ** -0.5)
  return hp["learning_rate"], hp["weight_decay"]


LABELS = dict(lr=None, wd=None, batch=16, steps=0, untied=False, fix="none", accum=1, amos=0.0, emb=False)


def _run(scale: str, kw: dict, seed: int) -> launcher.Run:
  """A setting and seed as a run: name and config string from its arguments, the scale's overrides."""
  tiny, labels = scale == "tiny", dict(LABELS, **kw, seed=seed)
  if kw.get("task") == "mnist1d":
    arg = "opt={opt},lr={lr:g},wd={wd:g},seed={seed}".format(**labels) + ",runlocal" * tiny
    return launcher.Run("mnist1d_" + launcher.slug(arg), f"{CLS}:{arg}", dict(labels, batch=40),
                        8.0 if tiny else CLS_S)
  arg, b, steps = SWEEPS.run_arg(**labels) + ",runlocal" * tiny, labels["batch"], labels["steps"]
  ov = (("checkpoint_every_steps=2", "eval_every_steps=4", "num_eval_batches=2") if tiny else
        (f"data.seq_len={SCALES[scale]['seq']}", f"eval_every_steps={steps}", "max_checkpoints_to_keep=0",
         f"checkpoint_every_steps={steps // (EMB_CKPTS if labels['emb'] else 1)}",
         f"num_eval_batches={EVAL_SEQS // b}", f"log_every_steps={max(steps // 20, 1)}"))
  est = (8.0 if tiny else 20.0 + 0.01 * steps * b / 16 if scale == "full" else
         OVERHEAD_S + steps * STEP_S[b] + CKPT_S * EMB_CKPTS * labels["emb"])
  return launcher.Run(launcher.slug(arg), f"{LM}:{arg}", labels, est, overrides=ov)


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  return launcher.seed_major(SWEEPS.settings(scale), seeds, lambda kw, seed: _run(scale, kw, seed))


def evaluate(run, config, run_dir: str, record: dict) -> dict:
  """Applied lr / λ, training tokens; from the checkpoints: optimizer-state and parameter bytes, the bytes seen in
  training (a nonzero optimizer-state row of the input embedding) and, for anomaly runs, every checkpoint's
  per-row max |θ| (kexue_jax.optim.embedding_row_max_abs) and mean |θ| of the input embedding."""
  import jax  # pylint: disable=g-import-not-at-top
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from kexue_jax import optim  # pylint: disable=g-import-not-at-top
  out = dict(lr=float(config.optimizer.learning_rate), wd=float(config.optimizer.weight_decay))
  steps = checkpoint.saved_steps(run_dir)
  if run.labels.get("task") or "error" in record or not steps:
    return out
  out.update(tokens=int(config.num_train_steps * config.batch_size * config.data.seq_len), embedding=[])
  for step in steps if run.labels.get("emb") else steps[-1:]:
    state, _ = checkpoint.load_state(run_dir, step)
    row_max = optim.embedding_row_max_abs({"embed": state["params"]["embed"]})["embed/embedding"]
    row_mean = np.abs(np.asarray(state["params"]["embed"]["embedding"], np.float64)).mean(1)
    out["embedding"].append({"step": step, "max": np.round(np.asarray(row_max, np.float64), 5).tolist(),
                             "mean": np.round(row_mean, 5).tolist()})
  table = state["params"]["embed"]["embedding"]
  opt_leaves = jax.tree_util.tree_flatten_with_path(state["opt_state"])[0]
  seen = np.zeros(table.shape[0], bool)
  for path, x in opt_leaves:
    if "embed" in jax.tree_util.keystr(path) and getattr(x, "shape", None) == table.shape:
      seen |= np.any(np.asarray(x) != 0, axis=1)
  return dict(out, state_bytes=int(sum(x.nbytes for _, x in opt_leaves if hasattr(x, "nbytes"))),
              param_bytes=int(sum(x.nbytes for x in jax.tree.leaves(state["params"]))),
              seen=np.flatnonzero(seen).tolist())


def extras(workdir: str, scale: str = "default") -> dict:
  """Byte counts of the training split (rare vs frequent bytes of the anomaly claims)."""
  del workdir, scale
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  source = pipeline.get_data_source("python_stdlib_text", "train")
  counts = np.zeros(256, np.int64)
  for i in range(len(source)):
    counts += np.bincount(np.frombuffer(source[i]["text"], np.uint8), minlength=256)
  return {"byte_counts": counts.tolist()}


def key(r: dict) -> str:
  """A setting's name (everything but the seed), e.g. "lion/lr0.0003/wd0.3/b16", "mnist1d/lion/lr0.001/wd0.3"."""
  if r.get("task"):
    return f"{r['task']}/{r['opt']}/lr{r['lr']:g}/wd{r['wd']:g}"
  hp = f"amos{r['amos']:g}" if r.get("amos") else f"lr{r['lr']:g}/wd{r['wd']:g}"
  extra = "/untied" * bool(r.get("untied")) + (f"/{r['fix']}" if r.get("fix", "none") != "none" else "")
  return f"{r['opt']}/{hp}/b{r['batch']}" + (f"x{r['accum']}" if r.get("accum", 1) > 1 else "") + extra


def _loss(r: dict) -> float:
  """Held-out loss of an LM run; test error (1 - accuracy) of a classifier run (a run that did not fail)."""
  return 1.0 - float(r["eval"].get("accuracy", np.nan)) if r.get("task") else float(r["eval"].get("loss", np.nan))


def byte_groups(counts, tokens: float, seen=None) -> dict[str, np.ndarray]:
  """Bytes by expected occurrences in a run's training tokens: rare <= 50 and seen in training (stale for most
  steps), frequent >= 500 (a gradient nearly every step), absent (never in the corpus: no gradient at all)."""
  expected = np.asarray(counts, float) / max(np.sum(counts), 1) * tokens
  was_seen = np.zeros(len(expected), bool)
  was_seen[list(range(len(expected)) if seen is None else seen)] = True
  return {"rare": np.flatnonzero((expected > 0) & (expected <= 50) & was_seen),
          "frequent": np.flatnonzero(expected >= 500), "absent": np.flatnonzero(expected == 0)}


def best_log_lr(points: dict[float, float]) -> float:
  """argmin over log10 lr of the loss: the parabola through the grid minimum and its neighbours (the grid
  point itself at an edge of the grid or when the parabola is not convex)."""
  lrs = sorted(k for k, v in points.items() if np.isfinite(v))
  if not lrs:
    return float("nan")
  x, y = np.log10(lrs), np.array([points[k] for k in lrs])
  i = int(np.argmin(y))
  if 0 < i < len(x) - 1:
    a, b, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
    if a > 0:
      return float(np.clip(-b / (2 * a), x[i - 1], x[i + 1]))
  return float(x[i])


def _sweeps(out, runs, pre: str) -> None:
  """Per seed: best log10 lr (λ) at the other fixed at its transfer value, whether it sits on a grid edge, the best
  loss of the lr sweep; the per-seed log10 ratios AdamW/Lion (lr) and Lion/AdamW (λ). ``pre``: "" LM, "cls_"."""
  for o in ("lion", "adamw"):
    mine = [r for r in runs if r["opt"] == o]
    for s in sorted({r["seed"] for r in mine}):
      for n, fixed, other in (("lr", "wd", 1), ("wd", "lr", 0)):
        pts = {r[n]: _loss(r) for r in mine if r["seed"] == s and r[fixed] == TRANSFER[o][other]}
        if len(pts) >= 3:
          out[f"{pre}log{n}:{o}"][s] = best = best_log_lr(pts)
          out[f"{pre}edge{n}:{o}"][s] = float(best in np.log10([min(pts), max(pts)]))
          if n == "lr":
            out[f"{pre}bestloss:{o}"][s] = np.nanmin(list(pts.values()))
  for n, (a, b) in (("lr", ("adamw", "lion")), ("wd", ("lion", "adamw"))):
    out[f"{pre}ratio_{n}"] = stats.diff(out.get(f"{pre}log{n}:{a}", {}), out.get(f"{pre}log{n}:{b}", {}))


def samples(records, counts=None) -> dict[str, dict]:
  """{name: {unit: value}}: loss:<setting> by seed; the sweeps' per-seed bests and ratios (LM, "cls_" MNIST-1D);
  the batch gap; per-byte row mean |θ| of the anomaly runs' last checkpoint (unit "seed/byte")."""
  out: dict[str, dict] = collections.defaultdict(dict)
  ok = R.finished(records)
  for r in ok:
    out[f"loss:{key(r)}"][r["seed"]] = _loss(r)
  _sweeps(out, _sweep_runs(ok), "")
  _sweeps(out, _sweep_runs(ok, "mnist1d"), "cls_")
  gaps = collections.defaultdict(dict)   # {seed: {log2 batch: Lion − AdamW}}: claim 2b's slope per seed
  for b in sorted({r["batch"] for r in ok if r["accum"] == 1 and not r.get("task")}):
    out[f"gap:b{b}"] = stats.diff(out.get(f"loss:{_at('lion', b)}", {}), out.get(f"loss:{_at('adamw', b)}", {}))
    for seed, g in out[f"gap:b{b}"].items():
      gaps[seed][math.log2(b)] = g
  out["gap_slope"] = stats.slopes(gaps)
  for r in [r for r in ok if r["emb"] and r.get("embedding")] if counts is not None else []:
    g, row_mean = byte_groups(counts, r["tokens"], r.get("seen")), r["embedding"][-1]["mean"]
    for grp in ("rare", "frequent"):
      out[f"row:{key(r)}:{grp}"].update({f"{r['seed']}/{i}": float(row_mean[i]) for i in g[grp]})
  return {k: dict(v) if isinstance(v, dict) else v for k, v in out.items() if len(v)}


def _at(o: str, b: int = 16) -> str:
  """The setting key of an optimizer at its transfer point."""
  return "{}/lr{:g}/wd{:g}/b{}".format(o, *TRANSFER[o], b)


def _emb_keys(scale: str = "default") -> dict[str, str]:
  """Setting keys of the anomaly arm: lion, tiger, adamw (untied), lazy, emb_adamw, tied."""
  e = SCALES[scale]["emb"]
  lion = f"lion/lr{e['lr']:g}/wd{e['wd']:g}/b{e['batch']}"
  return dict(lion=lion + "/untied", tiger=lion.replace("lion", "tiger", 1) + "/untied",
              adamw=_at("adamw", e["batch"]) + "/untied", lazy=lion + "/untied/lazy",
              emb_adamw=lion + "/untied/emb_adamw", tied=lion)


def claims(small: int = 4, scale: str = "default") -> list[C.Claim]:
  """Declared before the runs: test, direction, margin and minimum n of every claim (LM: eval loss in nats/byte;
  MNIST-1D: test error; anomaly: mean |θ| of a byte's input-embedding row at the last checkpoint: a stale row
  moves as a block, every entry toward ±1/λ, while a frequent row's largest entries can grow too). ``small``: the
  smallest batch measured."""
  ek, lam = _emb_keys(scale), SCALES[scale]["emb"]["wd"]
  band = dict(direction="~", margin=(LR_BAND[1] - LR_BAND[0]) / 2, reference=sum(LR_BAND) / 2)
  below = lambda margin: dict(direction="<", margin=-margin, digits=3)   # non-inferiority: a - b < margin
  same, loss = dict(direction="~", margin=TIGER_MARGIN, digits=3), dict(digits=3)
  rows = dict(unit="bytes", digits=3)
  row = lambda arm, grp="rare": f"row:{ek[arm]}:{grp}"
  families = {  # family: [(id, text, test, a, b, options)]
      "transfer": [
          ("1a", "Lion's best lr is 3-10x smaller than AdamW's (per-seed log10 ratio of the interpolated best lrs "
           "within [log 3, log 10])", "one_sample", "ratio_lr", None, band),
          ("1b", "Lion's best λ is 3-10x larger than AdamW's (log10 ratio within [log 3, log 10])", "one_sample",
           "ratio_wd", None, band),
          ("1c", f"At their best lrs Lion matches or beats AdamW (non-inferiority margin {BEST_MARGIN})", "paired",
           "bestloss:lion", "bestloss:adamw", below(BEST_MARGIN))],
      "classifier": [
          ("1d", "MNIST-1D (MLP): Lion's best lr is 3-10x smaller than AdamW's (as 1a)", "one_sample",
           "cls_ratio_lr", None, band),
          ("1e", f"MNIST-1D: at their best lrs Lion's test error is at most {CLS_MARGIN:.0%} above AdamW's",
           "paired", "cls_bestloss:lion", "cls_bestloss:adamw", below(CLS_MARGIN))],
      "batch": [
          ("2a", f"Lion is worse than AdamW at small batch ({small}): loss Lion − AdamW > 0", "paired",
           f"loss:{_at('lion', small)}", f"loss:{_at('adamw', small)}", loss),
          ("2b", "The Lion − AdamW gap closes or reverses as the batch grows (slope on log2 batch < 0, fixed number "
           "of examples; one slope per seed)", "one_sample", "gap_slope", None,
           dict(direction="<", reference=0.0, digits=3))],
      "tiger": [
          ("3a", f"Tiger ≈ Lion in loss at the same lr and λ (equivalence ±{TIGER_MARGIN})", "paired",
           f"loss:{_at('tiger')}", f"loss:{_at('lion')}", same),
          ("3b", f"Tiger's in-momentum accumulation (batch 4 x 4) ≈ Tiger at batch 16 (±{TIGER_MARGIN})", "paired",
           f"loss:{_at('tiger', 4)}x4", f"loss:{_at('tiger')}", same)],
      "anomaly": [
          ("4a", f"Under Lion (untied, λ {lam:g}) rows of rare bytes end larger than frequent rows (row mean |θ|)",
           "welch", row("lion"), row("lion", "frequent"), rows),
          ("4b", "Under Tiger (untied) too", "welch", row("tiger"), row("tiger", "frequent"), rows),
          *[(f"4{i}", f"{text}: rare rows' mean |θ| below untied Lion's (paired by byte)", "paired", row(arm),
             row("lion"), dict(rows, direction="<")) for i, arm, text in (
                 ("c", "adamw", "AdamW (untied, its own lr and λ) does not"), ("d", "lazy", "Fix (a) lazy row updates"),
                 ("e", "emb_adamw", "Fix (c) AdamW for the embeddings"), ("f", "tied", "Fix (b) tied embeddings"))],
          ("4g", f"Under Lion the rare rows travel over half way to Su's ±1/λ (row mean |θ| > {0.5 / lam:g})",
           "one_sample", row("lion"), None, dict(rows, reference=0.5 / lam))],
      "amos": [
          ("5a", f"Su's Amos recipe (α0 = {AMOS_A0:g}: lr = α0·σ, λ = α0/(2σ)) is not worse than Lion at its best lr "
           f"(non-inferiority {BEST_MARGIN})", "paired", f"loss:lion/amos{AMOS_A0:g}/b16", "bestloss:lion",
           below(BEST_MARGIN)),
          ("5b", "The Amos λ is within 3x of Lion's measured best λ (log10)", "one_sample", "logwd:lion", None,
           dict(direction="~", margin=math.log10(3.0), reference=math.log10(amos_hp(AMOS_A0)[1])))]}
  return [C.Claim(i, text, test, a, b, family=family, **options)
          for family, table in families.items() for i, text, test, a, b, options in table]


EDGE_CLAIMS = {"1a": ("edgelr:lion", "edgelr:adamw"), "1b": ("edgewd:lion", "edgewd:adamw"),
               "1d": ("cls_edgelr:lion", "cls_edgelr:adamw"), "5b": ("edgewd:lion",)}


def edge_vetoes(data) -> dict[str, str]:
  """The claims on a per-seed best lr or λ are inconclusive when any seed's best sits at a grid edge: there the
  grid only bounds the optimum (a grid-valued unit, not a measurement)."""
  return {c: "best at the grid edge: extend the grid" for c, names in EDGE_CLAIMS.items()
          if any(any(data.get(n, {}).values()) for n in names)}


def _cell(data, name, digits=3) -> str:
  return stats.cell(data.get(name), 1, digits)


def _sweep_runs(records, task=None) -> list[dict]:
  """The lr / λ sweeps' runs: batch-16 LM runs of the plain model, or the classifier's."""
  return R.finished(records, task=task) if task else R.finished(records, task=None, batch=16, untied=False,
                                                               emb=False, accum=1, amos=0.0)


def table_sweep(records, data, task=None) -> str:
  rows = sorted({(r["opt"], r["lr"], r["wd"], key(r)) for r in _sweep_runs(records, task)})
  return R.table(["optimizer", "peak lr", "λ", "lr·λ", "test error" if task else "eval loss (nats/byte)", "seeds"],
                 [[o, f"{lr:g}", f"{wd:g}", f"{lr * wd:.1e}", _cell(data, f"loss:{k}"), len(data.get(f"loss:{k}", {}))]
                  for o, lr, wd, k in rows])


def table_best(data, pre="") -> str:
  """Best lr / λ per optimizer (geometric mean over seeds of the interpolated bests), their ratios."""
  if f"{pre}loglr:lion" not in data:
    return "not measured (no lr sweep of 3 or more points)"
  rows = []
  for o in ("lion", "adamw"):
    best = {n: 10 ** stats.Stat.of(data.get(f"{pre}log{n}:{o}")).mean for n in ("lr", "wd")}
    cell = {n: f"{v:.2g}" + (f" (grid edge in {int(sum(e.values()))} of {len(e)} seeds)" if sum(
        (e := data.get(f"{pre}edge{n}:{o}", {})).values()) else "") for n, v in best.items()}
    rows.append([o, cell["lr"], cell["wd"], f"{best['lr'] * best['wd']:.1e}", _cell(data, f"{pre}bestloss:{o}")])
  ratio = lambda n: stats.Stat([10 ** v for v in data.get(f"{pre}ratio_{n}", {}).values()]).fmt(1, 1)
  return R.table(["", "best lr", "best λ", "lr·λ", "at the best lr"],
                 rows + [["AdamW / Lion (lr), Lion / AdamW (λ)", ratio("lr"), ratio("wd"), "", ""]])


def table_batch(records, data) -> str:
  rows = [[b, next(r["steps"] for r in R.finished(records, batch=b, opt="lion")), _cell(data, f"loss:{_at('lion', b)}"),
           _cell(data, f"loss:{_at('adamw', b)}"), _cell(data, f"gap:b{b}")]
          for b in sorted({r["batch"] for r in R.finished(records, accum=1)}) if f"loss:{_at('lion', b)}" in data]
  return R.table(["batch", "steps", "Lion (3e-4, λ 0.3)", "AdamW (1e-3, λ 0.03)", "Lion − AdamW"], rows)


def state_check(records, data) -> tuple[str, str]:
  """Optimizer-state / parameter bytes (from the checkpoints) of Lion, Tiger (also accumulating), AdamW: a
  deterministic check (exact up to scalar counters), not a statistical claim."""
  rows = [[name, _cell(data, f"loss:{k}"), f"{r['state_bytes']:,}", f"{r['param_bytes']:,}",
           f"{r['state_bytes'] / r['param_bytes']:.4f}"]
          for name, k in (("lion", _at("lion")), ("tiger", _at("tiger")), ("adamw", _at("adamw")),
                          ("tiger, accumulating 4", _at("tiger", 4) + "x4"))
          for r in [r for r in R.finished(records, untied=False) if key(r) == k and r.get("state_bytes")][:1]]
  ok = len(rows) == 4 and all(abs(float(x[-1]) - (2 if x[0] == "adamw" else 1)) < 1e-3 for x in rows)
  line = (f"**{R.MARK[C.HOLDS if ok else C.FAILS]}** — one parameter-sized buffer for Lion and Tiger (with and "
          "without accumulation), two for AdamW: state / parameter bytes within 0.1% of 1 and 2") if rows else \
      "not measured (no checkpoints)"
  return line, R.table(["optimizer", "eval loss", "state bytes", "parameter bytes", "state / params"], rows)


def _group_curve(r, counts, grp, stat="max") -> list[tuple[int, float]]:
  """(step, mean over the group's bytes of the row max (mean) |θ|) at every checkpoint of an anomaly run."""
  g = byte_groups(counts, r["tokens"], r.get("seen"))[grp]
  return [(e["step"], float(np.mean(np.asarray(e[stat])[g]))) for e in r["embedding"]] if len(g) else []


def table_embedding(records, counts) -> str:
  rows = []
  for r in [r for r in R.finished(records, emb=True) if r.get("embedding")]:
    c = {(g, st): _group_curve(r, counts, g, st) for g in ("rare", "frequent", "absent") for st in ("mean", "max")}
    end = lambda g, st, f=1.0: f"{f * c[g, st][-1][1]:.3f}" if c[g, st] else "—"
    path = lambda g: " → ".join(f"{v:.2f}" for _, v in c[g, "max"])
    rows.append([key(r), r["seed"], r["steps"], f"{r['lr'] * r['wd'] * r['steps']:.1f}",
                 len(byte_groups(counts, r["tokens"], r.get("seen"))["rare"]), end("rare", "mean"),
                 end("frequent", "mean"), end("absent", "mean"), end("rare", "mean", r["wd"]), end("rare", "max"),
                 end("frequent", "max"), path("rare"), path("frequent")])
  return R.table(["run", "seed", "steps", "peak lr·λ·steps", "rare bytes", "mean abs(θ): rare", "frequent", "absent",
                  "λ·mean, rare (1 = ±1/λ)", "max abs(θ): rare", "frequent", "max abs(θ), rare, checkpoint by "
                  "checkpoint", "frequent"], rows)


def table_amos(records, data) -> str:
  rows = [[f"{a:g}", f"{r['lr']:.2g}", f"{r['wd']:.2g}", _cell(data, f"loss:{key(r)}")]
          for a, r in sorted({r["amos"]: r for r in R.finished(records) if r["amos"]}.items())]
  return R.table(["α0", "lr = α0·σ", "λ = α0/(2σ)", "eval loss"],
                 rows + [["Lion's sweep, best lr per seed", "", "", _cell(data, "bestloss:lion")]])


def plots(records, data, counts, out_dir) -> list[str]:
  """lr sweeps (LM, MNIST-1D), the batch gap, the anomaly runs' row-max curves (seed 0)."""
  fig, ax = R.figure(2, 2)
  for a, task, label in ((ax[0, 0], None, "eval loss"), (ax[1, 1], "mnist1d", "MNIST-1D test error")):
    for i, o in enumerate(("lion", "adamw")):
      if pts := sorted((r["lr"], _loss(r)) for r in _sweep_runs(records, task) if r["opt"] == o and
                       r["wd"] == TRANSFER[o][1]):
        a.plot(*zip(*pts), "o", color=f"C{i}", alpha=0.6, label=o)
    a.set(xscale="log", xlabel="peak lr (λ: Lion 0.3, AdamW 0.03)", ylabel=label)
  for b in sorted(k for k in data if k.startswith("gap:b")):
    ax[0, 1].plot([int(b[5:])] * len(data[b]), list(data[b].values()), "o", color="C0")
  ax[0, 1].axhline(0, color="gray", ls=":")
  ax[0, 1].set(xscale="log", xlabel="batch (fixed examples)", ylabel="eval loss Lion − AdamW")
  for i, r in enumerate(r for r in R.finished(records, emb=True, seed=0) if r.get("embedding") and counts is not None):
    for grp, ls in (("rare", "-"), ("frequent", ":")):
      if c := _group_curve(r, counts, grp):
        ax[1, 0].plot(*zip(*c), ls, color=f"C{i}", label=f"{key(r)} ({grp})")
  ax[1, 0].set(xlabel="step", ylabel="input-embedding row max|θ| (group mean)")
  return [R.save(fig, out_dir, "fig_lion.png")]


def write_report(records, extras_, out_dir: str, meta: dict) -> str:
  counts = extras_.get("byte_counts")
  data = samples(records, counts)
  small = min((r["batch"] for r in records if r.get("accum", 1) == 1 and not r.get("task")), default=4)
  steps = max((r["steps"] for r in records if r.get("batch") == 16 and not (r.get("task") or r.get("emb"))), default=0)
  scale = {v["steps"]: k for k, v in SCALES.items()}.get(steps, "default")   # a scale is known by its LM steps
  state_line, state_table = state_check(records, data)
  return R.write(__file__, out_dir, meta, C.judge_all(claims(small, scale), data, vetoes=edge_vetoes(data)),
                 records, plots(records, data, counts, out_dir) if records else [], state_check=state_line,
                 state=state_table, steps=steps, sweep=table_sweep(records, data), best=table_best(data),
                 batch=table_batch(records, data), cls_sweep=table_sweep(records, data, "mnist1d"),
                 cls_best=table_best(data, "cls_"), amos=table_amos(records, data),
                 embedding=table_embedding(records, counts) if counts is not None else "not measured (no byte counts)")
