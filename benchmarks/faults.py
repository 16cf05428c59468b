r"""Fault-injection campaign against the training engine: random SIGKILL/SIGTERM across 1 and 2 processes,
and single-file corruptions of a checkpoint. Writes a markdown report.

    python benchmarks/faults.py --trials 50 --out benchmarks/faults_result.md

Setup: the tiny byte LM (configs/lm/tiny.py:runlocal, batch 8, constant lr), ``STEPS`` steps, a checkpoint
every ``EVERY`` steps. 1-process runs use 8 fake CPU devices, 2-process runs 2 x 4 over gloo on 127.0.0.1
(kexue_jax/launch.py).

* **Signal trials.** A run is started, and once a random number of steps is logged every process gets
  SIGKILL (a host lost) or SIGTERM (a preemption). The same command is then run again until it finishes.
  A trial passes when the finished run's losses are bit-identical to an uninterrupted run with the same
  process count, no more than one checkpoint interval of steps was lost (none for SIGTERM), and every exit
  was either clean or a one-line ``kexue_jax: error:``.
* **Corruption trials.** For every file of the newest checkpoint of a finished run: flip one bit in the
  middle of the file (or, for empty files, delete it), then resume for more steps. Outcomes:
  ``verified-and-skipped`` (a one-line warning names the damaged step and the run resumes from the previous
  one), ``named error`` (exit 2 with one line), ``not read`` (the resumed run is still bit-identical to the
  reference: the file carried nothing the restore uses), or ``SILENT WRONG RESULT`` (the failure to avoid).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from kexue_jax import launch  # noqa: E402  pylint: disable=g-import-not-at-top

STEPS, EVERY = 30, 5
TIMEOUT_S = 600


def args(workdir, steps=STEPS):
  flags = dict(num_train_steps=steps, batch_size=8, log_every_steps=1, progress_bar=False,
               checkpoint_every_steps=EVERY, max_checkpoints_to_keep=10, eval_every_steps=0)
  flags["optimizer.schedule"] = "constant"
  return ["--config=configs/lm/tiny.py:runlocal", f"--workdir={workdir}",
          *[f"--config.{k}={v}" for k, v in flags.items()]]


def env(root):
  return dict(os.environ, JAX_COMPILATION_CACHE_DIR=os.path.join(root, "jax_cache"),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")


def losses(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return {}
  recs = [json.loads(line) for line in open(path) if line.strip()]
  return {r["step"]: r["train/loss"] for r in recs if "train/loss" in r}


def run(root, workdir, nproc, steps=STEPS, tag="run"):
  """Runs to completion; returns (exit codes, last stderr line of process 0, whole log of process 0)."""
  log_dir = os.path.join(root, "logs", f"{tag}-{time.time_ns()}")
  os.makedirs(log_dir)
  procs = launch.spawn(args(workdir, steps), num_processes=nproc, devices_per_process=8 // nproc,
                       env=env(root), cwd=REPO, log_dir=log_dir)
  codes = launch.wait_all(procs, TIMEOUT_S)
  text = open(os.path.join(log_dir, "process_0.log")).read()
  return codes, text


def error_line(text):
  lines = [l for l in text.splitlines() if l.startswith("kexue_jax: error:")]
  return lines[-1] if lines else ""


def max_lost(signal_name):
  """SIGTERM: nothing (the loop saves the step it reached). SIGKILL: the checkpoint being written in the
  background (async saves) may be lost too, so up to two intervals: the save of step k commits while steps
  k+1..k+EVERY run, and the save of k+EVERY first waits for it."""
  return 0 if signal_name == "SIGTERM" else 2 * EVERY


def rescore(rec):
  """Recomputes a signal trial's verdict with ``max_lost`` (for results recorded by an older version)."""
  if rec["kind"] == "signal":
    rec["ok"] = (rec["bit_identical"] and all(c == 0 for c in rec["resume_exit"])
                 and rec["steps_lost"] <= max_lost(rec["signal"]))
  return rec


