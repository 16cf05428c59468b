r"""Length extrapolation (issue #5): pre-training variants, inference-time methods at 1x..8x N, Su's claims.

  python -m experiments length_extrapolation --workdir /tmp/le                    # the decisive default (~60 min)
  python -m experiments length_extrapolation --workdir /tmp/le --scale extended   # + every other variant
  python -m experiments length_extrapolation --workdir /tmp/le --scale seeds      # + 5 seeds of every compared one
  python -m experiments length_extrapolation --workdir /tmp/le --scale tiny       # smoke test (< 2 min)
  python -m experiments length_extrapolation --workdir W --config.data.glob='/my/corpus/**/*.txt'

Every run is a config of configs/length_extrapolation/ (``VARIANTS``). ``evaluate`` scores every method of
methods.py whose checkpoint is that run (kexue_jax/evals/length.py: non-repeated and repeated windows at 1x..8x N,
all targets and the tail beyond N, the growing-context protocol), the copy check at each kept checkpoint of the
baselines and probes, and the copy-accuracy curve of the positive control (``CONTROL``: pure copy data); an MLM
run (logn_mlm.py, Su's first log-n table) is scored at 1x..16x its N. The report (report.py, report_template.md)
is built from the records; ``run`` is the same from Python (the Colab notebook).

Plans (issue #18: the default <= 60 min on 2 cores; cross-checkpoint claims need >= 5 training seeds; --dry_run
prints each plan's runs and wall-time estimate, EST_S):
  default    the decisive subset: rope, rope_logn and hwfa with SEEDS = 5 training seeds each (window vs ReRoPE,
             HWFA vs ReRoPE, log n pre-trained vs retrofit vs none, PI, 5a, 8a): 15 runs.
  extended   default + the other variants (InvLeaky, KNA, CosA, HWFA2, KNA/CosA-log n), the copy-augmented
             checkpoints (the repeated column; the window / HWFA hypotheses), the copy probes, the positive control,
             Su's MLM log-n table (Attention-O / -E), issue #18's untested variants (QNA, KNA + NoPE, InvLeaky b8,
             the HWFA2 grid) and the runs that decide why our log-n gains are 3-8x smaller than an independent
             measurement (GAP_VARIANTS); 5 seeds of methods.SEED_CKPTS and the MLM runs: 70 runs.
  seeds      extended + training seeds 1-4 of the other checkpoints that cross-checkpoint claims compare (9, 9b,
             10a/b/d, 11, R5: methods.seed_scale_ckpts), after the extended runs: 114 runs.
  tiny       two checkpoints and a few methods (< 2 min). medium / full: accelerator scales.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from experiments.framework import launcher
from experiments.framework import report as report_lib
from experiments.length_extrapolation import methods as methods_lib
from experiments.length_extrapolation import report
from kexue_jax import checkpoint
from kexue_jax import config_lib
from kexue_jax import metrics
from kexue_jax.evals import length
from kexue_jax.evals import length_methods

CONFIG_DIR = "configs/length_extrapolation"
COPY_ARG = methods_lib.COPY_ARG   # the *_copy runs: the plain baseline does not copy at CPU scale (REPORT.md)
# variant -> (config file, extra config argument).
VARIANTS = {
    "rope": ("rope.py", ""), "rope_logn": ("rope_logn.py", ""), "hwfa": ("hwfa.py", ""),
    "inv_leaky": ("inv_leaky.py", ""), "kna": ("kna.py", ""), "cosa": ("cosa.py", ""),
    "hwfa2": ("hwfa2.py", ""), "kna_logn": ("kna.py", "logn"), "cosa_logn": ("cosa.py", "logn"),
    "rope_copy": ("rope.py", COPY_ARG), "rope_logn_copy": ("rope_logn.py", COPY_ARG),
    "hwfa_copy": ("hwfa.py", COPY_ARG),
    "mlm_o": ("logn_mlm.py", ""), "mlm_e": ("logn_mlm.py", "logn"),
    # Issue #18: the research note's variants not yet tested (extended plan only). QNA and KeyNorm + NoPE are Su's
    # negative controls (9859); InvLeaky b8 trains with RoPE base 80000 (9728 T6); the HWFA2 grid is Su's T7
    # (w~ in {32, ..., 256} at N = 512 -> N/16 .. N/2; its w = N/2, f = 2 point is `hwfa2` itself, 2 N/L at L = 4).
    "qna": ("qna.py", ""), "kna_nope": ("kna.py", "nope"), "inv_leaky_b8": ("inv_leaky.py", "b8"),
    **{f"hwfa2_w{w}_f{f}": ("hwfa2.py", f"w={w},f={f}") for f in (1, 2) for w in (8, 16, 32, 64) if (w, f) != (64, 2)},
    # Issue #18: why our log-n gains are 3-8x smaller than an independent measurement (a pre-norm 4-layer, 2-head,
    # d = 128 byte LM trained at 128): that architecture (arch=prenorm4x2, our sizes otherwise) with its log-n twin,
    # and the baseline trained twice as long (extended plan only, 5 seeds each: methods.GAP_PREFIXES).
    "rope_pre2h": ("rope.py", "arch=prenorm4x2"), "rope_logn_pre2h": ("rope_logn.py", "arch=prenorm4x2"),
    "rope_2xsteps": ("rope.py", "steps=2400"),
}
GAP_VARIANTS = ("rope_pre2h", "rope_logn_pre2h", "rope_2xsteps")
HWFA2_GRID = tuple(v for v in VARIANTS if v.startswith("hwfa2_w"))
MLM_VARIANTS = ("mlm_o", "mlm_e")   # Su's 8823 table: Attention-O / Attention-E (no scale argument)
DEFAULT_VARIANTS = ("rope", "rope_logn", "hwfa")
EXTRA_VARIANTS = tuple(v for v in VARIANTS if v not in DEFAULT_VARIANTS)   # the extended plan's, in this order
SEEDS = 5            # training seeds of the checkpoints that claims compare (methods.SEED_CKPTS, the MLM runs)
# Copy probes of the committed study: other baselines whose copy gap is followed over 6 checkpoints.
PROBES = ("heads=4,norm=pre,steps=2400", "copy=0.5,steps=4000")
# Positive control: the baseline trained on pure copy data (every window random printable bytes tiled with period
# N/4..N/2), its random-byte copy accuracy at every one of CONTROL_CHECKPOINTS checkpoints: how many steps the
# architecture needs to form copying when copying is all the data asks for.
CONTROL = ("copy_control", "steps=1000,copy=1,copy_source=random")
CONTROL_CHECKPOINTS = 10
TINY = ("rope", "hwfa")   # the smoke test: two checkpoints and a few methods (each method compiles its programs)
TINY_METHODS = ("rope", "ntk_mixed", "rerope_w4", "hwfa")
SCALES = ("tiny", "default", "extended", "seeds", "medium", "full")
WINDOWS = {"tiny": 8, "default": 16, "medium": 32, "full": 64}   # test windows at 8x N (more at shorter lengths)
COPY_CHECKPOINTS, PROBE_CHECKPOINTS = 4, 6
# --dry_run estimate, seconds: training per run (default: 1200 steps at the ~6 steps/s the seed replicates of the
# recorded study ran at on 2 CPU cores; an MLM run ~2x; more steps in proportion; h heads x (1 + (h - 1) / 2), a
# guess from the 4-head probe's recorded 1282 s for 2x steps) + EVAL_S per evaluated method and length (recorded:
# 1.7-3.2 s).
EST_S = {"tiny": 15.0, "default": 200.0, "medium": 3600.0, "full": 36000.0}
EVAL_S = {"tiny": 1.0, "default": 2.5, "medium": 10.0, "full": 60.0}


def _config_scale(scale: str) -> str:
  return "default" if scale in ("extended", "seeds") else scale


def config_spec(variant: str, scale: str, extra: str = "") -> str:
  fname, arg = VARIANTS[variant]
  size = ("runlocal" if scale == "tiny" else "") if variant in MLM_VARIANTS else f"scale={_config_scale(scale)}"
  arg = ",".join(filter(None, [size, arg, extra]))
  return f"{CONFIG_DIR}/{fname}" + (f":{arg}" if arg else "")


def load_config(variant: str, scale: str, extra: str = ""):
  """(config, spec) of one variant, as the study trains it."""
  spec = config_spec(variant, scale, extra)
  return launcher.load_run_config(launcher.Run(variant, spec), ()), spec


def _keep(spec: str, keep: int) -> tuple[str, ...]:
  """Overrides that keep ``keep`` + 1 checkpoints at least every steps / keep (the copy check vs steps)."""
  c = launcher.load_run_config(launcher.Run("x", spec), ())
  every = max(1, c.num_train_steps // keep)
  return (f"checkpoint_every_steps={min(c.checkpoint_every_steps or every, every)}",
          f"max_checkpoints_to_keep={keep + 1}")


def probe_name(arg: str) -> str:
  return "copy_probe__" + "".join(ch if ch.isalnum() else "_" for ch in arg)


def run_methods(name: str, variant: str, seed: int, n: int, only=None, num_layers: int = 4) -> list:
  """The methods evaluated on run `name` (seed replicates: the seed-aware ones); `only`: names to keep."""
  ms = methods_lib.all_methods(n, (variant,))
  ms = methods_lib.seed_replicates(ms, n, seed + 1, num_layers) if seed else ms
  return [m for m in ms if m.ckpt == name and (not only or m.name.split("@")[0] in only)]


def _cost(c, ref_steps: int) -> float:
  """Training time of config ``c`` relative to the baseline's (EST_S)."""
  return c.num_train_steps / ref_steps * (1 + (int(c.model.num_heads) - 1) / 2)


