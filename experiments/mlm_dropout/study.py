r"""MLM / MAE seen as dropout (issues #8, #17): pre-training, fine-tuning, DropToken, Su's embedding correction.

Stage 0 pre-trains each checkpoint arm (configs/mlm_dropout/pretrain.py), stage 1 fine-tunes from every checkpoint
with each of its settings (finetune.py), seed-major, paired by (pre-training seed, fine-tuning seed); each MLM
checkpoint's drift and Su's mask identity are kexue_jax/evals/mask_dropout.py, the step times
benchmarks/mlm_step_time.py.
The scales are tabled in README.md; the report's prose is report_template.md.
"""
from __future__ import annotations

import numpy as np
from scipy import stats as sp_stats

from experiments import stats
from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.framework import report as R
from experiments.mlm_dropout import published

DROPS, CORR_R, HIGH_R = (0.0, 0.1, 0.15, 0.25, 0.5), 0.15, 0.4
FINETUNE = "configs/mlm_dropout/finetune.py"
PT_ARGS, FT_ARGS = "holdout=0.5", "holdout=0.5,per_file=16"   # test files: never pre-trained on, <= 16 windows each
INITS = {"mlm": "MLM", "mae": "MAE-style", "none": "from scratch"}
MLM, MAE, MLM_HIGH = ("mlm", CORR_R), ("mae", CORR_R), ("mlm", HIGH_R)
# scale: ({checkpoint (mode, rate): fine-tuning settings (correction, drop)}, pre-training seeds, f seeds, scratch)
SCALES = {
    "full": ({MLM: ((0, 0), (CORR_R, 0), *((0, p) for p in DROPS[1:])), MAE: ((0, 0),),
              MLM_HIGH: ((0, 0), (HIGH_R, 0))}, 2, 5, 5),
    "default": ({MLM: ((0, 0), (CORR_R, 0), (0, 0.15), (0, 0.5))}, 2, 4, 3),
    "tiny": ({MLM: ((0, 0), (CORR_R, 0))}, 1, 1, 1),
}
# Wall seconds on the idle 2-core CPU for --dry_run, from the runs of results.json (1200 pre-training steps) and
# CPU seconds of the drift pass and the per-window outcomes on the loaded machine.
EST_S = {"mlm": 555.0, "mae": 577.0, "drift": 30.0, "finetune": 26.0, "startup": 15.0, "outcomes": 5.0,
         "tiny": 15.0}
MARGIN = 0.01   # one accuracy point: the equivalence / non-inferiority margin and the CI target, declared before
                # the runs


def pt_name(mode: str, rate: float, s: int) -> str:
  return f"pt_{mode}_r{rate:g}_s{s}"


def ft_name(init: str, rate: float, s, corr: float, drop: float, f: int) -> str:
  return f"ft_{'none' if init == 'none' else pt_name(init, rate, s)[3:]}_c{corr:g}_p{drop:g}_f{f}"


def plan(seeds: int | None = None, scale: str = "default") -> list[launcher.Run]:
  """Pre-trainings (stage 0), then fine-tuning seed-major (stage 1); ``seeds`` overrides f and scratch seeds."""
  arms, pt_seeds, ft_seeds, scratch = SCALES[scale]
  tiny = scale == "tiny"
  runs = [launcher.Run(pt_name(m, r, s), f"configs/mlm_dropout/pretrain.py:mode={m},rate={r:g},seed={s},{PT_ARGS}"
                       + ",runlocal" * tiny, dict(kind="pretrain", mode=m, rate=r, pt_seed=s),
                       EST_S["tiny"] if tiny else EST_S[m] + EST_S["drift"] * (m == "mlm"))
          for s in range(pt_seeds) for m, r in arms]

  def finetune(setting: tuple, f: int) -> launcher.Run:
    init, rate, s, corr, drop = setting
    arg = [f"init={{workdir}}/runs/{pt_name(init, rate, s)}"] * (init != "none") + [
        f"correction={corr:g}", f"drop={drop:g}", f"seed={f}", FT_ARGS]
    est = EST_S["startup"] + EST_S["outcomes"] + EST_S["finetune"] * (0.3 + 0.7 * (1 - drop))
    return launcher.Run(ft_name(init, rate, s, corr, drop, f), f"{FINETUNE}:" + ",".join(arg) + ",runlocal" * tiny,
                        dict(kind="finetune", init=init, rate=rate, pt_seed=s, correction=corr, drop=drop, seed=f),
                        EST_S["tiny"] if tiny else est, stage=1)

  tuned = [((m, r, s, c, p), ft_seeds) for s in range(pt_seeds) for (m, r), settings in arms.items()
           for c, p in settings]
  return runs + launcher.seed_major(tuned + [(("none", 0.0, None, 0.0, 0.0), scratch)], seeds, finetune)


