r"""Step time of the MLM / MAE study's programs: fine-tuning at each DropToken ratio, MLM vs MAE-style pre-training.

One jitted forward+backward of the task's loss on one fixed training batch per setting; every program is compiled
first, then `rounds` interleaved rounds of `steps` steps each (a change of machine load hits every setting alike);
the result is the median seconds per step. experiments/mlm_dropout/study.py runs it once per study (its extras,
cached in W/extras.json) and reports it; by hand, printing the same JSON:

  python benchmarks/mlm_step_time.py [--pretrain] [--runlocal]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from kexue_jax import config_lib  # noqa: E402

DROPS = (0.0, 0.1, 0.15, 0.25, 0.5)


def _config(name: str, arg: str):
  return config_lib.load_config(os.path.join(REPO, "configs", "mlm_dropout", name) + f":{arg}")


def _grad_step_fn(config):
  """(jitted forward+backward of task.loss, params, batch) on one fixed training batch."""
  import jax  # pylint: disable=g-import-not-at-top
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from kexue_jax import tasks  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  task = tasks.get_task(config)
  batch = next(pipeline.make_train_iter(config.data, seed=0, global_batch_size=config.batch_size))
  params = nn.unbox(task.init(jax.random.key(0), batch))["params"]
  fn = jax.jit(jax.grad(lambda p, b, r: task.loss({"params": p}, b, r)[0]))
  return fn, params, batch


def time_steps(configs: dict, rounds: int = 5, steps: int = 5) -> dict[str, float]:
  """{name: median seconds per forward+backward step} over interleaved rounds, every program compiled first."""
  import jax  # pylint: disable=g-import-not-at-top
  fns = {k: _grad_step_fn(c) for k, c in configs.items()}
  key = jax.random.key(0)
  for fn, p, b in fns.values():
    jax.block_until_ready(fn(p, b, key))
  times = {k: [] for k in fns}
  for _ in range(rounds):
    for k, (fn, p, b) in fns.items():
      t0 = time.perf_counter()
      for i in range(steps):
        out = fn(p, b, jax.random.fold_in(key, i))
      jax.block_until_ready(out)
      times[k].append((time.perf_counter() - t0) / steps)
  return {k: float(np.median(v)) for k, v in times.items()}


def timing_study(drops=DROPS, steps: int = 5, rounds: int = 5, extra: str = "", pretrain: bool = True) -> dict:
  """Median step times of fine-tuning at every DropToken ratio in ``drops`` and (``pretrain``) of MLM / MAE-style
  pre-training at mask rates 15/50/75% (``extra``: more config arguments, e.g. ",runlocal")."""
  ft = {str(p): _config("finetune.py", f"drop={p:g}" + extra) for p in drops}
  pre = {f"{m}@{r:g}".replace("@0.15", ""): _config("pretrain.py", f"mode={m},rate={r:g}" + extra)
         for r in (0.15, 0.5, 0.75) for m in ("mlm", "mae")} if pretrain else {}
  return {"droptoken": time_steps(ft, rounds, steps), "pretrain": time_steps(pre, rounds, steps) if pre else {}}


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--pretrain", action="store_true", help="also MLM / MAE-style pre-training at 15/50/75%%")
  p.add_argument("--runlocal", action="store_true", help="the configs' toy sizes (a smoke test)")
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--steps", type=int, default=5)
  a = p.parse_args(argv)
  print(json.dumps(timing_study(DROPS, a.steps, a.rounds, ",runlocal" * a.runlocal, a.pretrain), indent=1))


if __name__ == "__main__":
  main()
