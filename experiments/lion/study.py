r"""Lion and Tiger against AdamW (issue #19): Su's and the Lion paper's claims on the built-in byte LM.

  python -m experiments lion --workdir /tmp/kexue/lion --processes 2    # default: 56 runs, <= 30 min on 2 CPUs
  python -m experiments lion --workdir W --scale full                    # accelerator: 2000 steps, 5 seeds
  python -m experiments lion --workdir W --scale tiny                    # smoke test (< 2 min)

Every run is configs/lion/byte_lm.py with one argument string (grids from configs/lion/_sweeps.py) and the scale's
sequence length / evaluation / checkpoint cadence as run overrides. Parts (sources: kexue.fm/archives/9473, 9512,
9736; arXiv 2302.06675; the github.com/google/automl lion README):
  lr      lr sweep of Lion (λ 0.3) and AdamW (λ 0.03), `seeds` seeds: best lr per seed -> the lr ratio; Lion vs
          AdamW at their bests;
  wd      λ sweep at the transfer lrs (Lion 3e-4, AdamW 1e-3), `wd_seeds` seeds: best λ -> the λ ratio;
  batch   both at the transfer point, batch 4 .. 64 at a fixed number of examples, `seeds` seeds;
  tiger   Tiger at Lion's setting (`seeds`), and Tiger with in-momentum accumulation (batch 4 x 4);
  emb     untied embeddings (rare bytes' input rows get no gradient) under Lion / Tiger / AdamW, Su's three fixes
          (lazy rows, AdamW for embeddings, tied); rows' mean / max |θ| from every checkpoint (evaluate());
  amos    Su's λ = α0/(2σ), lr = α0·σ (σ = 1/√d of the embedding width).
Claims, tests and margins are declared in claims() before any run. Prose: report_template.md.
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
from experiments.lion import published
from kexue_jax import config_lib

CONFIG = "configs/lion/byte_lm.py"
TRANSFER = {"lion": (3e-4, 0.3), "adamw": (1e-3, 0.03), "tiger": (3e-4, 0.3)}   # byte_lm.DEFAULTS
EMB_LR, EMB_WD = 1e-3, 1.0     # anomaly runs: drift lr per step must beat the init scale (~0.07) within T steps
EVAL_SEQS = 512                # held-out sequences per evaluation, whatever the batch
SWEEPS = config_lib.load_sibling(os.path.join(launcher.REPO, CONFIG), "_sweeps.py")   # the configs' grids
SCALES = {  # steps at batch 16, sequence length, headline seeds, λ-sweep seeds, grids
    "default": dict(steps=150, seq=64, seeds=3, wd_seeds=1, batches=(4, 16, 64), amos=(3e-3, 1e-2),
                    lion_lrs=SWEEPS.LION_LRS, adamw_lrs=SWEEPS.ADAMW_LRS, lion_wds=(0.03, 0.3, 3.0),
                    adamw_wds=(0.003, 0.03, 0.3)),
    "full": dict(steps=2000, seq=128, seeds=5, wd_seeds=3, batches=(4, 8, 16, 32, 64, 128), amos=(3e-3, 1e-2, 3e-2),
                 lion_lrs=SWEEPS.LION_LRS, adamw_lrs=SWEEPS.ADAMW_LRS, lion_wds=SWEEPS.LION_WDS,
                 adamw_wds=SWEEPS.ADAMW_WDS),
    "tiny": dict(steps=4, seq=32, seeds=1, wd_seeds=1, batches=(16,), amos=(3e-3,), lion_lrs=(3e-4,),
                 adamw_lrs=(1e-3,), lion_wds=(0.3,), adamw_wds=(0.03,)),
}
# Wall seconds of one run for --dry_run: OVERHEAD (compile, data, evaluations, checkpoints) + steps x STEP_S[batch],
# measured with `python -m kexue_jax.main --config configs/lion/byte_lm.py:opt=lion,steps=N,batch=B
# --config.data.seq_len=64` on this project's 2-core CPU while other jobs shared it: batch 16, 200 steps, load 3.6:
# 36.8 s in train.run, 0.133 s per step (metrics.jsonl wall times), 10.2 s outside the steps (+ ~1.3 s for
# evaluate()); batch 4 at load 8: 0.03 s per step; batch 64 at load 8: 0.77 s (0.5 assumed at load 3.6, 4x batch 16's
# tokens). An idle machine is faster; --processes 2 halves the wall time again (one process uses < 1 core).
OVERHEAD_S, STEP_S = 11.5, {4: 0.035, 8: 0.07, 16: 0.133, 32: 0.27, 64: 0.5, 128: 1.0}
LR_BAND = (math.log10(3.0), 1.0)   # the transfer rule's 3-10x, as log10 ratios
TIGER_MARGIN = 0.05                # nats of eval loss: "Tiger ≈ Lion" (declared)
BEST_MARGIN = 0.02                 # nats: "Lion matches or beats AdamW" (non-inferiority, declared)
AMOS_A0 = 3e-3                     # the α0 of the Amos claims: lr = α0/√128 ≈ 2.7e-4, Lion's transfer lr


def amos_hp(alpha0: float, width: int = 128) -> tuple[float, float]:
  """(lr, λ) of Su's recipe for the byte LM's embedding width (σ = 1/√d, as configs/lion/byte_lm.py)."""
  from kexue_jax import optim  # pylint: disable=g-import-not-at-top
  hp = optim.amos_lion_hparams(alpha0, width ** -0.5)
  return hp["learning_rate"], hp["weight_decay"]


def run_arg(opt, lr=None, wd=None, batch=16, steps=150, seed=0, untied=False, fix="none", accum=1,
            amos=0.0, emb=False) -> str:
  del emb  # a label of the run (its embedding is tracked at every checkpoint), not a config argument
  parts = [f"opt={opt}"] + ([f"amos_alpha0={amos:g}"] if amos else [f"lr={lr:g}", f"wd={wd:g}"])
  parts += [f"batch={batch}", f"steps={steps}"] + ["untied"] * untied + [f"fix={fix}"] * (fix != "none")
  return ",".join(parts + [f"accum={accum}"] * (accum > 1) + [f"seed={seed}"])


def settings(scale: str) -> list[tuple[dict, int]]:
  """(run_arg keywords, number of seeds) of every setting of a scale; duplicates are merged by plan()."""
  s, t = SCALES[scale], SCALES[scale]["steps"]
  out = [(dict(opt=o, lr=lr, wd=TRANSFER[o][1], steps=t), s["seeds"])
         for o in ("lion", "adamw") for lr in s[f"{o}_lrs"]]
  out += [(dict(opt=o, lr=TRANSFER[o][0], wd=wd, steps=t), s["wd_seeds"]) for o in ("lion", "adamw")
          for wd in s[f"{o}_wds"]]
  out += [(dict(opt=o, lr=TRANSFER[o][0], wd=TRANSFER[o][1], batch=b, steps=t * 16 // b), s["seeds"])
          for b in s["batches"] for o in ("lion", "adamw")]
  out += [(dict(opt="tiger", lr=3e-4, wd=0.3, steps=t), s["seeds"]),
          (dict(opt="tiger", lr=3e-4, wd=0.3, batch=4, accum=4, steps=4 * t), s["seeds"])]
  emb = dict(lr=EMB_LR, wd=EMB_WD, steps=t, emb=True)
  out += [(dict(opt=o, untied=True, **emb), 1) for o in ("lion", "tiger")]
  out += [(dict(opt="adamw", lr=TRANSFER["adamw"][0], wd=TRANSFER["adamw"][1], steps=t, untied=True, emb=True), 1)]
  out += [(dict(opt="lion", untied=True, fix=f, **emb), 1) for f in ("lazy", "emb_adamw")]
  out += [(dict(opt="lion", **emb), 1)]
  out += [(dict(opt="lion", amos=a, steps=t), s["seeds"] if a == AMOS_A0 else 1) for a in s["amos"]]
  if scale == "tiny":  # the smoke test: one run of each kind of record
    out = [(kw, n) for kw, n in out if kw.get("accum", 1) == 1 and kw.get("fix", "none") == "none"
           and not (kw.get("emb") and (kw["opt"] == "tiger" or not kw.get("untied")))]
  return out


def _est(scale: str, kw: dict) -> float:
  if scale != "default":  # assumed: tiny ~8 s a run (runlocal model); full 20 s compile + 10 ms a step
    return 8.0 if scale == "tiny" else 20.0 + 0.01 * kw["steps"] * kw.get("batch", 16) / 16
  return OVERHEAD_S + kw["steps"] * STEP_S[kw.get("batch", 16)]


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  """Seed 0 of every setting first, then the further seeds (an interrupted study still covers every row)."""
  if scale not in SCALES:
    raise ValueError(f"lion scales are {', '.join(SCALES)}; got {scale!r}.")
  runs, seen = [], set()
  for seed in range(max(n for _, n in settings(scale)) if seeds is None else seeds):
    for kw, n in settings(scale):
      arg = run_arg(seed=seed, **kw) + (",runlocal" if scale == "tiny" else "")
      if (seed < n or seeds is not None) and arg not in seen:
        seen.add(arg)
        b, every = kw.get("batch", 16), kw["steps"] // (4 if kw.get("emb") else 1)
        ov = (("checkpoint_every_steps=2", "eval_every_steps=4", "num_eval_batches=2") if scale == "tiny" else
              (f"data.seq_len={SCALES[scale]['seq']}", f"eval_every_steps={kw['steps']}", "max_checkpoints_to_keep=0",
               f"checkpoint_every_steps={every}", f"num_eval_batches={EVAL_SEQS // b}",
               f"log_every_steps={max(kw['steps'] // 20, 1)}"))
        labels = dict(opt=kw["opt"], lr=kw.get("lr"), wd=kw.get("wd"), batch=b, steps=kw["steps"], seed=seed,
                      untied=kw.get("untied", False), fix=kw.get("fix", "none"), accum=kw.get("accum", 1),
                      amos=kw.get("amos", 0.0), emb=kw.get("emb", False))
        runs.append(launcher.Run(arg.replace(",", "_").replace("=", ""), f"{CONFIG}:{arg}", labels,
                                 _est(scale, kw), overrides=ov))
  return runs


# ------------------------------------------------------------------------------------------- Evaluation.


def _init_embedding(config) -> np.ndarray:
  """The run's input embedding at step 0, re-initialised exactly as train.run does (same key split and PRNG)."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from kexue_jax import tasks  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_threefry_partitionable", True)  # as train.run
  init_rng, _ = jax.random.split(jax.random.key(config.seed))
  tokens = jax.numpy.zeros((2, config.data.seq_len + 1), jax.numpy.int32)
  variables = nn.unbox(jax.jit(tasks.get_task(config).init)(init_rng, {"tokens": tokens}))
  return np.asarray(variables["params"]["embed"]["embedding"], np.float64)