def _eval_windows(config, batch: int, num_batches: int | None = None) -> dict[str, np.ndarray]:
  """The evaluation windows of a config's test split, concatenated in the order of its batches."""
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  ev = list(pipeline.make_eval_iter(config.data, split=config.data.eval_split, global_batch_size=batch,
                                    num_batches=num_batches))
  return {k: np.concatenate([b[k] for b in ev]) for k in ev[0]}


def drift(pre_config, run_dir: str, local: bool) -> dict:
  """kexue_jax/evals/mask_dropout.drift of the MLM checkpoint in run_dir on the study's clean test windows."""
  from kexue_jax import checkpoint  # pylint: disable=g-import-not-at-top
  from kexue_jax.evals import mask_dropout  # pylint: disable=g-import-not-at-top
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  kw = dict(mc_draws=2, batch=16) if local else dict(mc_draws=8, batch=64)
  test = launcher.load_run_config(launcher.Run("test", f"{FINETUNE}:{FT_ARGS}" + ",runlocal" * local), ())
  windows = _eval_windows(test, kw["batch"])
  state, _ = checkpoint.load_state(run_dir)
  return mask_dropout.drift(mlm.MLMTask(pre_config), state["params"], windows["tokens"], windows["file"], **kw)


def evaluate(run, config, run_dir: str, record: dict) -> dict:
  """Every run: the training loop's median steps/s. Fine-tuning: the 0/1 outcome of each test window (string, in
  the evaluation order of ``_eval_windows``). MLM pre-training: the drift under the correction."""
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  rates = [m["steps_per_sec"] for m in metrics_lib.read_metrics(run_dir) if m.get("steps_per_sec")]
  out = {"steps_per_sec": float(np.median(rates)) if rates else None}
  if record.get("error"):
    return out
  if run.labels["kind"] == "finetune":
    from kexue_jax.evals import outcomes  # pylint: disable=g-import-not-at-top
    out["correct"] = "".join("01"[int(c)] for c in outcomes.classification_outcomes(config, run_dir)["correct"])
  elif run.labels["mode"] == "mlm":
    out["drift"] = drift(config, run_dir, bool(config.study.arg.runlocal))
  return out


def extras(workdir: str, scale: str = "default") -> dict:
  """Step-time benchmark (not at tiny: 11 compilations; pre-training steps at full only, where MAE-style runs),
  the test set's classes, windows per class and each window's file, Su's mask identity, the setup."""
  from benchmarks import mlm_step_time  # pylint: disable=g-import-not-at-top
  from kexue_jax.evals import mask_dropout  # pylint: disable=g-import-not-at-top
  runs = plan(scale=scale)
  pre, ft = (launcher.load_run_config(next(r for r in runs if r.labels["kind"] == k), (), workdir)
             for k in ("pretrain", "finetune"))
  timing = {} if scale == "tiny" else mlm_step_time.timing_study(DROPS, pretrain=scale == "full")
  windows = _eval_windows(ft, ft.batch_size, ft.num_eval_batches)
  return {"timing": timing, "classes": list(ft.data.classes), "eval_files": windows["file"].tolist(),
          "eval_counts": np.bincount(windows["label"], minlength=len(ft.data.classes)).tolist(),
          "identity": mask_dropout.mask_identity(),
          "setup": {"pretrain_steps": pre.num_train_steps, "finetune_steps": ft.num_train_steps, "pool": ft.task.pool,
                    "train_per_class": ft.data.train_per_class, "eval_per_file": ft.data.eval_per_file}}


