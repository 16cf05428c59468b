"""Per-update time and optimizer-state bytes: our lion vs optax.lion, optax.adamw, tiger.

One jitted `(params, state, grads) -> (params', state')` per optimizer, params
and state donated, on a transformer-shaped pytree (embedding, L layers of
attention/MLP kernels + biases + norm scales, untied head). The optimizers run
interleaved in one process: each round times `--iters` steps of each, in
alternating order; the table reports the median over rounds and the ratio to
optax.lion measured the same way.

    python benchmarks/optimizers.py [--size 512] [--layers 6] [--rounds 7]
        [--iters 10] [--out benchmarks/RESULTS_optimizers.md]
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from kexue_jax import optim  # pylint: disable=g-import-not-at-top


def transformer_params(d=512, layers=6, vocab=8192, mlp=4, seed=0):
  r = np.random.RandomState(seed)
  w = lambda *s: jnp.asarray(r.randn(*s) * 0.02, jnp.float32)
  z = lambda *s: jnp.zeros(s, jnp.float32)
  o = lambda *s: jnp.ones(s, jnp.float32)
  block = lambda: {
      "attn": {"qkv": {"kernel": w(d, 3 * d), "bias": z(3 * d)},
               "out": {"kernel": w(d, d), "bias": z(d)}},
      "mlp": {"wi": {"kernel": w(d, mlp * d), "bias": z(mlp * d)},
              "wo": {"kernel": w(mlp * d, d), "bias": z(d)}},
      "ln1": {"scale": o(d), "bias": z(d)},
      "ln2": {"scale": o(d), "bias": z(d)},
  }
  return {"embed": {"embedding": w(vocab, d)},
          **{f"block_{i}": block() for i in range(layers)},
          "ln_f": {"scale": o(d), "bias": z(d)},
          "head": {"kernel": w(d, vocab)}}


def optimizers():
  return {
      "ours lion": optim.lion(3e-4, weight_decay=0.1),
      "optax.lion": optax.lion(3e-4, weight_decay=0.1),
      "optax.adamw": optax.adamw(1e-3, weight_decay=0.1),
      "ours tiger": optim.tiger(1e-3),
      "ours lion bf16 mu": optim.lion(3e-4, weight_decay=0.1,
                                      mu_dtype=jnp.bfloat16),
      "optax.lion bf16 mu": optax.lion(3e-4, weight_decay=0.1,
                                       mu_dtype=jnp.bfloat16),
  }


NOTES = """Why our f32 Lion is faster: with the state donated, the new momentum is
written over the old one's buffer. optax.lion's sign step still reads the old
momentum, so XLA first copies the whole momentum (visible as a `copy` in the
compiled HLO) and both loops read the copy. Ours computes the same c_t from the
new momentum, c_t = (b1/b2)·m_t + (1 - b1/b2)·g_t, so the loops are ordered
(momentum, then params) and no copy is needed (see `kexue_jax/optim/lion.py`,
`blend`). With bf16 momentum we keep the direct form (a bf16-rounded m_t would
blur c_t), so that row pays the copy like optax does. Tiger has the same memory
traffic as our Lion. Timings are on a shared, loaded CPU: compare ratios, which
are taken within each round."""


def nbytes(tree):
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--size", type=int, default=512, help="model width d")
  ap.add_argument("--layers", type=int, default=6)
  ap.add_argument("--vocab", type=int, default=8192)
  ap.add_argument("--rounds", type=int, default=7)
  ap.add_argument("--iters", type=int, default=10, help="steps timed per round")
  ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__),
                                                "RESULTS_optimizers.md"))
  args = ap.parse_args(argv)

  base = transformer_params(args.size, args.layers, args.vocab)
  n_params = sum(x.size for x in jax.tree.leaves(base))
  r = np.random.RandomState(1)
  grads = jax.tree.map(lambda x: jnp.asarray(r.randn(*x.shape), x.dtype), base)
  txs = optimizers()
  names = list(txs)
  run = {}
  for name, tx in txs.items():

    def step(p, s, g, tx=tx):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    f = jax.jit(step, donate_argnums=(0, 1))
    p = jax.tree.map(jnp.copy, base)
    s = tx.init(p)
    p, s = f(p, s, grads)  # compile + warm up
    jax.block_until_ready((p, s))
    run[name] = [f, p, s, nbytes(s)]

  times = {n: [] for n in names}
  for rnd in range(-1, args.rounds):  # round -1: untimed warm-up
    order = names if rnd % 2 == 0 else names[::-1]
    for n in order:
      f, p, s, _ = run[n]
      t0 = time.perf_counter()
      for _ in range(args.iters):
        p, s = f(p, s, grads)
      jax.block_until_ready((p, s))
      if rnd >= 0:
        times[n].append((time.perf_counter() - t0) / args.iters)
      run[n][1], run[n][2] = p, s

  ref = "optax.lion"
  like = {"ours lion": "optax.lion", "ours lion bf16 mu": "optax.lion bf16 mu"}
  med = {n: statistics.median(times[n]) for n in names}
  # Ratio per round (same round, same machine state), then its median.
  rat = lambda n, m: statistics.median(a / b for a, b in zip(times[n],
                                                             times[m]))
  ratio = {n: rat(n, ref) for n in names}
  dev = jax.devices()[0]
  lines = [
      "# Optimizer update benchmark",
      "",
      f"Command: `python benchmarks/optimizers.py --size {args.size} "
      f"--layers {args.layers} --vocab {args.vocab} --rounds {args.rounds} "
      f"--iters {args.iters}`",
      "",
      f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
      f"- jax {jax.__version__}, optax {optax.__version__}, backend "
      f"`{jax.default_backend()}`, device `{dev.device_kind}`, "
      f"{os.cpu_count()} CPUs visible, load average "
      f"{os.getloadavg()[0]:.1f} at the end, {platform.platform()}",
      f"- pytree: embedding {args.vocab}x{args.size}, {args.layers} layers "
      f"(qkv, out, MLP 4x kernels + biases, 2 norms), untied head: "
      f"{n_params / 1e6:.1f}M params, float32",
      "- one jitted step = update + apply_updates, params and state donated; "
      f"median over {args.rounds} interleaved rounds of {args.iters} steps; "
      "ratios are medians of per-round ratios",
      "",
      "| optimizer | ms / update | ratio to optax.lion | ratio to the same "
      "optax config | state MiB | state / params bytes |",
      "|---|---|---|---|---|---|",
  ]
  p_bytes = nbytes(base)
  for n in names:
    same = f"{rat(n, like[n]):.3f}" if n in like else "—"
    lines.append(f"| {n} | {med[n] * 1e3:.2f} | {ratio[n]:.3f} | {same} | "
                 f"{run[n][3] / 2**20:.1f} | {run[n][3] / p_bytes:.3f} |")
  lines += ["", NOTES, "", "Per-round ms: " + "; ".join(
      f"{n}: " + ", ".join(f"{t * 1e3:.1f}" for t in times[n]) for n in names),
            ""]
  text = "\n".join(lines)
  print(text)
  if args.out:
    with open(args.out, "w") as fh:
      fh.write(text)
  return med, ratio


if __name__ == "__main__":
  main()