def _run(variant: str, seed: int, scale: str, methods, ref_steps: int) -> launcher.Run:
  """Seed ``seed`` of a variant (``<variant>_s<seed>`` for seed > 0), its labels and its --dry_run estimate."""
  name = variant + (f"_s{seed}" if seed else "")
  spec = config_spec(variant, scale, f"seed={seed}" if seed else "")
  c = launcher.load_run_config(launcher.Run(variant, spec), ())
  work = (len(c.study.test_lengths) if variant in MLM_VARIANTS else
          sum(4 if m.core else 2 for m in run_methods(name, variant, seed, int(c.data.seq_len), methods,
                                                      int(c.model.num_layers))))
  keep = _keep(spec, COPY_CHECKPOINTS) if variant in ("rope", "rope_copy") and not seed else ()
  work += 2 * (COPY_CHECKPOINTS + 1) * bool(keep)   # the copy check: 2 evaluations per kept checkpoint
  train = EST_S[_config_scale(scale)] * (2 if variant in MLM_VARIANTS else _cost(c, ref_steps))
  labels = dict(scale=scale, methods=list(methods) if methods else None, variant=variant, seed=seed)
  return launcher.Run(name, spec, labels, train + EVAL_S[_config_scale(scale)] * work, overrides=keep)


def plan(seeds: int | None = None, scale: str = "default", variants=None, methods=None) -> list[launcher.Run]:
  """Every variant at seed 0, then seeds 1.. of methods.SEED_CKPTS and the MLM runs, then the probes, then (scale
  `seeds`) seeds 1.. of methods.seed_scale_ckpts (module docstring). ``variants`` / ``methods`` (names) restrict
  the plan (the notebook, smoke tests)."""
  if scale not in SCALES:
    raise ValueError(f"length_extrapolation scales are {', '.join(SCALES)}; got {scale!r}.")
  seeds = seeds or {"tiny": 1, "medium": 3, "full": 3}.get(scale, SEEDS)
  full_set = DEFAULT_VARIANTS + EXTRA_VARIANTS
  variants = tuple(variants or (TINY if scale == "tiny" else full_set if scale in ("extended", "seeds") else
                                DEFAULT_VARIANTS))
  bad = [v for v in variants if v not in VARIANTS]
  if bad:
    raise ValueError(f"unknown variants {bad}; choose from {sorted(VARIANTS)}.")
  methods = methods or (TINY_METHODS if scale == "tiny" else None)
  rope = load_config("rope", scale)[0]
  ref_steps = rope.num_train_steps
  seeded = methods_lib.SEED_CKPTS + MLM_VARIANTS
  runs = [_run(v, seed, scale, methods, ref_steps) for seed in range(seeds)
          for v in (variants if seed == 0 else [v for v in seeded if v in variants])]
  # The copy probes (3 evaluations per kept checkpoint) and the positive control (1), on the full extended plan.
  extra = [(probe_name(a), a, PROBE_CHECKPOINTS, 3, dict(probe=a)) for a in PROBES] + [
      (*CONTROL, CONTROL_CHECKPOINTS, 1, dict(control=True))]
  labels, train_s, eval_s = dict(scale=scale, methods=None), EST_S["default"], EVAL_S["default"]
  for name, arg, keep, evals, lab in extra if scale in ("extended", "seeds") and variants == full_set else ():
    spec = config_spec("rope", scale, arg)
    cost = _cost(launcher.load_run_config(launcher.Run(name, spec), ()), ref_steps)
    runs.append(launcher.Run(name, spec, dict(labels, variant="rope", seed=0, **lab),
                             train_s * cost + evals * (keep + 1) * eval_s, overrides=_keep(spec, keep)))
  if scale == "seeds":   # issue #18 (A5): seeds 1.. of the other checkpoints that claims compare, after the rest
    more = methods_lib.seed_scale_ckpts(int(rope.data.seq_len), int(rope.model.num_layers))
    runs += [_run(v, seed, scale, methods, ref_steps) for seed in range(1, seeds) for v in more if v in variants]
  return runs