def key(init, rate, corr, drop) -> str:
  return f"{init}{'' if init == 'none' else f'{float(rate):g}'}/c{float(corr):g}/p{float(drop):g}"


def samples(records, extras_) -> dict:
  """Named samples: "acc:", "loss:", "win:" + key -> {unit: value} (unit "s<pre-training seed>/f<fine-tuning
  seed>", from scratch "f<seed>"; win: each test window's 0/1 outcome); "acc@f:", "loss@f:" -> {f: mean over the
  pre-training seeds}, "acc@s:", "loss@s:" -> {s: mean over the fine-tuning seeds}; "dcorr:r<r>" (and
  "win:dcorr:r<r>", "dcorr@s:r<r>") -> accuracy with minus without the correction on the r checkpoints;
  "drift:r<r>" -> {test file: KL gain, mean over the checkpoints}; "steptime" -> [(p, seconds)]."""
  out: dict = {}
  for r in R.finished(records):
    if r["kind"] == "finetune":
      k = key(r["init"], r["rate"], r["correction"], r["drop"])
      unit = f"f{r['seed']}" if r["init"] == "none" else f"s{r['pt_seed']}/f{r['seed']}"
      out.setdefault(f"acc:{k}", {})[unit] = float(r["eval"]["accuracy"])
      out.setdefault(f"loss:{k}", {})[unit] = float(r["eval"]["loss"])
      if r.get("correct"):
        out.setdefault(f"win:{k}", {})[unit] = np.array([c == "1" for c in r["correct"]], float)
    for file, gain in ((r.get("drift") or {}).get("kl_gain_by_file") or {}).items():
      out.setdefault(f"drift:r{r['rate']:g}", {}).setdefault(file, []).append(gain)
  for name in [n for n in out if n.startswith(("acc:", "loss:")) and "/f" in next(iter(out[n]))]:
    out[name.replace(":", "@f:", 1)] = _mean_by(out[name], 1)
    out[name.replace(":", "@s:", 1)] = _mean_by(out[name], 0)
  for name in [n for n in out if n.startswith("drift:")]:
    out[name] = {f: float(np.mean(v)) for f, v in out[name].items()}
  for r in (CORR_R, HIGH_R):
    for kind in ("acc", "win"):
      a, b = out.get(f"{kind}:{key('mlm', r, r, 0)}", {}), out.get(f"{kind}:{key('mlm', r, 0, 0)}", {})
      if a and b:
        out[f"{kind}:dcorr:r{r:g}" if kind == "win" else f"dcorr:r{r:g}"] = stats.diff(a, b)
    if f"dcorr:r{r:g}" in out:
      out[f"dcorr@s:r{r:g}"] = _mean_by(out[f"dcorr:r{r:g}"], 0)
  if ((extras_ or {}).get("timing") or {}).get("droptoken"):
    out["steptime"] = [(float(p), t) for p, t in extras_["timing"]["droptoken"].items()]
  return out


PT_UNIT = "pre-training seeds"   # the unit of claims between pre-training arms (different checkpoints)


def _mean_by(sample: dict, part: int) -> dict:
  """{"s<i>/f<j>": v} -> {"s<i>": mean over j} (part 0) or {"f<j>": mean over i} (part 1)."""
  by: dict = {}
  for unit, v in sample.items():
    by.setdefault(unit.split("/")[part], []).append(v)
  return {u: float(np.mean(v)) for u, v in by.items()}


