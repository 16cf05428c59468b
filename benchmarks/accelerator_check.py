r"""One GPU check, about 5-8 minutes on one H200: fast attention kernels against the XLA reference, the attention
benchmark, and N training steps of the length-extrapolation `medium` config with MFU against the bf16 peak.

    python benchmarks/accelerator_check.py                     # on a GPU machine; writes benchmarks/gpu/
    python benchmarks/accelerator_check.py --smoke             # the same plumbing on CPU at toy sizes

1. Kernels (forward and gradients, bf16 inputs, against `attend(kernel="xla")` on the same inputs in
   float32): cuDNN flash attention (`kernel="cudnn"`: RoPE causal, causal sliding window, NoPE
   bidirectional) and the Pallas ReRoPE kernel through Triton (`kernel="pallas_rerope"`: ReRoPE and Leaky
   ReRoPE, causal and bidirectional). The compiled HLO must contain the kernel (a cuDNN fMHA / Triton
   custom call), so a silent fallback to XLA fails the check. Tolerance: max |kernel - reference| <=
   3e-2 * max |reference| (bf16 has 8 bits of mantissa; the kernels accumulate in float32).
2. `benchmarks/attention.py --pallas` at GPU lengths, into benchmarks/gpu/.
3. `train.run` of `configs/length_extrapolation/rope.py:scale=medium` for --steps steps (no eval, no
   checkpoints): steps/s, tokens/s and MFU (XLA's FLOPs of the compiled step / datasheet bf16 peak,
   kexue_jax.metrics) from the logged windows after the first.

Exit status 1 when a kernel check fails. Results: benchmarks/gpu/RESULTS_accelerator.md (+ the JSON).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from kexue_jax import metrics as metrics_lib  # noqa: E402  pylint: disable=wrong-import-position
from kexue_jax import train  # noqa: E402  pylint: disable=wrong-import-position
from kexue_jax.nn import attention as A  # noqa: E402  pylint: disable=wrong-import-position
from kexue_jax.nn import fast_attention  # noqa: E402  pylint: disable=wrong-import-position

TOL = 3e-2
KERNEL_MARKS = {"cudnn": ("cudnn", "fmha"), "pallas_rerope": ("triton", "rerope_flash")}


def kernel_cases():
  C = A.AttentionConfig
  return [
      ("cudnn", "RoPE causal", C(position="rope", kernel="cudnn")),
      ("cudnn", "RoPE causal window 256", C(position="rope", window=256, kernel="cudnn")),
      ("cudnn", "NoPE bidirectional", C(position="none", causal=False, kernel="cudnn")),
      ("pallas_rerope", "ReRoPE w=256 causal", C(position="rerope", rerope_window=256, kernel="pallas_rerope")),
      ("pallas_rerope", "ReRoPE w=256 bidirectional",
       C(position="rerope", rerope_window=256, causal=False, kernel="pallas_rerope")),
      ("pallas_rerope", "Leaky ReRoPE w=256 k=16 causal",
       C(position="leaky_rerope", rerope_window=256, leaky_k=16.0, kernel="pallas_rerope")),
  ]


def check_kernels(B, L, H, D, smoke):
  rows, ok = [], True
  keys = jax.random.split(jax.random.key(0), 4)
  q, k, v = (jax.random.normal(kk, (B, L, H, D), jnp.float32).astype(jnp.bfloat16) for kk in keys[:3])
  g = jax.random.normal(keys[3], (B, L, H, D), jnp.float32)
  for kernel, name, cfg in kernel_cases():
    if smoke and kernel == "cudnn":
      fast_attention.CUDNN_IMPLEMENTATION = "xla"   # CPU: the cuDNN branch's plumbing with XLA standing in
    ref_cfg = dataclasses.replace(cfg, kernel="xla")

    def loss(q, k, v, c):
      out = A.attend(q, k, v, config=c).astype(jnp.float32)
      return jnp.sum(out * g), out

    def run(c, dtype):
      fn = jax.jit(jax.value_and_grad(lambda q, k, v: loss(q, k, v, c), argnums=(0, 1, 2), has_aux=True))
      args = tuple(x.astype(dtype) for x in (q, k, v))
      text = fn.lower(*args).compile().as_text() or ""
      (_, out), grads = fn(*args)
      return np.asarray(out, np.float64), [np.asarray(x, np.float64) for x in grads], text

    t0 = time.perf_counter()
    try:
      out, grads, hlo = run(cfg, jnp.bfloat16)
      ref, ref_grads, _ = run(ref_cfg, jnp.float32)
      used = smoke or any(m in hlo.lower() for m in KERNEL_MARKS[kernel])
      errs = [np.abs(out - ref).max() / np.abs(ref).max()] + [
          np.abs(a - b).max() / np.abs(b).max() for a, b in zip(grads, ref_grads)]
      passed = bool(used and max(errs) <= TOL)
      rows.append({"kernel": kernel, "case": name, "kernel_in_hlo": bool(used), "rel_err_out": float(errs[0]),
                   "rel_err_grads_max": float(max(errs[1:])), "passed": passed, "s": time.perf_counter() - t0})
    except Exception as e:  # noqa: BLE001 - record, keep checking the others
      passed = False
      rows.append({"kernel": kernel, "case": name, "error": str(e).splitlines()[0][:200], "passed": False})
    ok &= passed
    print(json.dumps(rows[-1]), flush=True)
  return rows, ok


def attention_benchmark(out_dir, smoke):
  args = (["--lengths", "128,256", "--repeats", "2"] if smoke else
          ["--lengths", "1024,4096,16384", "--repeats", "5", "--heads", "8", "--head_dim", "128",
           "--dense_max", "8192", "--pallas"])
  t0 = time.perf_counter()
  p = subprocess.run([sys.executable, os.path.join(HERE, "attention.py"), *args, "--out", out_dir],
                     cwd=ROOT, capture_output=True, text=True, check=False, timeout=240)
  return {"returncode": p.returncode, "s": time.perf_counter() - t0,
          "tail": (p.stdout + p.stderr).strip().splitlines()[-3:]}


def le_medium_steps(steps, smoke):
  from kexue_jax import config_lib  # pylint: disable=g-import-not-at-top
  path = os.path.join(ROOT, "configs/length_extrapolation/rope.py")
  config = config_lib.load_sibling(path, "rope.py").get_config("scale=tiny" if smoke else "scale=medium")
  config.num_train_steps = steps
  config.log_every_steps = max(1, steps // 6)
  config.eval_every_steps = 0
  config.checkpoint_every_steps = 0
  config.num_eval_batches = 1
  config.progress_bar = False
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    summary = train.run(config, workdir)
    recs = [r for r in metrics_lib.read_metrics(workdir) if "steps_per_sec" in r]
  steady = recs[1:] or recs   # the first window includes compilation
  mean = lambda key: float(np.mean([r[key] for r in steady if key in r])) if any(key in r for r in steady) else None
  return {"config": "configs/length_extrapolation/rope.py:scale=" + ("tiny" if smoke else "medium"),
          "steps": steps, "num_params": summary["num_params"], "batch_size": config.batch_size,
          "seq_len": config.data.seq_len, "steps_per_sec": mean("steps_per_sec"),
          "tokens_per_sec": mean("tokens_per_sec"), "mfu": mean("mfu"),
          "peak_bf16_flops_per_device": metrics_lib.peak_flops_per_device(),
          "final_loss": summary["train"].get("loss"), "wall_s": time.perf_counter() - t0}


def write_report(out_dir, result):
  lines = ["# Accelerator check (benchmarks/accelerator_check.py)", "",
           f"Device: {result['device']}; jax {jax.__version__}; {platform.platform()}.", "",
           "## Kernels vs the XLA reference (bf16 inputs; reference float32 on the same inputs)", "",
           "| kernel | case | in compiled HLO | rel. err out | rel. err grads (max) | passed |",
           "|---|---|---|---|---|---|"]
  for r in result["kernels"]:
    if "error" in r:
      lines.append(f"| {r['kernel']} | {r['case']} | | | | **error**: {r['error']} |")
    else:
      lines.append(f"| {r['kernel']} | {r['case']} | {r['kernel_in_hlo']} | {r['rel_err_out']:.2e} | "
                   f"{r['rel_err_grads_max']:.2e} | {'yes' if r['passed'] else '**no**'} |")
  b = result["benchmark"]
  lines += ["", f"## Attention benchmark: exit {b['returncode']}, {b['s']:.0f} s "
            "(table: RESULTS_attention.md in this folder)", ""]
  t = result["training"]
  mfu = "n/a" if t["mfu"] is None else f"{t['mfu']:.1%}"
  lines += ["## Training steps", "",
            f"`{t['config']}`: {t['num_params']:,} parameters, batch {t['batch_size']} x {t['seq_len']} tokens, "
            f"{t['steps']} steps: {t['steps_per_sec']:.2f} steps/s, {t['tokens_per_sec']:,.0f} tokens/s, "
            f"MFU {mfu} of {t['peak_bf16_flops_per_device'] / 1e12:.0f} TFLOP/s bf16; final loss "
            f"{t['final_loss']:.3f}; {t['wall_s']:.0f} s.", "",
            f"Total: {result['total_s']:.0f} s."]
  with open(os.path.join(out_dir, "RESULTS_accelerator.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=300, help="LE medium training steps")
  ap.add_argument("--smoke", action="store_true", help="toy sizes, to test the plumbing on CPU")
  ap.add_argument("--out", default=os.path.join(HERE, "gpu"))
  args = ap.parse_args()
  t0 = time.perf_counter()
  os.makedirs(args.out, exist_ok=True)
  if not args.smoke and jax.default_backend() != "gpu":
    sys.exit(f"accelerator_check: needs a GPU (backend is {jax.default_backend()}); --smoke runs it on CPU.")
  dev = jax.devices()[0]
  shape = (1, 256, 2, 64) if args.smoke else (4, 4096, 8, 128)
  kernels, ok = check_kernels(*shape, smoke=args.smoke)
  result = {"device": f"{jax.device_count()} x {dev.device_kind}", "kernels": kernels,
            "benchmark": attention_benchmark(args.out, args.smoke),
            "training": le_medium_steps(3 if args.smoke else args.steps, args.smoke)}
  result["total_s"] = time.perf_counter() - t0
  with open(os.path.join(args.out, "accelerator_check.json"), "w") as f:
    json.dump(result, f, indent=1, default=str)
  write_report(args.out, result)
  print(open(os.path.join(args.out, "RESULTS_accelerator.md")).read())
  sys.exit(0 if ok else 1)


if __name__ == "__main__":
  main()