def evaluate(run, config, run_dir: str, record: dict) -> dict:
  """Applied lr / λ, the loss curve, optimizer-state bytes, the bytes seen in training, and per row of the input
  embedding at every checkpoint: max |θ| (kexue_jax.optim.embedding_row_max_abs), mean |θ| and the mean
  displacement |θ - θ_0| from the initialisation (sign updates move every entry of a stale row the same way)."""
  import jax  # pylint: disable=g-import-not-at-top
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from kexue_jax import optim  # pylint: disable=g-import-not-at-top
  rows = [m for m in metrics_lib.read_metrics(run_dir) if "train/loss" in m]
  out = dict(lr=float(config.optimizer.learning_rate), wd=float(config.optimizer.weight_decay),
             tokens=int(config.num_train_steps * config.batch_size * config.data.seq_len),
             curve={"step": [int(m["step"]) for m in rows], "loss": [float(m["train/loss"]) for m in rows]})
  ckpts = os.path.join(run_dir, "checkpoints")
  steps = [] if "error" in record or not os.path.isdir(ckpts) else sorted(
      int(p) for p in os.listdir(ckpts) if p.isdigit())
  emb, init = [], _init_embedding(config) if steps and run.labels.get("emb") else None
  for step in steps:
    state, _ = checkpoint.load_state(run_dir, step)
    table = np.asarray(state["params"]["embed"]["embedding"], np.float64)
    row_max = np.asarray(optim.embedding_row_max_abs({"embed": {"embedding": table}})["embed/embedding"])
    emb.append({"step": step, "max": np.round(row_max, 5).tolist(),
                "mean": np.round(np.abs(table).mean(1), 5).tolist()})
    if init is not None:
      emb[-1]["disp"] = np.round(np.abs(table - init).mean(1), 6).tolist()
  if steps:  # bytes seen in training: a nonzero optimizer-state row of the input embedding (momentum, ν)
    opt_leaves = jax.tree_util.tree_flatten_with_path(state["opt_state"])[0]
    seen = np.zeros(table.shape[0], bool)
    for path, x in opt_leaves:
      if "embed" in jax.tree_util.keystr(path) and getattr(x, "shape", None) == table.shape:
        seen |= np.any(np.asarray(x) != 0, axis=1)
    out.update(state_bytes=int(sum(x.nbytes for _, x in opt_leaves if hasattr(x, "nbytes"))),
               param_bytes=int(sum(x.nbytes for x in jax.tree.leaves(state["params"]))), embedding=emb,
               seen=np.flatnonzero(seen).tolist())
  return out