def claims() -> list[C.Claim]:
  """The claims, declared before the runs (margins included). Units: (pre-training, fine-tuning) seed pairs
  within one checkpoint arm; pre-training seeds (mean over fine-tuning seeds) between pre-training arms."""
  pct, acc = dict(scale=100, digits=2, unit="seed pairs"), lambda *k: f"acc:{key(*k)}"
  pt_pct = dict(pct, unit=PT_UNIT)
  base, pt = acc("mlm", CORR_R, 0, 0), f"{MARGIN * 100:g} point"
  return [
      C.Claim("1", f"The embedding correction (r = {CORR_R:g}) changes fine-tuning accuracy by less than {pt} "
              "(Su: no significant change)", "paired", acc("mlm", CORR_R, CORR_R, 0), base, direction="~",
              margin=MARGIN, **pct),
      C.Claim("1b", f"On clean test windows the corrected model (r = {CORR_R:g}) is closer to the masked-input "
              "average than the plain one: KL(P̄‖P) falls (Su's reading; the KL gain ×1000 per test file, averaged "
              "over its windows and the MLM checkpoints)", "one_sample", f"drift:r{CORR_R:g}", reference=0.0,
              unit="test files", scale=1000),
      *[C.Claim(f"2 p{p:g}", f"DropToken p = {p:g} is not worse than p = 0 (non-inferiority, margin {pt}; Su: "
                "neutral to slightly positive at 0.1-0.15)", "paired", acc("mlm", CORR_R, 0, p), base,
                margin=-MARGIN, family="droptoken", **pct) for p in (0.1, 0.15)],
      C.Claim("3", "DropToken p = 0.5 hurts", "paired", acc("mlm", CORR_R, 0, 0.5), base, direction="<",
              family="droptoken", **pct),
      C.Claim("4", "DropToken step time falls with the kept fraction (benchmark medians vs p; slope in ms per unit "
              "of p)", "trend", "steptime", direction="<", unit="ratios", scale=1000, digits=1),
      C.Claim("5", f"MAE-style pre-training transfers at least as well as MLM at the same steps and batch "
              f"(non-inferiority, margin {pt}; MAE paper)", "paired", "acc@s:" + key("mae", CORR_R, 0, 0),
              "acc@s:" + key("mlm", CORR_R, 0, 0), margin=-MARGIN, **pt_pct),
      C.Claim("6a", "Sanity: MLM pre-training transfers (test accuracy above training from scratch; per fine-tuning "
              "seed, MLM averaged over its checkpoints)", "paired", "acc@f:" + key("mlm", CORR_R, 0, 0),
              acc("none", 0, 0, 0), family="transfer", scale=100, digits=2),
      C.Claim("6b", "Sanity: MLM pre-training transfers (test cross-entropy below training from scratch)", "paired",
              "loss@f:" + key("mlm", CORR_R, 0, 0), f"loss:{key('none', 0, 0, 0)}", direction="<",
              family="transfer", digits=3),
      C.Claim("7", f"Su's prediction: the correction raises accuracy more at r = {HIGH_R:g} than at r = {CORR_R:g} "
              "(with minus without it on each checkpoint, r = 0.4 minus r = 0.15)", "paired", f"dcorr@s:r{HIGH_R:g}",
              f"dcorr@s:r{CORR_R:g}", **pt_pct),
  ]


IDENTITY = C.Claim("8", "E over masks of the elementwise product M̃_1 ⊗ … ⊗ M̃_n is the all-p matrix, and "
                   "Norm(pA) = A (Su's MAE-as-attention-dropout identity; deterministic: exact enumeration in "
                   "float64, tolerance 1e-12)", "one_sample", "identity", direction="~", margin=1e-12,
                   reference=0.75)


