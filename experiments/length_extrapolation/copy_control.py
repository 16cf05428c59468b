r"""Positive control for the copy check: can the study's baseline architecture learn in-context copying at all,
and after how many steps, when every training sequence is a copy task?

  python -m experiments.length_extrapolation.copy_control --out experiments/length_extrapolation
  python -m experiments.length_extrapolation.copy_control --arg heads=4,norm=pre --steps 2000

Data: printable random bytes (32..126), a segment of s ~ U{N/4, ..., N/2} tiled to N + 1 tokens (the same
distribution as the study's random-byte copy check, evaluate.random_repeated_set, with fresh draws). Nothing
but copying predicts the targets after the first copy (chance ~1/95), so their accuracy ("copy accuracy")
measures in-context copying alone. The model is `configs/length_extrapolation/rope.py:<arg>` (default Su's
single-head post-norm baseline at scale=default) trained with that config's optimizer and batch size.

Why a hand-written loop rather than kexue_jax.train: the data is generated on the fly (no dataset), the run
is a single-device diagnostic, and the only metric is the copy accuracy on a fixed held-out set every
`--every` steps, written to copy_control[_ARG].json (the study's REPORT.md quotes every such file in its folder).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.length_extrapolation import evaluate
from experiments.length_extrapolation import report
from experiments.length_extrapolation import run as run_lib
from kexue_jax import config_lib
from kexue_jax import models
from kexue_jax import optim

HERE = os.path.dirname(os.path.abspath(__file__))


def copy_batch(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
  """int32[batch, n + 1]: random printable segments of s ~ U{n/4..n/2} bytes tiled to n + 1."""
  seg = rng.integers(max(1, n // 4), max(1, n // 2) + 1, size=batch)
  return np.stack([np.resize(rng.integers(32, 127, size=s), n + 1) for s in seg]).astype(np.int32)


def run_control(arg: str = "", steps: int = 3000, every: int = 250, seed: int = 0, log=print) -> dict:
  config, cfg_arg = run_lib.load_config("rope", "default", steps, arg)
  n, batch = int(config.data.seq_len), int(config.batch_size)
  model_cfg = config_lib.to_dict(config.model)
  model = models.build_model(model_cfg)
  tx, _ = optim.make_optimizer(config.optimizer, steps)
  rng = np.random.default_rng(seed)
  params = nn.unbox(model.init(jax.random.key(seed), jnp.asarray(copy_batch(rng, 2, n)[:, :-1])))["params"]
  opt_state = tx.init(params)
  test_bt, test_seg = evaluate.random_repeated_set(n, n, 64, seed=seed + 1)

  @jax.jit
  def train_step(params, opt_state, tokens_BT):
    def loss_fn(p):
      logits_BLV = model.apply({"params": p}, tokens_BT[:, :-1])
      return optax.softmax_cross_entropy_with_integer_labels(logits_BLV, tokens_BT[:, 1:]).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  curve, t0 = [], time.time()
  for step in range(1, steps + 1):
    params, opt_state, loss = train_step(params, opt_state, jnp.asarray(copy_batch(rng, batch, n)))
    if step % every == 0 or step == steps:
      acc = float(np.mean(evaluate.copy_accuracy(model_cfg, params, test_bt, test_seg)))
      curve.append({"step": step, "copy_acc": acc, "train_loss": float(loss),
                    "sequences": step * batch, "wall_s": round(time.time() - t0, 1)})
      log(f"[copy_control] step {step}: copy accuracy {100 * acc:.2f}%, loss {float(loss):.3f}")
  return {"arg": arg, "every": every, "config": cfg_arg, "train_length": n, "batch_size": batch, "steps": steps, "curve": curve,
          "wall_s": round(time.time() - t0, 1), "hardware": f"{jax.devices()[0].device_kind}, {os.cpu_count()} CPUs"}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--arg", default="", help="extra rope.py config argument, e.g. heads=4,norm=pre")
  p.add_argument("--steps", type=int, default=3000)
  p.add_argument("--every", type=int, default=250)
  p.add_argument("--out", default=None, help="write copy_control[_ARG].json here (REPORT.md quotes it)")
  a = p.parse_args(argv)
  res = run_control(a.arg, a.steps, a.every, log=lambda s: print(s, flush=True))
  md = report.copy_control_md(res)
  print(md)
  if a.out:
    tag = "" if not a.arg else "_" + "".join(ch if ch.isalnum() else "_" for ch in a.arg)
    with open(os.path.join(a.out, f"copy_control{tag}.json"), "w") as f:
      json.dump(res, f, indent=1)


if __name__ == "__main__":
  main()