def extras(workdir: str, scale: str = "default") -> dict:
  """Byte counts of the training split (rare vs frequent bytes of the anomaly claims)."""
  del workdir, scale
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  source = pipeline.get_data_source("python_stdlib_text", "train")
  counts = np.zeros(256, np.int64)
  for i in range(len(source)):
    counts += np.bincount(np.frombuffer(source[i]["text"], np.uint8), minlength=256)
  return {"byte_counts": counts.tolist()}


# ------------------------------------------------------------------------------------------- Samples + claims.


def key(r: dict) -> str:
  """A setting's name (everything but the seed), e.g. "lion/lr0.0003/wd0.3/b16" or "lion/amos0.003/b16"."""
  hp = f"amos{r['amos']:g}" if r.get("amos") else f"lr{r['lr']:g}/wd{r['wd']:g}"
  extra = "/untied" * bool(r.get("untied")) + (f"/{r['fix']}" if r.get("fix", "none") != "none" else "")
  return f"{r['opt']}/{hp}/b{r['batch']}" + (f"x{r['accum']}" if r.get("accum", 1) > 1 else "") + extra


def _loss(r: dict) -> float:
  return float(r.get("eval", {}).get("loss", np.nan)) if not r.get("error") else float("nan")


def byte_groups(counts, tokens: float, seen=None) -> dict[str, np.ndarray]:
  """Bytes by expected occurrences in a run's training tokens: rare <= 50 and seen in training (a nonzero
  optimizer-state row; stale for most steps), frequent >= 500 (a gradient nearly every step), absent (never in
  the corpus: no gradient, no momentum)."""
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