def identity_verdict(ident: dict | None) -> C.Verdict:
  if not ident:
    return C.Verdict(IDENTITY, C.INCONCLUSIVE, note="not measured")
  dev = max(ident["max_dev_bernoulli"], ident["max_dev_subsets"], ident["max_dev_norm"])
  return C.Verdict(IDENTITY, C.HOLDS if dev <= IDENTITY.margin else C.FAILS, effect=dev, note=(
      f"n = {ident['n']} tokens, p = {ident['p']:g}: max |E − p| {ident['max_dev_bernoulli']:.1e} over all "
      f"{ident['bernoulli_masks']} i.i.d. Bernoulli masks, {ident['max_dev_subsets']:.1e} over all "
      f"{ident['subsets']} kept subsets (DropToken / MAE); max |Norm(pA) − A| {ident['max_dev_norm']:.1e}"))


def measurements(timing) -> list[str]:
  """Single benchmark numbers (medians of interleaved rounds), reported without a test."""
  tp = (timing or {}).get("pretrain") or {}
  if "mae@0.75" not in tp or "mlm@0.75" not in tp:
    return []
  return [f"MAE-style pre-training step at MAE's 75% ratio {tp['mae@0.75'] * 1000:.1f} ms vs MLM "
          f"{tp['mlm@0.75'] * 1000:.1f} ms (15%: {tp.get('mae', np.nan) * 1000:.1f} vs "
          f"{tp.get('mlm', np.nan) * 1000:.1f} ms): MAE-style is "
          f"{'cheaper' if tp['mae@0.75'] < tp['mlm@0.75'] else 'not cheaper'} at 75% (MAE paper: cheaper)"]


def _stat(d: dict | None, prefix: str = "") -> stats.Stat:
  """The values of {unit: value} whose unit starts with prefix ("s0/": one pre-training seed)."""
  return stats.Stat([v for u, v in (d or {}).items() if u.startswith(prefix)])


def pairs_needed(sd: float, target: float = MARGIN) -> int | None:
  """Smallest n with a 95% paired-t CI half-width t_{0.975, n-1} sd / sqrt(n) <= target (None: > 10000)."""
  return next((n for n in range(2, 10_001) if sp_stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) <= target), None)


def table_power(verdicts, data, files) -> tuple[str, str]:
  """Each paired accuracy claim: the effect per pre-training seed, the 95% CI half-width reached by the seed-level
  paired t (the claims' test) and with the test files resampled too (seed x file-cluster bootstrap,
  kexue_jax/evals/clustered.py), against the ±1 point target; and the pairs a ±1 point CI needs at the measured
  SD of the paired differences. Returns (table, the line on what the target would take)."""
  from kexue_jax.evals import clustered  # pylint: disable=g-import-not-at-top
  rows, reached, worst = [], 0, (0, "", 0)
  for v in verdicts:
    c = v.claim
    if c.test != "paired" or c.scale != 100 or c.a not in data or c.b not in data or c.unit == PT_UNIT:
      continue   # the table is on seed pairs; claims between pre-training arms have pre-training seeds as units
    units = sorted(set(data[c.a]) & set(data[c.b]))
    d = {u: data[c.a][u] - data[c.b][u] for u in units}
    seeds = sorted({u.split("/")[0] for u in units if "/" in u})
    win = [data.get("win:" + n.split(":", 1)[1] if n.startswith("acc:") else "win:" + n, {}) for n in (c.a, c.b)]
    boot = "—"
    if files is not None and all(u in w for w in win for u in units) and len(units) > 1:
      se = clustered.cluster_bootstrap_se(np.stack([win[0][u] - win[1][u] for u in units]), files)[1]
      boot = f"±{1.96 * se * 100:.2f}"
    sd = float(np.std(list(d.values()), ddof=1)) if len(d) > 1 else float("nan")
    need = pairs_needed(sd) if np.isfinite(sd) else None
    half = (v.ci[1] - v.ci[0]) / 2 * 100
    reached += bool(half <= MARGIN * 100)
    worst = max(worst, (need or 10_001, c.id, max(len(seeds), 1))) if np.isfinite(sd) else worst
    rows.append([c.id, len(units), f"{v.effect * 100:+.2f}" if np.isfinite(v.effect) else "—",
                 " / ".join(f"{_stat(d, s + '/').mean * 100:+.2f}" for s in seeds) or "—",
                 f"{sd * 100:.2f}" if np.isfinite(sd) else "—", f"±{half:.2f}" if np.isfinite(half) else "—", boot,
                 ("yes" if half <= MARGIN * 100 else "no") if np.isfinite(half) else "—",
                 need or ("> 10000" if np.isfinite(sd) else "—")])
  table = R.table(["claim", "pairs", "effect (pts)", "effect per pre-training seed", "SD of pair differences",
                   "95% CI, seed-level t", "95% CI, seeds × files (bootstrap)", "±1 pt reached", "pairs for ±1 pt"],
                  rows)
  need, cid, n_pt = worst
  line = (f"{reached} of {len(rows)} comparisons reached a ±{MARGIN * 100:g} point seed-level 95% CI. The widest "
          f"(claim {cid}) needs {need if need <= 10_000 else '> 10000'} seed pairs at its measured SD: "
          f"{-(-need // n_pt)} fine-tuning seeds on each of {n_pt} pre-training seed(s)." if cid else
          "(no paired accuracy comparison measured)")
  return table, line