# ------------------------------------------------------------------------------------------- Evaluation.


def control_curve(config, run_dir: str) -> list[dict]:
  """Copy accuracy on 64 held-out random-byte copy windows (their copy targets) and the training loss at every
  kept checkpoint of the positive control."""
  n, batch, model = int(config.data.seq_len), int(config.batch_size), config_lib.to_dict(config.model)
  test = length.random_repeated_set(n, n, 64, seed=1)
  losses = {int(m["step"]): m["train/loss"] for m in metrics.read_metrics(run_dir) if "train/loss" in m}
  return [dict(step=step, copy_acc=float(np.mean(length.copy_accuracy(model, params, *test))),
               train_loss=float(losses.get(step, np.nan)), sequences=step * batch)
          for step, params in length.kept_checkpoints(run_dir)]


def evaluate(run, config, run_dir: str, record: dict) -> dict:
  """Every method on this checkpoint (seed replicates: the seed-aware ones), the copy check, training speed;
  an MLM run: its accuracy at every test length; the positive control: its copy curve."""
  lab, n = run.labels, int(config.data.seq_len)
  windows = WINDOWS[_config_scale(lab["scale"])]
  if (lab["variant"] in MLM_VARIANTS or lab.get("control")) and "error" in record:
    return dict(methods={})
  if lab["variant"] in MLM_VARIANTS:
    return dict(methods={}, mlm=dict(variant=config.study.variant, seed=lab["seed"], train_length=n,
                         published=config_lib.to_dict(config.study.published),
                         by_length=length.mlm_scores(config, checkpoint.load_state(run_dir)[0]["params"], windows)))
  if lab.get("control"):
    return dict(methods={}, batch_size=int(config.batch_size), seq_len=n, control_curve=control_curve(config, run_dir))
  ts = length.test_sets(config.data, windows)
  model = config_lib.to_dict(config.model)
  sps = [m["steps_per_sec"] for m in metrics.read_metrics(run_dir) if "steps_per_sec" in m]
  out = dict(setup=setup(config, ts), baselines=ts["baselines"], config_arg=record["config"],
             batch_size=int(config.batch_size), seq_len=n, tokens=int(config.num_train_steps * config.batch_size * n),
             steps_per_sec_median=float(np.median(sps)) if sps else None,
             steps_per_sec_max=float(np.max(sps)) if sps else None, methods={})
  if "error" in record:
    return out
  if lab.get("probe") or run.name in ("rope", "rope_copy"):
    out["copy_curve"] = length.copy_curve(model, run_dir, ts, [n, n * length_methods.EXTENSION] if lab.get("probe")
                                          else [n])
  if lab.get("probe"):
    return out
  ms = run_methods(run.name, lab["variant"], lab["seed"], n, lab.get("methods"), int(config.model.num_layers))
  params = checkpoint.load_state(run_dir)[0]["params"] if ms else None
  for m in ms:
    t0 = time.time()
    lengths = sorted(ts["sets"]) if m.core else [n, n * length_methods.EXTENSION]
    out["methods"][m.name] = dict(
        ckpt=m.ckpt, core=m.core, note=m.note, attention=m.attention,
        layer_fn=m.layer_fn.__name__ if m.layer_fn else None,
        **length.evaluate_method(length_methods.model_config(model, m, n), params, ts, lengths, m.core),
        eval_time_s=round(time.time() - t0, 1))
  return out