def signal_trial(root, refs, i, rng):
  nproc = rng.choice([1, 2])
  sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
  at = rng.randint(1, STEPS - 2)
  workdir = os.path.join(root, f"trial{i}")
  log_dir = os.path.join(root, "logs", f"trial{i}")
  os.makedirs(log_dir)
  procs = launch.spawn(args(workdir), num_processes=nproc, devices_per_process=8 // nproc, env=env(root),
                       cwd=REPO, log_dir=log_dir)
  deadline = time.time() + TIMEOUT_S
  while time.time() < deadline and all(p.poll() is None for p in procs):
    if len(losses(workdir)) >= at:
      break
    time.sleep(0.02)
  reached = max(losses(workdir), default=0)
  for p in procs:
    if p.poll() is None:
      p.send_signal(sig)
  first_codes = launch.wait_all(procs, TIMEOUT_S)
  ckpts = sorted(int(p) for p in os.listdir(os.path.join(workdir, "checkpoints")) if p.isdigit()) \
      if os.path.isdir(os.path.join(workdir, "checkpoints")) else []
  saved = ckpts[-1] if ckpts else 0
  codes, text = run(root, workdir, nproc, tag=f"trial{i}-resume")
  got, ref = losses(workdir), refs[nproc]
  exact = got == ref
  lost = max(0, reached - saved)
  ok = exact and all(c == 0 for c in codes) and lost <= max_lost(signal.Signals(sig).name)
  shutil.rmtree(workdir, ignore_errors=True)
  return dict(kind="signal", trial=i, nproc=nproc, signal=signal.Signals(sig).name, at_step=reached,
              first_exit=first_codes, saved_step=saved, steps_lost=lost, resume_exit=codes,
              bit_identical=exact, ok=ok, error=error_line(text))