def samples(records, counts=None) -> dict[str, dict]:
  """{name: {unit: value}}: loss:<setting> by seed; per-seed best lr / λ / loss of the sweeps; the batch gap;
  per-byte embedding statistics of the anomaly runs (unit "seed/byte")."""
  out: dict[str, dict] = collections.defaultdict(dict)
  ok = [r for r in records if not r.get("error")]
  for r in ok:
    out[f"loss:{key(r)}"][r["seed"]] = _loss(r)
  for o in ("lion", "adamw"):
    base = [r for r in ok if r["opt"] == o and r["batch"] == 16 and not (r["untied"] or r["amos"] or r["emb"])]
    for s in sorted({r["seed"] for r in base}):
      lr_pts = {r["lr"]: _loss(r) for r in base if r["seed"] == s and r["wd"] == TRANSFER[o][1]}
      wd_pts = {r["wd"]: _loss(r) for r in base if r["seed"] == s and r["lr"] == TRANSFER[o][0]}
      for name, pts in (("lr", lr_pts), ("wd", wd_pts)):
        if len(pts) >= 3:
          out[f"log{name}:{o}"][s] = best = best_log_lr(pts)
          out[f"edge{name}:{o}"][s] = float(best in np.log10([min(pts), max(pts)]))
      if len(lr_pts) >= 3:
        out[f"bestloss:{o}"][s] = np.nanmin(list(lr_pts.values()))
  for name, (a, b) in (("lr", ("adamw", "lion")), ("wd", ("lion", "adamw"))):
    pa, pb = out.get(f"log{name}:{a}", {}), out.get(f"log{name}:{b}", {})
    out[f"ratio_{name}"] = {s: pa[s] - pb[s] for s in pa if s in pb}
  gaps = []
  for b in sorted({r["batch"] for r in ok if r["accum"] == 1}):
    lion, adamw = (out.get(f"loss:{_at(o, b)}", {}) for o in ("lion", "adamw"))
    out[f"gap:b{b}"] = {s: lion[s] - adamw[s] for s in lion if s in adamw}
    gaps += [(math.log2(b), g) for g in out[f"gap:b{b}"].values()]
  out["gap_trend"] = gaps
  if counts is not None:
    for r in ok:
      g = byte_groups(counts, r["tokens"], r.get("seen"))
      if r.get("emb") and r.get("embedding") and len(g["frequent"]):
        mean = np.asarray(r["embedding"][-1]["mean"])
        rel = mean / np.median(mean[g["frequent"]])
        for grp in ("rare", "frequent"):
          out[f"row:{key(r)}:{grp}"] = {f"{r['seed']}/{i}": float(rel[i]) for i in g[grp]}
  return {k: dict(v) if isinstance(v, dict) else v for k, v in out.items() if len(v)}


