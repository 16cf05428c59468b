r"""MLM / MAE seen as dropout (issue #8): pre-training, fine-tuning, DropToken, Su's embedding correction.

  python -m experiments mlm_dropout --workdir /tmp/kexue/mlm_dropout      # 2 pre-training + 24 fine-tuning runs
  python -m experiments mlm_dropout --workdir W --scale tiny              # smoke test

Stage 0: MLM (BERT 15%, 80/10/10) and MAE-style (15% of the bytes dropped from the encoder, 1-layer decoder)
pre-training, configs/mlm_dropout/pretrain.py. Stage 1: fine-tuning on the stdlib package task
(configs/mlm_dropout/finetune.py), seed by seed: {MLM, MLM + correction r = 0.15, MAE-style, from scratch} at
DropToken 0 and MLM at DropToken {0.1, 0.15, 0.25, 0.5}. Then measure.py: a step-time benchmark, the
representation drift under the correction, the evaluation class counts. Prose: report_template.md.
"""
from __future__ import annotations

import os

import numpy as np

from experiments import stats
from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.framework import report as R
from experiments.mlm_dropout import measure
from experiments.mlm_dropout import published

DROPS, CORRECTION_R = measure.DROPS, measure.CORRECTION_R
INITS = {"mlm": "MLM", "mae": "MAE-style", "none": "from scratch"}
# Wall seconds measured on the idle 2-core CPU (pre-training 600 steps: MLM 276 s, MAE 293 s; a fine-tuning
# run ~41 s of which ~15 s start-up), for the --dry_run estimate only.
EST_S = {"mlm": 276.0 * 2, "mae": 293.0 * 2, "finetune": 26.0, "startup": 15.0, "tiny": 15.0}
MARGIN = 0.01   # one accuracy point: the equivalence / non-inferiority margin, declared before the runs


def finetune_name(init: str, corr: float, drop: float, seed: int) -> str:
  return f"ft_init{init}_correction{corr:g}_drop{drop:g}_seed{seed}"


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  """Both pre-trainings (stage 0), then the fine-tuning runs seed-major (stage 1)."""
  if scale not in ("default", "tiny"):
    raise ValueError(f"mlm_dropout scales are default, tiny; got {scale!r}.")
  tiny = scale == "tiny"
  extra = ",runlocal" if tiny else ""
  modes = ("mlm",) if tiny else ("mlm", "mae")   # tiny: 4 runs that touch every code path but MAE's
  runs = [launcher.Run(f"pretrain_{m}", f"configs/mlm_dropout/pretrain.py:mode={m}{extra}", {"kind": "pretrain",
                       "mode": m}, EST_S["tiny" if tiny else m]) for m in modes]
  settings = [("mlm", 0.0, 0.0), ("mlm", CORRECTION_R, 0.0), ("mae", 0.0, 0.0), ("none", 0.0, 0.0)]
  settings = [s for s in settings if s[0] in modes + ("none",)] + [("mlm", 0.0, p) for p in DROPS if p and not tiny]
  for seed in range(seeds or (1 if tiny else 3)):
    for init, corr, drop in settings:
      arg = ([f"init={{workdir}}/runs/pretrain_{init}"] if init != "none" else []) + [
          f"correction={corr:g}", f"drop={drop:g}", f"seed={seed}"]
      est = EST_S["tiny"] if tiny else EST_S["startup"] + EST_S["finetune"] * (0.3 + 0.7 * (1 - drop))
      runs.append(launcher.Run(finetune_name(init, corr, drop, seed),
                               "configs/mlm_dropout/finetune.py:" + ",".join(arg) + extra,
                               dict(kind="finetune", init=init, correction=corr, drop=drop, seed=seed), est, stage=1))
  return runs


def evaluate(run, config, run_dir: str, record: dict) -> dict:
  """The training loop's own median steps/s (noisier than the benchmark: the CPU may be shared)."""
  del run, config, record
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  sps = [m["steps_per_sec"] for m in metrics_lib.read_metrics(run_dir) if m.get("steps_per_sec")]
  return {"steps_per_sec": float(np.median(sps)) if sps else None}