def corruption_trials(root, refs, budget_end):
  """Each file of the newest checkpoint of a finished 1-process run, damaged in turn."""
  base = os.path.join(root, "corrupt_base")
  run(root, base, 1, steps=STEPS - EVERY, tag="corrupt-base")
  step_dir = os.path.join(base, "checkpoints", str(STEPS - EVERY))
  files = sorted(os.path.relpath(os.path.join(r, f), step_dir) for r, _, fs in os.walk(step_dir) for f in fs)
  out = []
  for j, rel in enumerate(files):
    if time.time() > budget_end:
      break
    workdir = os.path.join(root, f"corrupt{j}")
    shutil.copytree(base, workdir)
    path = os.path.join(workdir, "checkpoints", str(STEPS - EVERY), rel)
    size = os.path.getsize(path)
    if size == 0:
      os.remove(path)
      how = "deleted (empty file)"
    else:
      with open(path, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0x04]))
      how = f"bit flipped at byte {size // 2} of {size}"
    codes, text = run(root, workdir, 1, tag=f"corrupt{j}")
    exact = losses(workdir) == refs[1]
    err = error_line(text)
    if codes == [0] and "damaged" in text:
      outcome = "verified-and-skipped"
    elif codes[0] != 0 and err:
      outcome = "named error"
    elif codes == [0] and exact:
      outcome = "not read (result bit-identical)"
    else:
      outcome = "SILENT WRONG RESULT" if codes == [0] else f"unclear failure (exit {codes})"
    ok = outcome != "SILENT WRONG RESULT" and not outcome.startswith("unclear") and (exact or codes[0] != 0)
    out.append(dict(kind="corrupt", file=rel, how=how, exit=codes, outcome=outcome, bit_identical=exact,
                    ok=ok, error=err))
    print(json.dumps(out[-1]), flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
  return out


def report(results, refs_info, path, wall, trials_asked):
  sig = [r for r in results if r["kind"] == "signal"]
  cor = [r for r in results if r["kind"] == "corrupt"]
  lines = ["# Fault-injection campaign (benchmarks/faults.py)", "",
           f"Tiny byte LM, {STEPS} steps, checkpoint every {EVERY}; 1 process x 8 CPU devices or 2 x 4 over "
           f"gloo. Wall time {wall / 60:.1f} min on a shared 2-core machine.", "",
           f"* signal trials run: **{len(sig)}** of {trials_asked} asked; passed: "
           f"**{sum(r['ok'] for r in sig)}**; with data loss or a wrong result: "
           f"**{sum(not r['bit_identical'] for r in sig)}**",
           f"* corruption trials: **{len(cor)}**; silent wrong results: "
           f"**{sum(r['outcome'] == 'SILENT WRONG RESULT' for r in cor)}**", "",
           f"A signal trial passes when the finished run is bit-identical to the uninterrupted one with the "
           f"same process count, every resume exits 0, and the steps lost (last step logged before the "
           f"signal minus the step resumed from) are at most {max_lost('SIGTERM')} for SIGTERM and "
           f"{max_lost('SIGKILL')} for SIGKILL ({' '.join(max_lost.__doc__.split('.', 1)[1].split())})", "",
           f"References: {refs_info}", "", "## Signal trials", "",
           "| # | procs | signal | at step | first exit | saved step | steps lost | resume exit | bit-identical | ok |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for r in sig:
    lines.append(f"| {r['trial']} | {r['nproc']} | {r['signal']} | {r['at_step']} | {r['first_exit']} | "
                 f"{r['saved_step']} | {r['steps_lost']} | {r['resume_exit']} | {r['bit_identical']} | "
                 f"{'yes' if r['ok'] else '**NO**'} |")
  lines += ["", "## Single-file corruptions of the newest checkpoint (1 process)", "",
            "| file | damage | exit | outcome | message |", "|---|---|---|---|---|"]
  for r in cor:
    msg = r["error"].replace("|", "/")[:160]
    lines.append(f"| `{r['file']}` | {r['how']} | {r['exit']} | {r['outcome']} | {msg} |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--trials", type=int, default=50)
  parser.add_argument("--budget_min", type=float, default=60.0, help="stop starting trials after this")
  parser.add_argument("--root", default="/tmp/kexue_faults")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "faults_result.md"))
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no_corruption", action="store_true")
  parser.add_argument("--rescore", default=None,
                      help="only rewrite --out from the JSON result lines of an earlier campaign's log")
  parser.add_argument("--rescore_wall_min", type=float, default=0.0)
  parser.add_argument("--rescore_refs", default="")
  a = parser.parse_args()
  if a.rescore:
    results = [rescore(json.loads(l)) for l in open(a.rescore) if l.startswith('{"kind"')]
    results.sort(key=lambda r: r["kind"])  # corruptions first, as in a campaign
    report(results, a.rescore_refs, a.out, 60 * a.rescore_wall_min, a.trials)
    return
  t0 = time.time()
  end = t0 + 60 * a.budget_min
  shutil.rmtree(a.root, ignore_errors=True)
  os.makedirs(a.root)
  rng = random.Random(a.seed)
  refs = {}
  for nproc in (1, 2):
    codes, text = run(a.root, os.path.join(a.root, f"ref{nproc}"), nproc, tag=f"ref{nproc}")
    assert codes == [0] * nproc, text[-3000:]
    refs[nproc] = losses(os.path.join(a.root, f"ref{nproc}"))
  worst = max(abs(refs[1][s] - refs[2][s]) / abs(refs[1][s]) for s in refs[1])
  refs_info = f"1-process vs 2-process uninterrupted losses: max relative difference {worst:.1e}."
  results = []
  if not a.no_corruption:
    results += corruption_trials(a.root, refs, t0 + 60 * a.budget_min / 3)
    report(results, refs_info, a.out, time.time() - t0, a.trials)
  for i in range(a.trials):
    if time.time() > end:
      break
    results.append(signal_trial(a.root, refs, i, rng))
    print(json.dumps(results[-1]), flush=True)
    report(results, refs_info, a.out, time.time() - t0, a.trials)
  report(results, refs_info, a.out, time.time() - t0, a.trials)


if __name__ == "__main__":
  main()
