r"""AOT-compile every accelerator config for TPU topologies and write ``benchmarks/RESULTS_tpu_aot.md``.

    pip install -e '.[tpu]'          # libtpu (no TPU needed)
    python benchmarks/tpu_aot.py     # all rows; results cached in benchmarks/RESULTS_tpu_aot.jsonl
    python benchmarks/tpu_aot.py --only simsiam --topologies v5e-8

Each (config, topology) is one ``python -m kexue_jax.aot ... --json`` subprocess (a compile that fails or
runs out of host memory does not stop the others). Rows already in the JSONL cache are not recompiled
(``--fresh`` recompiles; rows from before FLOPs/step became the model FLOPs are recompiled too, or, without a
compile, given the model FLOPs by ``--migrate_flops``); the table is rewritten after every row, so an
interrupted run keeps what it got.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(HERE, "RESULTS_tpu_aot.jsonl")
TABLE = os.path.join(HERE, "RESULTS_tpu_aot.md")

LE = ("rope", "rope_logn", "kna", "cosa", "hwfa", "hwfa2", "inv_leaky")
# Every medium/full (accelerator) config of every study, and the LM config: one of each kind first, the
# quickest compiles first (on a loaded 2-core machine the SimSiam and LE `full` steps take tens of minutes).
FIRST = ["configs/length_extrapolation/rope.py:scale=medium", "configs/rdrop/cifar100_vit.py",
         "configs/lm/tiny.py", "configs/rdrop/sst2_transformer.py", "configs/mlm_dropout/finetune_full.py",
         "configs/mlm_dropout/pretrain_full.py", "configs/mlm_dropout/pretrain_full.py:mode=mae",
         "configs/simsiam/cifar10_resnet18.py", "configs/length_extrapolation/rope.py:scale=full"]
CONFIGS = FIRST + [c for c in ([f"configs/length_extrapolation/{v}.py:scale=medium" for v in LE]
                               + [f"configs/length_extrapolation/{v}.py:scale=full" for v in LE]) if c not in FIRST]
# Evaluation configs (a pretrained checkpoint is measured, never trained): their eval step alone (--eval_only).
EVAL_ONLY = ("configs/length_extrapolation/pretrained.py:full",)
EVAL_ONLY_TOPOLOGIES = ("v5e-8", "v4-8")
# Every topology for one config of each kind; the rest on v5e-8.
ALL_TOPOLOGIES = ("v5e-8", "v5e-1", "v2-8", "v4-8", "v6e-8", "v5p-8", "v5e-16")
EVERY_TOPOLOGY = ("configs/length_extrapolation/rope.py:scale=medium", "configs/simsiam/cifar10_resnet18.py")


def plan(only: str | None, topologies: tuple[str, ...] | None):
  rows = [(c, "v5e-8") for c in FIRST[:3]] + [(EVERY_TOPOLOGY[0], "v5e-16"), (EVERY_TOPOLOGY[0], "v2-8")]
  rows += [(c, "v5e-8") for c in FIRST[3:]]
  rows += [(c, t) for c in EVERY_TOPOLOGY for t in ALL_TOPOLOGIES if t != "v5e-8" and (c, t) not in rows]
  rows += [(c, "v5e-8") for c in CONFIGS if c not in FIRST]
  rows += [(c, t) for c in EVAL_ONLY for t in EVAL_ONLY_TOPOLOGIES]
  if only:
    rows = [r for r in rows if only in r[0]]
  if topologies:
    rows = [r for r in rows if r[1] in topologies]
  return rows


def compile_one(config: str, topology: str, timeout: int) -> dict:
  # The table reports the train step (the eval step is smaller: no backward, no optimizer); for evaluation
  # configs, the eval step alone.
  cmd = [sys.executable, "-m", "kexue_jax.aot", f"--config={config}", f"--topology={topology}", "--json",
         "--eval_only" if config in EVAL_ONLY else "--noeval"]
  t0 = time.perf_counter()
  try:
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    return {"config": config, "topology": topology, "error": f"compile exceeded {timeout} s"}
  out = {"config": config, "topology": topology, "wall_s": time.perf_counter() - t0}
  last = (p.stdout.strip().splitlines() or [""])[-1]
  if last.startswith("{"):
    out.update(json.loads(last))
  else:
    out["error"] = failure_line(p.returncode, p.stderr)
  return out


def failure_line(returncode: int, stderr: str) -> str:
  """One line for a failed compile: a crash of the process (libtpu inside XLA's compile) names the signal and
  the innermost Python frame, since the last stderr line is then only faulthandler's module list."""
  lines = [l.strip() for l in stderr.strip().splitlines() if l.strip()]
  signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
  fatal = next((l for l in lines if l.startswith("Fatal Python error:")), None)
  if signum or fatal:
    frame = next((l for l in lines if l.startswith("File ")), "")
    return (f"process crashed ({fatal or f'signal {signum}'}, exit {returncode}); innermost frame: {frame}")[:300]
  return (lines or ["(no output)"])[-1][:300]


def migrate_flops(r: dict) -> dict:
  """A row compiled when FLOPs/step was XLA's per-device count x devices, with the model FLOPs instead: its old
  per-device count is exactly ``xla_flops_per_device``; the model FLOPs need no TPU compile."""
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  sys.path.insert(0, ROOT)
  from kexue_jax import aot, config_lib, train  # pylint: disable=g-import-not-at-top
  config = config_lib.load_config(r["config"])
  flops = train.model_flops_per_step(config, aot.abstract_batch(config), step=r.get("step", "train"))
  return {**r, "xla_flops_per_device": r["flops_per_device"], "flops_per_step": flops,
          "flops_per_device": flops / r["devices"],
          "projected_step_time_s": flops / (r["mfu_assumed"] * r["peak_bf16_flops_per_chip"] * r["chips"])}


def load_cache() -> dict:
  rows = {}
  if os.path.exists(CACHE):
    for line in open(CACHE):
      r = json.loads(line)
      rows[(r["config"], r["topology"])] = r
  return rows


def write_table(rows: dict, order) -> None:
  gib = lambda b: f"{b / 2**30:.2f}"
  lines = [
      "# TPU AOT compile: HBM per chip, FLOPs per step, projected step time",
      "",
      "Produced by `python benchmarks/tpu_aot.py` (libtpu installed, no TPU): `kexue_jax.aot` builds each",
      "topology's devices with `jax.experimental.topologies`, the mesh exactly as `train.run` does, and",
      "compiles the same train/eval steps (`train.build_steps`). HBM = XLA's `memory_analysis()` of the train",
      "step per chip (arguments + outputs - donated aliases + temporaries + code); FLOPs/step = the model",
      "FLOPs (`train.model_flops_per_step`: XLA's `cost_analysis()` of the global, unpartitioned step with",
      "XLA attention and no remat -- the same for every mesh; the compiled per-device count misses splash",
      "attention, a Mosaic custom call, and counts replicated work once per device); projected step time =",
      "FLOPs/step at 40% MFU of the chips' bf16 peak (`--mfu`). Compile time is this 2-core CPU machine's,",
      "shared with other jobs. Evaluation configs",
      "(train column `eval only`) compile the eval step alone (`--eval_only`): their HBM, fit, FLOPs and",
      "projected time are the eval step's.",
      "",
      f"Machine: {platform.platform()}, Python {platform.python_version()}; "
      f"jax {_version('jax')}, libtpu {_version('libtpu')}.",
      "",
      "| config | topology | chips | mesh (data, fsdp, tensor) | params | batch | HBM/chip GiB (train) | of | "
      "eval GiB | fits | FLOPs/step | proj. step ms | compile s |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for key in order:
    r = rows.get(key)
    if r is None:
      continue
    cfg = r["config"].replace("configs/", "")
    if "error" in r:
      lines.append(f"| `{cfg}` | {r['topology']} | | | | | | | | **error** | | | {r['error']} |")
      continue
    m = r["mesh"]
    stale = "xla_flops_per_device" not in r   # FLOPs counted the old way: not shown
    ms = None if stale else r["projected_step_time_s"]
    flops = "stale" if stale else f"{r['flops_per_step']:.3g}"
    train_gib = "eval only" if r.get("step") == "eval" else gib(r["hbm_bytes_per_chip"])
    lines.append(
        f"| `{cfg}` | {r['topology']} | {r['chips']} | {m['data']}, {m['fsdp']}, {m['tensor']} | "
        f"{r['num_params'] / 1e6:.1f}M | {r['batch_size']} | {train_gib} | "
        f"{gib(r['hbm_capacity_bytes'])} | {gib(r['eval_hbm_bytes_per_chip']) if 'eval_hbm_bytes_per_chip' in r else '-'} | "
        f"{'yes' if r['fits'] else '**no**'} | {flops} | "
        f"{'' if ms is None else f'{ms * 1e3:.3g}'} | {r['compile_time_s']:.0f} |")
  stale = [k for k in order if k in rows and "error" not in rows[k] and "xla_flops_per_device" not in rows[k]]
  if stale:
    lines += ["", f"FLOPs/step `stale` ({len(stale)} rows): compiled when FLOPs/step was XLA's per-device count x "
              "devices (short by the splash attention matmuls); `python benchmarks/tpu_aot.py --migrate_flops` updates them."]
  crashed = [k for k in order if k in rows and rows[k].get("error", "").startswith("process crashed")]
  if crashed:
    ok = lambda cfg: sorted(t for c, t in order if c == cfg and (c, t) in rows and "error" not in rows[(c, t)])
    lines += ["", "Crashed compiles: the compiling process died inside libtpu (`backend_compile_and_load`), "
              "with this libtpu; no error of ours was raised. "
              + "; ".join(f"`{c.replace('configs/', '')}` crashes on {t} and compiles on {', '.join(ok(c))}"
                          for c, t in crashed) + "."]
  missing = [k for k in order if k not in rows]
  if missing:
    lines += ["", f"Not compiled yet ({len(missing)}; `python benchmarks/tpu_aot.py` continues from the cache): "
              + ", ".join(f"`{c.replace('configs/', '')}` on {t}" for c, t in missing) + "."]
  advice = [(k, rows[k]) for k in order if k in rows and rows[k].get("advice")]
  if advice:
    lines += ["", "## What to change where it does not fit", ""]
    for (cfg, topo), r in advice:
      lines.append(f"- `{cfg}` on {topo}: " + "; ".join(r["advice"]))
  with open(TABLE + ".tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(TABLE + ".tmp", TABLE)


def _version(dist: str) -> str:
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  try:
    return metadata.version(dist)
  except metadata.PackageNotFoundError:
    return "not installed"


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--only", help="substring of the config path")
  ap.add_argument("--topologies", nargs="*", help="restrict to these topologies")
  ap.add_argument("--fresh", action="store_true", help="recompile rows already cached")
  ap.add_argument("--timeout", type=int, default=1800, help="seconds per compile")
  ap.add_argument("--jobs", type=int, default=2, help="compiles at once (each one process)")
  ap.add_argument("--table_only", action="store_true", help="rewrite the table from the cache, compile nothing")
  ap.add_argument("--migrate_flops", action="store_true",
                  help="give cached rows of the old FLOPs count the model FLOPs (a CPU lowering each, no compile)")
  args = ap.parse_args()
  if args.migrate_flops:
    rows = load_cache()
    for key, r in rows.items():
      if "error" not in r and "xla_flops_per_device" not in r:
        rows[key] = migrate_flops(r)
        print(f"{key[0]} @ {key[1]}: {r['flops_per_step']:.3g} -> {rows[key]['flops_per_step']:.3g}", flush=True)
    with open(CACHE + ".tmp", "w") as f:
      for k in plan(None, None):
        if k in rows:
          f.write(json.dumps(rows[k], sort_keys=True) + "\n")
    os.replace(CACHE + ".tmp", CACHE)
    args.table_only = True
  if args.table_only:
    write_table(load_cache(), plan(None, None))
    return
  rows = {} if args.fresh else load_cache()
  full_order = plan(None, None)
  # A row without `xla_flops_per_device` was written when FLOPs/step was XLA's per-device count x devices.
  todo = [key for key in plan(args.only, tuple(args.topologies or ()))
          if key not in rows or "error" in rows[key] or "xla_flops_per_device" not in rows[key]]
  lock = threading.Lock()

  def one(key):
    r = compile_one(*key, args.timeout)
    with lock:
      rows[key] = r
      with open(CACHE + ".tmp", "w") as f:
        for k in full_order:
          if k in rows:
            f.write(json.dumps(rows[k], sort_keys=True) + "\n")
      os.replace(CACHE + ".tmp", CACHE)
      write_table(rows, full_order)
      status = r.get("error") or f"{r['hbm_bytes_per_chip'] / 2**30:.2f} GiB/chip, fits={r['fits']}"
      print(f"{key[0]} @ {key[1]}: {status}", flush=True)

  with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
    list(pool.map(one, todo))
  write_table(rows, full_order)

if __name__ == "__main__":
  main()