def setup(config, ts: dict) -> dict:
  n = ts["n"]
  return {"train_length": n, "test_lengths": sorted(ts["sets"]), "extension": length_methods.EXTENSION,
          "windows": {str(L): int(len(s[0])) for L, s in sorted(ts["sets"].items())},
          "windows_at_8x": int(len(ts["sets"][n * length_methods.EXTENSION][0])),
          "growing_docs": int(len(ts["growing"])),
          "steps": int(config.num_train_steps), "batch_size": int(config.batch_size),
          "model": {k: v for k, v in config_lib.to_dict(config.model).items() if k != "layer_attention"},
          "optimizer": dict(config_lib.to_dict(config.optimizer)),
          "segment_rule": "L > N: s ~ U{N..L/2}; L = N: s ~ U{N/4..N/2}",
          "eval_protocol": config.study.get("eval_protocol", "all")}


# ------------------------------------------------------------------------------------------- Records <-> report.


def _summary(r: dict) -> dict:
  keys = ("variant", "step", "num_params", "wall_time_s", "train", "eval", "config_arg", "batch_size", "seq_len",
          "tokens", "steps_per_sec_median", "steps_per_sec_max")
  return {k: r[k] for k in keys if k in r}


def to_results(records, extras: dict, meta: dict) -> dict:
  """The results dict report.py reads (runs, methods, copy curves, probes, controls, meta) from the records."""
  runs = [r for r in records if not r.get("probe") and not r.get("control")]
  first = next((r for r in runs if r["name"] == "rope"), next((r for r in records if "setup" in r), records[0]))
  legacy = extras.get("legacy_meta") or {}
  res_meta = dict(first.get("setup", {}), scale=first.get("scale"),
                  variants=[r["variant"] for r in runs if not r.get("seed")],
                  default_variants=list(DEFAULT_VARIANTS), seeds=1 + max((r.get("seed", 0) for r in runs), default=0),
                  hardware=meta.get("trained_on", ""), jax=meta.get("versions", ""),
                  date_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  train_commands={r["name"]: r.get("command", "") for r in records})
  res_meta.update({k: v for k, v in legacy.items() if k not in ("variants", "default_variants", "seeds")})
  curve = lambda name: next((r.get("copy_curve", []) for r in runs if r["name"] == name), [])
  return {"meta": res_meta, "baselines": first.get("baselines", {}), "invocations": extras.get("invocations"),
          "runs": {r["name"]: _summary(r) for r in runs}, "mlm": {r["name"]: r["mlm"] for r in runs if "mlm" in r},
          "methods": {k: v for r in runs for k, v in r.get("methods", {}).items()},
          "copy_vs_steps": curve("rope"), "copy_vs_steps_copy_aug": curve("rope_copy"),
          "copy_probes": [{"arg": r["probe"], "summary": _summary(r), "curve": r.get("copy_curve", [])}
                          for r in records if r.get("probe")],
          "copy_controls": [dict(name=r["name"], config=r["config"], batch_size=r["batch_size"],
                                 train_length=r["seq_len"], steps=r["step"], wall_s=r["train_time_s"],
                                 hardware=r.get("hardware", res_meta["hardware"]), curve=r["control_curve"])
                            for r in records if r.get("control_curve")]}