def extras(workdir: str, scale: str = "default") -> dict:
  """Step-time benchmark, drift of the MLM encoder under the correction, class counts, the setup."""
  extra = ",runlocal" if scale == "tiny" else ""   # tiny: no benchmark (11 compilations), a small drift set
  classes, counts = measure.eval_class_counts(extra)
  runs = plan(scale=scale)
  pre, ft = (launcher.load_run_config(next(r for r in runs if r.labels["kind"] == k), (), workdir)
             for k in ("pretrain", "finetune"))
  return {"timing": {} if extra else measure.timing_study(), "classes": classes, "eval_counts": counts,
          "drift": measure.drift_study(os.path.join(workdir, "runs", "pretrain_mlm"), extra=extra,
                                       **(dict(num_windows=16, mc_draws=2, batch=16) if extra else {})),
          "setup": {"pretrain_steps": pre.num_train_steps, "finetune_steps": ft.num_train_steps, "pool": ft.task.pool,
                    "train_per_class": ft.data.train_per_class, "eval_per_class": ft.data.eval_per_class}}


def from_results(res: dict) -> tuple[list[dict], dict]:
  """The former driver's results.json ({"finetune", "pretrain", "timing", ...}) as (records, extras)."""
  records = [dict(r, kind="finetune") for r in res.get("finetune", [])]
  records += [dict(r, kind="pretrain") for r in (res.get("pretrain") or {}).values()]
  return records, {k: res.get(k) for k in ("timing", "drift", "classes", "eval_counts", "setup")}


# ------------------------------------------------------------------------------------------- Samples + claims.


def key(init, corr, drop) -> str:
  return f"{init}/c{float(corr):g}/p{float(drop):g}"


def samples(records, timing) -> dict:
  """{acc|loss:init/c/p: {seed: value}}; "steptime": [(p, seconds)] of the DropToken benchmark."""
  out: dict = {}
  for r in records:
    if r.get("kind", "finetune") == "finetune" and not r.get("error"):
      k = key(r["init"], r["correction"], r["drop"])
      for name, metric in (("acc", "accuracy"), ("loss", "loss")):
        out.setdefault(f"{name}:{k}", {})[r["seed"]] = float(r["eval"][metric])
  if (timing or {}).get("droptoken"):
    out["steptime"] = [(float(p), t) for p, t in timing["droptoken"].items()]
  return out


def claims() -> list[C.Claim]:
  base, pct = key("mlm", 0, 0), dict(scale=100, digits=2)
  return [
      C.Claim("1", f"The embedding correction (r = {CORRECTION_R:g}) changes fine-tuning accuracy by less than "
              f"{MARGIN * 100:g} point (Su: no significant change)", "paired", f"acc:{key('mlm', CORRECTION_R, 0)}",
              f"acc:{base}", direction="~", margin=MARGIN, **pct),
      *[C.Claim(f"2 p{p:g}", f"DropToken p = {p:g} is not worse than p = 0 (non-inferiority, margin {MARGIN * 100:g} "
                "point; Su: neutral to slightly positive at 0.1-0.15)", "paired", f"acc:{key('mlm', 0, p)}",
                f"acc:{base}", margin=-MARGIN, family="droptoken", **pct) for p in (0.1, 0.15)],
      C.Claim("3", "DropToken p = 0.5 hurts", "paired", f"acc:{key('mlm', 0, 0.5)}", f"acc:{base}", direction="<",
              family="droptoken", **pct),
      C.Claim("4", "DropToken step time falls with the kept fraction (benchmark medians vs p; slope in ms per unit of p)", "trend", "steptime",
              direction="<", unit="ratios", scale=1000, digits=1),
      C.Claim("5", f"MAE-style pre-training transfers at least as well as MLM (non-inferiority, margin "
              f"{MARGIN * 100:g} point; MAE paper)", "paired", f"acc:{key('mae', 0, 0)}", f"acc:{base}",
              margin=-MARGIN, **pct),
      C.Claim("6a", "Sanity: MLM pre-training transfers (test accuracy above training from scratch)", "paired",
              f"acc:{base}", f"acc:{key('none', 0, 0)}", family="transfer", **pct),
      C.Claim("6b", "Sanity: MLM pre-training transfers (test cross-entropy below training from scratch)", "paired",
              f"loss:{base}", f"loss:{key('none', 0, 0)}", direction="<", family="transfer", digits=3),
  ]


