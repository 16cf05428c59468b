r"""Positive control for the copy check: can the study's baseline architecture learn in-context copying at all,
and after how many steps, when every training sequence is a copy task?

  python -m experiments.length_extrapolation.copy_control --out experiments/length_extrapolation
  python -m experiments.length_extrapolation.copy_control --arg heads=4,norm=pre --steps 2000

Data: printable random bytes (32..126), a segment of s ~ U{N/4, ..., N/2} tiled to N + 1 tokens (the same
distribution as the study's random-byte copy check, evaluate.random_repeated_set, with fresh draws). Nothing
but copying predicts the targets after the first copy (chance ~1/95), so their accuracy ("copy accuracy")
measures in-context copying alone. The model is `configs/length_extrapolation/rope.py:<arg>` (default Su's
single-head post-norm baseline at scale=default) trained with that config's optimizer and batch size.

Training is `kexue_jax.train.run` on that config with `copy=1,copy_source=random` (every training window is a
tiled random segment: preprocess._WindowSampler), checkpoints every `--every` steps; each checkpoint's copy
accuracy on a fixed held-out set is written to copy_control[_ARG].json (the study's REPORT.md quotes every
such file in its folder).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from experiments.length_extrapolation import evaluate
from experiments.length_extrapolation import report
from experiments.length_extrapolation import study
from kexue_jax import checkpoint
from kexue_jax import config_lib
from kexue_jax import metrics as metrics_lib
from kexue_jax import train

HERE = os.path.dirname(os.path.abspath(__file__))


def run_control(arg: str = "", steps: int = 3000, every: int = 250, seed: int = 0, workdir: str | None = None,
                log=print) -> dict:
  """Trains on pure copy data through train.run (in `workdir`, default a temporary one) and evaluates the copy
  accuracy of every checkpoint."""
  extra = ",".join(filter(None, [f"steps={steps}" if steps else "", arg, "copy=1", "copy_source=random",
                                 f"seed={seed}"]))
  config, cfg_arg = study.load_config("rope", "default", extra)
  config.checkpoint_every_steps = config.log_every_steps = every
  config.max_checkpoints_to_keep = steps // every + 2
  config.progress_bar = False
  n, batch = int(config.data.seq_len), int(config.batch_size)
  test_bt, test_seg = evaluate.random_repeated_set(n, n, 64, seed=seed + 1)
  with tempfile.TemporaryDirectory(prefix="copy_control_") as tmp:
    wd = workdir or tmp
    t0 = time.time()
    train.run(config, wd)
    wall = round(time.time() - t0, 1)
    losses = {int(m["step"]): m["train/loss"] for m in metrics_lib.read_metrics(wd) if "train/loss" in m}
    curve = []
    for step in sorted(int(p) for p in os.listdir(os.path.join(wd, "checkpoints")) if p.isdigit()):
      state, _ = checkpoint.load_state(wd, step)
      acc = float(np.mean(evaluate.copy_accuracy(config_lib.to_dict(config.model), state["params"], test_bt,
                                                 test_seg)))
      loss = losses.get(step, losses[max(s for s in losses if s <= step)] if losses else float("nan"))
      curve.append({"step": step, "copy_acc": acc, "train_loss": float(loss), "sequences": step * batch})
      log(f"[copy_control] step {step}: copy accuracy {100 * acc:.2f}%, loss {float(loss):.3f}")
  return {"arg": arg, "every": every, "config": cfg_arg, "train_length": n, "batch_size": batch, "steps": steps,
          "curve": curve, "wall_s": wall, "hardware": f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs"}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--arg", default="", help="extra rope.py config argument, e.g. heads=4,norm=pre")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--every", type=int, default=250)
  p.add_argument("--workdir", default=None, help="train.run's directory (default: a temporary one)")
  p.add_argument("--out", default=None, help="write copy_control[_ARG].json here (REPORT.md quotes it)")
  a = p.parse_args(argv)
  res = run_control(a.arg, a.steps, a.every, workdir=a.workdir, log=lambda s: print(s, flush=True))
  md = report.copy_control_md(res)
  print(md)
  if a.out:
    tag = "" if not a.arg else "_" + "".join(ch if ch.isalnum() else "_" for ch in a.arg)
    path = os.path.join(a.out, f"copy_control{tag}.json")
    with open(path + ".tmp", "w") as f:
      json.dump(res, f, indent=1)
    os.replace(path + ".tmp", path)   # atomic: the report never reads half a file


if __name__ == "__main__":
  main()
