r"""Does the engine add overhead? Steps/s and MFU of ``kexue_jax.train.run`` vs a minimal hand-written loop.

Both train the same ~5M-parameter byte-level Transformer LM (sequence 256) with the same optax chain on
batches from the same grain pipeline; the minimal loop is the textbook one (``jax.jit`` with donation,
``jax.device_put`` of the batch, one host sync at the end). The two are interleaved round by round in one
process and the per-step times of their steady-state windows (compile and the first window excluded) are
compared by median. MFU = XLA cost-analysis FLOPs of the compiled step / (step time x measured matmul peak).

  python benchmarks/train_step.py --rounds 3 --steps 60 --out benchmarks/RESULTS_train_step.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kexue_jax import config_lib  # noqa: E402
from kexue_jax import metrics as metrics_lib  # noqa: E402
from kexue_jax import models  # noqa: E402
from kexue_jax import optim  # noqa: E402
from kexue_jax import train  # noqa: E402
from kexue_jax.data import pipeline  # noqa: E402


def bench_config(steps: int, window: int, batch: int, seq: int):
  c = config_lib.base_config()
  c.num_train_steps = steps
  c.batch_size = batch
  c.log_every_steps = window
  c.eval_every_steps = 0
  c.num_eval_batches = 1
  c.checkpoint_every_steps = 0
  c.progress_bar = False
  c.data.name = "python_stdlib_text"
  c.data.preprocess = "lm_windows"
  c.data.seq_len = seq
  c.model = dict(name="transformer_lm", vocab_size=256, num_layers=6, embed_dim=256, num_heads=4, head_dim=64,
                 mlp_dim=1024, dropout_rate=0.0, norm="pre", attention=dict(position="rope", causal=True),
                 dtype="auto", param_dtype="float32")
  c.optimizer.name = "lion"
  c.optimizer.learning_rate = 3e-4
  c.optimizer.warmup_steps = 10
  return c


def minimal_step_times(c) -> tuple[list[float], float | None]:
  """The textbook loop on the same model, optimizer and data; timed per window of the same length."""
  model = models.build_model(c.model)
  tx, _ = optim.make_optimizer(c.optimizer, c.num_train_steps)
  it = pipeline.make_train_iter(c.data, seed=c.seed, global_batch_size=c.batch_size)
  first = next(it)
  params = nn.unbox(model.init(jax.random.key(0), jnp.asarray(first["tokens"][:, :-1]))["params"])
  opt_state = tx.init(params)

  def step(params, opt_state, tokens, rng):
    def loss_fn(p):
      logits = model.apply({"params": p}, tokens[:, :-1], deterministic=False, rngs={"dropout": rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = jax.random.key(1)
  step = jax.jit(step, donate_argnums=(0, 1)).lower(params, opt_state, jnp.asarray(first["tokens"]), rng).compile()
  flops = metrics_lib.compiled_flops(step)
  times, t0, loss = [], time.perf_counter(), None
  for i in range(1, c.num_train_steps + 1):
    tokens = jax.device_put(next(it)["tokens"])
    params, opt_state, loss = step(params, opt_state, tokens, jax.random.fold_in(rng, i))
    if i % c.log_every_steps == 0:
      loss.block_until_ready()
      times.append((time.perf_counter() - t0) / c.log_every_steps)
      t0 = time.perf_counter()
  return times[1:], flops


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--steps", type=int, default=60, help="steps per run (windows of --window steps)")
  p.add_argument("--window", type=int, default=10)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--seq", type=int, default=256)
  p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                               "RESULTS_train_step.md"))
  args = p.parse_args()

  c = bench_config(args.steps, args.window, args.batch, args.seq)
  n_params = None
  engine, minimal, peaks, ratios, flops = [], [], [], [], None
  for r in range(args.rounds):
    e_round, m_round = [], []
    order = (0, 1) if r % 2 == 0 else (1, 0)  # alternate who goes first
    for who in order:
      if who == 0:
        with tempfile.TemporaryDirectory() as workdir:
          out = train.run(c, workdir)
          recs = [x for x in metrics_lib.read_metrics(workdir) if "steps_per_sec" in x][1:]
        n_params = out["num_params"]
        e_round = [1.0 / x["steps_per_sec"] for x in recs]
      else:
        m_round, flops = minimal_step_times(c)
    engine += e_round
    minimal += m_round
    # Paired per round: the load on a shared machine drifts between rounds, much less within one.
    ratios.append(float(np.median(e_round) / np.median(m_round)))
    peaks.append(metrics_lib.measure_matmul_peak())  # measured in every round: the machine is shared
    print(f"round {r}: engine {np.median(e_round) * 1e3:.2f} ms/step, minimal {np.median(m_round) * 1e3:.2f} "
          f"ms/step, ratio {ratios[-1]:.3f}", flush=True)

  peak = max(peaks)
  e, m = float(np.median(engine)), float(np.median(minimal))
  # Both loops compile to the same program (XLA cost analysis: FLOPs equal within 0.1%), so one FLOP count.
  m_mfu, e_mfu = (flops / (m * peak), flops / (e * peak)) if flops else (float("nan"),) * 2
  dev = jax.devices()[0]
  table = "\n".join([
      f"# Training-step overhead: `train.run` vs a minimal loop\n",
      f"Generated by `python benchmarks/train_step.py --rounds {args.rounds} --steps {args.steps} "
      f"--window {args.window} --batch {args.batch} --seq {args.seq}` on {datetime.date.today()}.\n",
      f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, backend `{jax.default_backend()}`, "
      f"{jax.device_count()} x `{dev.device_kind}`, jax {jax.__version__}",
      f"- model: byte-level Transformer LM, {n_params:,} parameters, sequence {args.seq}, batch {args.batch}, "
      f"Lion; {args.rounds} interleaved rounds x {args.steps // args.window - 1} steady windows of "
      f"{args.window} steps each",
      f"- peak: best 2048x2048 float32 matmul of the run, {peak / 1e9:.1f} GFLOP/s (measured each round)\n",
      "| loop | median ms/step | steps/s | MFU | ratio to minimal |",
      "| --- | ---: | ---: | ---: | ---: |",
      f"| minimal jit+optax loop | {m * 1e3:.2f} | {1 / m:.2f} | {m_mfu:.3f} | 1.000 |",
      f"| kexue_jax `train.run` | {e * 1e3:.2f} | {1 / e:.2f} | {e_mfu:.3f} | {np.median(ratios):.3f} |",
      "",
      f"Ratio = median over rounds of (engine median ms/step / minimal median ms/step) measured back to back "
      f"in the same round; per-round ratios: {', '.join(f'{x:.3f}' for x in ratios)} (goal: <= 1.03). "
      f"No GPU was available in this session, so there is no GPU row yet.",
  ])
  print(table)
  with open(args.out, "w") as f:
    f.write(table + "\n")


if __name__ == "__main__":
  main()