def measurements(timing, drift) -> list[str]:
  """Single benchmark numbers (medians of interleaved rounds), reported without a test."""
  out = []
  tp = (timing or {}).get("pretrain") or {}
  if "mae@0.75" in tp and "mlm@0.75" in tp:
    out.append(f"MAE-style pre-training step at MAE's 75% ratio {tp['mae@0.75'] * 1000:.1f} ms vs MLM "
               f"{tp['mlm@0.75'] * 1000:.1f} ms (15%: {tp.get('mae', np.nan) * 1000:.1f} vs "
               f"{tp.get('mlm', np.nan) * 1000:.1f} ms): MAE-style is "
               f"{'cheaper' if tp['mae@0.75'] < tp['mlm@0.75'] else 'not cheaper'} at 75% (MAE paper: cheaper)")
  if drift:
    closer = drift["kl_mc_vs_corrected"] < drift["kl_mc_vs_plain"]
    out.append(f"Su's reading (on clean input the corrected model is closer to the masked-input average): KL(P̄‖P) "
               f"plain {drift['kl_mc_vs_plain']:.4f}, corrected {drift['kl_mc_vs_corrected']:.4f}; 1 − cos(h̄, h) "
               f"plain {drift['cos_dist_mc_vs_plain']:.4f}, corrected {drift['cos_dist_mc_vs_corrected']:.4f}: the "
               f"corrected model is {'closer' if closer else 'not closer'} in KL")
  return out


# ------------------------------------------------------------------------------------------- Tables + plots.


def _stat(data, name) -> stats.Stat:
  return stats.Stat(list(data.get(name, {}).values()))


def table_finetune(data) -> str:
  rows = []
  for init, corr in (("mlm", 0), ("mlm", CORRECTION_R), ("mae", 0), ("none", 0)):
    k = key(init, corr, 0)
    rows.append([INITS[init] + (f" + correction r={corr:g}" if corr else ""), _stat(data, f"acc:{k}").n,
                 _stat(data, f"acc:{k}").fmt(100), _stat(data, f"loss:{k}").fmt(digits=3)])
  return R.table(["encoder init", "seeds", "test accuracy %", "test cross-entropy (nats)"], rows)


def table_droptoken(data, timing, records) -> str:
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  tt = (timing or {}).get("droptoken") or {}
  rows = []
  for p in DROPS:
    sps = [r["steps_per_sec"] for r in records if r.get("kind", "finetune") == "finetune" and r["init"] == "mlm"
           and not r["correction"] and float(r["drop"]) == p and r.get("steps_per_sec")]
    t = tt.get(str(p))
    rows.append([f"{p:g}", f"{mlm.num_kept(64, p)} / 64", _stat(data, f"acc:{key('mlm', 0, p)}").fmt(100),
                 "—" if t is None else f"{t * 1000:.1f}", f"{np.mean(sps):.2f}" if sps else "—"])
  return R.table(["DropToken p", "kept tokens", "test accuracy %", "step time (ms, benchmark)",
                  "steps/s in the runs"], rows)


def table_published(data) -> str:
  ref, base = np.array(published.SU_DROPTOKEN[0.0]), _stat(data, f"acc:{key('mlm', 0, 0)}")
  rows = []
  for p, row in published.SU_DROPTOKEN.items():
    st = _stat(data, f"acc:{key('mlm', 0, p)}")
    rows.append([f"{p:g}", *[f"{x:.2f}" for x in row], f"{np.mean(np.array(row) - ref):+.2f}",
                 f"{(st.mean - base.mean) * 100:+.2f}" if st.n and base.n else "—"])
  return R.table(["p", *published.SU_DROPTOKEN_TASKS, "Su: mean Δ vs p=0", "ours: Δ vs p=0 (pts)"], rows)


def table_pretrain(records, timing) -> str:
  tp, rows = (timing or {}).get("pretrain") or {}, []
  ms = lambda k: "—" if k not in tp else f"{tp[k] * 1000:.1f}"
  for r in records:
    if r.get("kind") == "pretrain":
      m = r["mode"]
      rows.append([INITS[m], r.get("step"), f"{r['wall_time_s']:.0f}", ms(m), ms(m + "@0.5"), ms(m + "@0.75"),
                   f"{r['eval']['loss']:.3f}", f"{r['eval']['accuracy'] * 100:.1f}"])
  return R.table(["pre-training", "steps", "wall time (s)", "step 15% (ms)", "step 50%", "step 75%",
                  "eval loss (masked bytes)", "eval acc % (masked bytes)"], rows)