def _at(o: str, b: int = 16) -> str:
  """The setting key of an optimizer at its transfer point."""
  return "{}/lr{:g}/wd{:g}/b{}".format(o, *TRANSFER[o], b)


def claims(batches=(4, 16, 64)) -> list[C.Claim]:
  """Declared before the runs: test, direction, margin and minimum n of every claim (eval losses in nats/byte)."""
  band = dict(direction="~", margin=(LR_BAND[1] - LR_BAND[0]) / 2, reference=sum(LR_BAND) / 2, family="transfer")
  lion_u, tiger_u = (f"{o}/lr{EMB_LR:g}/wd{EMB_WD:g}/b16/untied" for o in ("lion", "tiger"))
  rows = dict(family="anomaly", unit="bytes", digits=3)
  out = [C.Claim("1a", "Lion's best lr is 3-10x smaller than AdamW's (per-seed log10 ratio of the interpolated best "
                 "lrs within [log 3, log 10])", "one_sample", "ratio_lr", **band),
         C.Claim("1b", "Lion's best λ is 3-10x larger than AdamW's (log10 ratio within [log 3, log 10])",
                 "one_sample", "ratio_wd", **band),
         C.Claim("1c", f"At their best lrs Lion matches or beats AdamW (non-inferiority margin {BEST_MARGIN})",
                 "paired", "bestloss:lion", "bestloss:adamw", direction="<", margin=-BEST_MARGIN,
                 family="transfer", digits=3),
         C.Claim("2a", f"Lion is worse than AdamW at small batch ({min(batches)}): loss Lion − AdamW > 0", "paired",
                 f"loss:{_at('lion', min(batches))}", f"loss:{_at('adamw', min(batches))}", family="batch", digits=3),
         C.Claim("2b", "The Lion − AdamW gap closes or reverses as the batch grows (slope on log2 batch < 0, "
                 "fixed number of examples)", "trend", "gap_trend", direction="<", family="batch", unit="runs",
                 digits=3),
         C.Claim("3a", f"Tiger ≈ Lion in loss at the same lr and λ (equivalence ±{TIGER_MARGIN})", "paired",
                 f"loss:{_at('tiger')}", f"loss:{_at('lion')}", direction="~", margin=TIGER_MARGIN, family="tiger",
                 digits=3),
         C.Claim("3b", f"Tiger's in-momentum accumulation (batch 4 x 4) ≈ Tiger at batch 16 (±{TIGER_MARGIN})",
                 "paired", f"loss:{_at('tiger', 4)}x4", f"loss:{_at('tiger')}", direction="~", margin=TIGER_MARGIN,
                 family="tiger", digits=3),
         C.Claim("4a", "Under Lion (untied, λ 1) rows of rare bytes grow larger than frequent rows (mean |θ| of a "
                 "row / median frequent row)", "welch", f"row:{lion_u}:rare", f"row:{lion_u}:frequent", **rows),
         C.Claim("4b", "Under Tiger (untied, λ 1) too", "welch", f"row:{tiger_u}:rare", f"row:{tiger_u}:frequent",
                 **rows),
         C.Claim("4c", "AdamW (untied) does not: its rare rows' relative size is below Lion's (paired by byte)",
                 "paired", f"row:{_at('adamw')}/untied:rare", f"row:{lion_u}:rare", direction="<", **rows)]
  for i, (run, fix) in enumerate(((f"{lion_u}/lazy", "(a) lazy row updates"),
                                  (f"{lion_u}/emb_adamw", "(c) AdamW for the embeddings"),
                                  (lion_u.replace("/untied", ""), "(b) tied embeddings"))):
    out.append(C.Claim(f"4{'def'[i]}", f"Fix {fix} keeps rare rows' relative size below untied Lion's (paired by "
                       "byte)", "paired", f"row:{run}:rare", f"row:{lion_u}:rare", direction="<", **rows))
  return out + [
      C.Claim("5a", f"Su's Amos recipe (α0 = {AMOS_A0:g}: lr = α0·σ, λ = α0/(2σ)) is not worse than Lion at its best "
              f"lr (non-inferiority {BEST_MARGIN})", "paired", f"loss:lion/amos{AMOS_A0:g}/b16", "bestloss:lion",
              direction="<", margin=-BEST_MARGIN, family="amos", digits=3),
      C.Claim("5b", "The Amos λ is within 3x of Lion's measured best λ (log10)", "one_sample", "logwd:lion",
              direction="~", margin=math.log10(3.0), reference=math.log10(amos_hp(AMOS_A0)[1]), family="amos")]