def write_report(records, extras_, out_dir: str, meta: dict) -> str:
  os.makedirs(out_dir, exist_ok=True)
  if (extras_.get("legacy_meta") or {}).get("hardware") and meta.get("trained_on", "").startswith("not recorded"):
    meta = dict(meta, trained_on=extras_["legacy_meta"]["hardware"])   # runs of the former driver
  report.write_report(to_results(records, extras_, meta), out_dir, footer=report_lib.footer(meta))
  return os.path.join(out_dir, "REPORT.md")


def run(workdir: str, scale: str = "default", variants=None, methods=None, seeds: int = 1,
        out_dir: str | None = None) -> dict:
  """The study from Python (the Colab notebook): trains / reuses the runs of ``plan`` (restricted to ``variants``
  and ``methods``), evaluates them, writes the report into ``out_dir`` (default W/report); returns the results
  dict report.py reads."""
  records = [launcher.run_one(sys.modules[__name__], r, workdir, ()) for r in plan(seeds, scale, variants, methods)]
  meta = dict(report_lib.machine(),
              commands=[f"study.run({workdir!r}, {scale!r}, variants={variants}, methods={methods})"])
  meta["trained_on"] = meta["machine"]
  write_report(records, {}, out_dir or os.path.join(workdir, "report"), meta)
  return to_results(records, {}, meta)