def table_drift(drift) -> str:
  if not drift:
    return "(not measured)"
  d = drift
  return R.table(["on clean validation text (byte positions)", "without correction", "with correction"], [
      ["1 − cos(h(x; E_corr), h(x; E))", "—", f"{d['cos_dist_corrected_vs_plain']:.4f}"],
      [f"1 − cos(h̄, h(x; ·)), h̄ = mean over {d['mc_draws']} BERT maskings", f"{d['cos_dist_mc_vs_plain']:.4f}",
       f"{d['cos_dist_mc_vs_corrected']:.4f}"],
      ["KL(P̄ ‖ P(x; ·)), P̄ = mean MLM distribution over the maskings", f"{d['kl_mc_vs_plain']:.4f}",
       f"{d['kl_mc_vs_corrected']:.4f}"],
      ["MLM accuracy on unmasked bytes", f"{d['acc_unmasked_plain'] * 100:.2f}%",
       f"{d['acc_unmasked_corrected'] * 100:.2f}%"]])


def plots(data, timing, out_dir) -> list[str]:
  fig, ax = R.figure(1, 2)
  ps = [p for p in DROPS if f"acc:{key('mlm', 0, p)}" in data]
  st = [_stat(data, f"acc:{key('mlm', 0, p)}") for p in ps]
  ax[0, 0].errorbar(ps, [s.mean * 100 for s in st], yerr=[s.std * 100 for s in st], marker="o", capsize=4,
                    label="test accuracy (mean ± sd)")
  ax[0, 0].set(xlabel="DropToken ratio p", ylabel="test accuracy %")
  tt = (timing or {}).get("droptoken") or {}
  if tt:
    ax[0, 1].plot([float(p) for p in tt], [t * 1000 for t in tt.values()], "s--", label="fine-tuning step")
  tp = (timing or {}).get("pretrain") or {}
  for m in ("mlm", "mae"):
    keys = [(0.15, m), (0.5, f"{m}@0.5"), (0.75, f"{m}@0.75")]
    ax[0, 1].plot([r for r, k in keys if k in tp], [tp[k] * 1000 for r, k in keys if k in tp], "o-",
                  label=f"{INITS[m]} pre-training step (vs mask rate)")
  ax[0, 1].set(xlabel="DropToken p / mask rate", ylabel="forward+backward step (ms)")
  return [R.save(fig, out_dir, "fig_mlm.png")]


def write_report(records, extras_, out_dir: str, meta: dict) -> str:
  timing, drift, setup = extras_.get("timing"), extras_.get("drift"), extras_.get("setup") or {}
  data = samples(records, timing)
  verdicts = C.judge_all(claims(), data)
  counts = extras_.get("eval_counts") or []
  os.makedirs(out_dir, exist_ok=True)
  figs = plots(data, timing, out_dir)
  text = R.fill(os.path.join(os.path.dirname(__file__), "report_template.md"), dict(
      pretrain_steps=setup.get("pretrain_steps", "?"), finetune_steps=setup.get("finetune_steps", "?"),
      pool=setup.get("pool", "?"), train_per_class=setup.get("train_per_class", "?"),
      classes=", ".join(extras_.get("classes") or []), n_eval=sum(counts),
      majority=f"{max(counts) / sum(counts) * 100:.1f}" if counts else "?", rules=R.RULES,
      checklist=R.checklist(verdicts, data if meta.get("legacy") else None),
      measurements="\n".join(f"- {m}" for m in measurements(timing, drift)) or "(not measured)",
      finetune=table_finetune(data), droptoken=table_droptoken(data, timing, records),
      pretrain=table_pretrain(records, timing), drift=table_drift(drift), published=table_published(data),
      su_correction=published.SU_CORRECTION, su_droptoken=published.SU_DROPTOKEN_VERDICT,
      plots="\n\n".join(f"![{p}]({p})" for p in figs), footer=R.footer(meta)))
  path = os.path.join(out_dir, "REPORT.md")
  with open(path, "w") as f:
    f.write(text)
  return path