# ------------------------------------------------------------------------------------------- Tables + plots.


def _cell(data, name, digits=3) -> str:
  return stats.Stat([v for v in data.get(name, {}).values() if np.isfinite(v)]).fmt(1, digits)


def _runs(records, **match) -> list[dict]:
  return [r for r in records if not r.get("error") and all(r.get(k) == v for k, v in match.items())]


def table_sweep(records, data) -> str:
  keys = sorted({key(r) for r in _runs(records, batch=16, untied=False, emb=False, accum=1, amos=0.0)})
  rows = []
  for k in keys:
    o, lr, wd = k.split("/")[0], float(k.split("/")[1][2:]), float(k.split("/")[2][2:])
    rows.append([o, f"{lr:g}", f"{wd:g}", f"{lr * wd:.1e}", _cell(data, f"loss:{k}"), len(data.get(f"loss:{k}", {}))])
  return R.table(["optimizer", "peak lr", "λ", "lr·λ", "eval loss (nats/byte)", "seeds"], rows)


def table_best(data) -> str:
  rows = []
  for o in ("lion", "adamw"):
    best = {n: 10 ** stats.Stat(list(data.get(f"log{n}:{o}", {}).values())).mean for n in ("lr", "wd")}
    cell = {n: f"{v:.2g}" + (f" (grid edge in {int(sum(e.values()))} of {len(e)} seeds)" if sum(
        (e := data.get(f"edge{n}:{o}", {})).values()) else "") for n, v in best.items()}
    rows.append([o, cell["lr"], cell["wd"], f"{best['lr'] * best['wd']:.1e}", _cell(data, f"bestloss:{o}")])
  ratio = lambda n: stats.Stat([10 ** v for v in data.get(f"ratio_{n}", {}).values()]).fmt(1, 1)
  rows.append(["AdamW / Lion (lr), Lion / AdamW (λ)", ratio("lr"), ratio("wd"), "", ""])
  rows += [[f"README: {task}", f"Lion {l[0]:g} / AdamW {a[0]:g}", f"Lion {l[1]:g} / AdamW {a[1]:g}",
            f"{l[0] * l[1]:.0e} / {a[0] * a[1]:.0e}", ""] for task, l, a in published.README_PAIRS]
  return R.table(["", "best lr", "best λ", "lr·λ", "eval loss at the best lr"], rows)