def table_finetune(data) -> str:
  rows = []
  for init, rate, corr in (("mlm", CORR_R, 0), ("mlm", CORR_R, CORR_R), ("mae", CORR_R, 0), ("mlm", HIGH_R, 0),
                           ("mlm", HIGH_R, HIGH_R), ("none", 0, 0)):
    k = key(init, rate, corr, 0)
    acc, loss = data.get(f"acc:{k}", {}), data.get(f"loss:{k}", {})
    name = INITS[init] + (f" r={rate:g}" if rate != CORR_R and init != "none" else "") + (
        f" + correction r={corr:g}" if corr else "")
    seeds = sorted({u.split("/")[0] + "/" for u in acc if "/" in u})
    for s in seeds + [""] * (len(seeds) != 1):
      rows.append([name, s[1:-1] or "all", _stat(acc, s).n, _stat(acc, s).fmt(100, 2),
                   _stat(loss, s).fmt(digits=3)])
  return R.table(["encoder init", "pre-training seed", "runs", "test accuracy %", "test cross-entropy (nats)"],
                 rows)


def table_droptoken(data, timing, records) -> str:
  from kexue_jax.tasks import mlm  # pylint: disable=g-import-not-at-top
  tt, rows = (timing or {}).get("droptoken") or {}, []
  for p in DROPS:
    rates = [r["steps_per_sec"] for r in records if r["kind"] == "finetune" and r.get("steps_per_sec")
             and key(r["init"], r["rate"], r["correction"], r["drop"]) == key("mlm", CORR_R, 0, p)]
    t = tt.get(str(p))
    rows.append([f"{p:g}", f"{mlm.num_kept(64, p)} / 64", _stat(data.get(f"acc:{key('mlm', CORR_R, 0, p)}")).fmt(100),
                 "—" if t is None else f"{t * 1000:.1f}", f"{np.mean(rates):.2f}" if rates else "—"])
  return R.table(["DropToken p", "kept tokens", "test accuracy %", "step time (ms, benchmark)",
                  "steps/s in the runs"], rows)


def table_published(data) -> str:
  ref, base = np.array(published.SU_DROPTOKEN[0.0]), _stat(data.get(f"acc:{key('mlm', CORR_R, 0, 0)}"))
  rows = []
  for p, row in published.SU_DROPTOKEN.items():
    st = _stat(data.get(f"acc:{key('mlm', CORR_R, 0, p)}"))
    rows.append([f"{p:g}", *[f"{x:.2f}" for x in row], f"{np.mean(np.array(row) - ref):+.2f}",
                 f"{(st.mean - base.mean) * 100:+.2f}" if st.n and base.n else "—"])
  return R.table(["p", *published.SU_DROPTOKEN_TASKS, "Su: mean Δ vs p=0", "ours: Δ vs p=0 (pts)"], rows)