def table_batch(records, data) -> str:
  rows = [[b, next(r["steps"] for r in _runs(records, batch=b, opt="lion")), _cell(data, f"loss:{_at('lion', b)}"),
           _cell(data, f"loss:{_at('adamw', b)}"), _cell(data, f"gap:b{b}")]
          for b in sorted({r["batch"] for r in _runs(records, accum=1)}) if f"loss:{_at('lion', b)}" in data]
  return R.table(["batch", "steps", "Lion (3e-4, λ 0.3)", "AdamW (1e-3, λ 0.03)", "Lion − AdamW"], rows)


def state_check(records, data) -> tuple[str, str]:
  """Loss and optimizer-state bytes (read from the checkpoints) of Lion, Tiger, Tiger accumulating, AdamW; the
  buffer count is a deterministic check (exact up to scalar counters), not a statistical claim."""
  rows, ratio = [], {}
  for name, k in (("lion", _at("lion")), ("tiger", _at("tiger")), ("tiger, accumulating 4", _at("tiger", 4) + "x4"),
                  ("adamw", _at("adamw"))):
    rs = [r for r in _runs(records, untied=False) if key(r) == k and r.get("state_bytes")]
    if rs:
      st, p = rs[0]["state_bytes"], rs[0]["param_bytes"]
      ratio[name] = st / p
      rows.append([name, _cell(data, f"loss:{k}"), f"{st:,}", f"{p:,}", f"{st / p:.4f}",
                   published.TIGER_BUFFERS[name.split(",")[0]]])
      if name == "lion":  # what gradient accumulation adds outside Tiger: one f32 gradient-sized buffer
        rows.append(["lion + accumulation (optax.MultiSteps' buffer)", "", f"{st + p:,}", f"{p:,}",
                     f"{(st + p) / p:.4f}", ""])
  ok = len(ratio) == 4 and all(abs(v - (2 if n == "adamw" else 1)) < 1e-3 for n, v in ratio.items())
  line = (f"**{'✅ holds' if ok else '❌ does not hold'}** — one parameter-sized buffer for Lion and Tiger (with and "
          "without accumulation), two for AdamW: state / parameter bytes within 0.1% of 1 and 2") if ratio else \
      "not measured (no checkpoints)"
  return line, R.table(["optimizer", "eval loss", "state bytes", "parameter bytes", "state / params",
                        "Su's buffers with accumulation"], rows)


def table_embedding(records, counts) -> str:
  rows = []
  for r in [r for r in _runs(records, emb=True) if r.get("embedding")]:
    g, last = byte_groups(counts, r["tokens"], r.get("seen")), r["embedding"][-1]
    v = {k: np.asarray(last[k]) for k in ("disp", "mean", "max") if k in last}
    f = lambda k, grp: f"{np.mean(v[k][g[grp]]):.3f}" if len(g[grp]) and k in v else "—"
    rows.append([key(r), r["seed"], f"{r['wd']:g}", len(g["rare"]), f("disp", "rare"), f("disp", "frequent"),
                 f("mean", "rare"), f("mean", "frequent"), f("mean", "absent"), f("max", "rare"), f("max", "frequent"),
                 f"{r['wd'] * np.max(v['max'][g['rare']]):.3f}" if len(g["rare"]) else "—"])
  return R.table(["run", "seed", "λ", "rare bytes", "drift: mean abs(θ−θ0), rare", "frequent", "mean abs(θ), rare",
                  "frequent", "absent", "max abs(θ), rare", "frequent", "λ·max abs(θ), rare (1 = Su's ±1/λ)"], rows)