def table_pretrain(records, timing) -> str:
  tp, rows = (timing or {}).get("pretrain") or {}, []
  ms = lambda k: "—" if k not in tp else f"{tp[k] * 1000:.1f}"
  for r in R.finished(records, kind="pretrain"):
    m = r["mode"]
    rows.append([f"{INITS[m]} r={r['rate']:g}", r["pt_seed"], r.get("step"), f"{r['wall_time_s']:.0f}", ms(m),
                 ms(m + "@0.5"), ms(m + "@0.75"), f"{r['eval']['loss']:.3f}", f"{r['eval']['accuracy'] * 100:.1f}"])
  return R.table(["pre-training", "seed", "steps", "wall time (s)", "step 15% (ms)", "step 50%", "step 75%",
                  "eval loss (masked bytes)", "eval acc % (masked bytes)"], rows)


def table_drift(records) -> str:
  rows = [[f"MLM r={r['rate']:g} seed {r['pt_seed']}", f"{d['cos_dist_corrected_vs_plain']:.4f}",
           f"{d['cos_dist_mc_vs_plain']:.4f} / {d['cos_dist_mc_vs_corrected']:.4f}",
           f"{d['kl_mc_vs_plain']:.4f} / {d['kl_mc_vs_corrected']:.4f}",
           f"{d['kl_gain'] * 1000:+.2f} ± {d['kl_gain_se'] * 1000:.2f}",
           f"{d['acc_unmasked_plain'] * 100:.2f} / {d['acc_unmasked_corrected'] * 100:.2f}", d["num_files"]]
          for r in records for d in [r.get("drift")] if d]
  return R.table(["checkpoint", "1 − cos(h(x; E_corr), h(x; E))", "1 − cos(h̄, h): plain / corrected",
                  "KL(P̄ ‖ P): plain / corrected", "KL gain ×1000 ± SE (files)",
                  "MLM acc % unmasked: plain / corr.", "test files"], rows) if rows else "(not measured)"


def plots(data, timing, out_dir) -> list[str]:
  fig, ax = R.figure(1, 2)
  ps = [p for p in DROPS if f"acc:{key('mlm', CORR_R, 0, p)}" in data]
  R.mean_sd(ax[0, 0], ps, [data[f"acc:{key('mlm', CORR_R, 0, p)}"] for p in ps], 100, capsize=4,
            label="test accuracy (mean ± sd over seed pairs)")
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
  timing, setup = extras_.get("timing"), extras_.get("setup") or {}
  data = samples(records, extras_)
  verdicts = C.judge_all(claims(), data) + [identity_verdict(extras_.get("identity"))]
  counts, files = extras_.get("eval_counts") or [], extras_.get("eval_files")
  power, power_line = table_power(verdicts, data, np.asarray(files) if files else None)
  return R.write(
      __file__, out_dir, meta, verdicts, records, plots(data, timing, out_dir),
      **{k: setup.get(k, "?") for k in ("pretrain_steps", "finetune_steps", "pool", "train_per_class",
                                        "eval_per_file")},
      n_files=len(set(files)) if files else "?", classes=", ".join(extras_.get("classes") or []), n_eval=sum(counts),
      majority=f"{max(counts) / sum(counts) * 100:.1f}" if counts else "?", power=power, power_line=power_line,
      measurements="\n".join(f"- {m}" for m in measurements(timing)) or "(not measured)",
      finetune=table_finetune(data), droptoken=table_droptoken(data, timing, records),
      pretrain=table_pretrain(records, timing), drift=table_drift(records), published=table_published(data),
      su_correction=published.SU_CORRECTION, su_droptoken=published.SU_DROPTOKEN_VERDICT)