def table_amos(records, data) -> str:
  runs = {r["amos"]: r for r in _runs(records) if r["amos"]}
  rows = [[f"{a:g}", f"{r['lr']:.2g}", f"{r['wd']:.2g}", _cell(data, f"loss:{key(r)}")]
          for a, r in sorted(runs.items())]
  bert = published.AMOS_BERT
  return R.table(["α0", "lr = α0·σ", "λ = α0/(2σ)", "eval loss"], rows + [
      ["Lion's sweep, best lr per seed", "", "", _cell(data, "bestloss:lion")],
      [f"Su, BERT-base (σ {bert['sigma']})", f"{bert['lr']:g}", f"{bert['wd']:g}", "good MLM (no number given)"]])


def plots(records, data, counts, out_dir) -> list[str]:
  fig, ax = R.figure(2, 2)
  for i, o in enumerate(TRANSFER):
    pts = sorted((r["lr"], _loss(r)) for r in _runs(records, opt=o, batch=16, untied=False, emb=False, amos=0.0)
                 if r["wd"] == TRANSFER[o][1])
    if pts:
      ax[0, 0].plot(*zip(*pts), "o", color=f"C{i}", alpha=0.6, label=o)
  ax[0, 0].set(xscale="log", xlabel="peak lr (λ: Lion 0.3, AdamW 0.03)", ylabel="eval loss")
  for b in sorted(k for k in data if k.startswith("gap:b")):
    ax[0, 1].plot([int(b[5:])] * len(data[b]), list(data[b].values()), "o", color="C0")
  ax[0, 1].axhline(0, color="gray", ls=":")
  ax[0, 1].set(xscale="log", xlabel="batch (fixed examples)", ylabel="eval loss Lion − AdamW")
  for i, r in enumerate(r for r in _runs(records, emb=True) if r.get("embedding")):
    g = byte_groups(counts, r["tokens"], r.get("seen")) if counts is not None else None
    if g is None or not len(g["rare"]):
      continue
    steps = [e["step"] for e in r["embedding"]]
    for grp, ls in (("rare", "-"), ("frequent", ":")):
      ax[1, 0].plot(steps, [np.mean(np.asarray(e.get("disp", e["mean"]))[g[grp]]) for e in r["embedding"]], ls,
                    color=f"C{i}", label=f"{key(r)} ({grp})")
  ax[1, 0].set(xlabel="step", ylabel="row drift mean|θ − θ0| (mean|θ| if not recorded)")
  for r in _runs(records, seed=0, batch=16, untied=False, emb=False, amos=0.0):
    if (r["lr"], r["wd"]) == TRANSFER[r["opt"]]:
      ax[1, 1].plot(r["curve"]["step"], r["curve"]["loss"], color=f"C{list(TRANSFER).index(r['opt'])}",
                    label=r["opt"])
  ax[1, 1].set(xlabel="step", ylabel="train loss (transfer point, seed 0)")
  return [R.save(fig, out_dir, "fig_lion.png")]


def write_report(records, extras_, out_dir: str, meta: dict) -> str:
  counts = extras_.get("byte_counts")
  data = samples(records, counts)
  batches = sorted({r["batch"] for r in records if r.get("accum", 1) == 1}) or [4]
  verdicts = C.judge_all(claims(batches), data)
  os.makedirs(out_dir, exist_ok=True)
  figs = plots(records, data, counts, out_dir) if records else []
  state_line, state_table = state_check(records, data)
  failed = [f"- `{r['name']}`: {r['error'][:200]}" for r in records if r.get("error")]
  text = R.fill(os.path.join(os.path.dirname(__file__), "report_template.md"), dict(
      runs=len(records), seeds=sorted({r["seed"] for r in records}), rules=R.RULES,
      steps=max([r["steps"] for r in records if r.get("batch") == 16] or [0]),
      checklist=R.checklist(verdicts), state_check=state_line, failed="\n".join(failed) or "none",
      sweep=table_sweep(records, data), best=table_best(data), batch=table_batch(records, data),
      state=state_table, amos=table_amos(records, data),
      embedding=table_embedding(records, counts) if counts is not None else "not measured (no byte counts)",
      plots="\n\n".join(f"![{p}]({p})" for p in figs), footer=R.footer(meta)))
  path = os.path.join(out_dir, "REPORT.md")
  with open(path, "w") as f:
    f.write(text)
  return path
