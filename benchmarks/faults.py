r"""Fault-injection campaign against the training engine: random SIGKILL/SIGTERM across 1 and 2 processes,
and single-file corruptions of a checkpoint. Writes a markdown report.

    python benchmarks/faults.py --trials 50                 # continues benchmarks/faults_result.jsonl
    python benchmarks/faults.py --report_only               # rewrites the .md from the .jsonl, runs nothing

Setup: the tiny byte LM (configs/lm/tiny.py:runlocal, batch 8, constant lr), ``STEPS`` steps, a checkpoint
every ``EVERY`` steps. 1-process runs use 8 fake CPU devices, 2-process runs 2 x 4 over gloo on 127.0.0.1
(kexue_jax/launch.py).

* **Signal trials.** A run is started, and once a random number of steps is logged every process gets
  SIGKILL (a host lost) or SIGTERM (a preemption). The same command is then run again until it finishes.
  A trial passes when the finished run's losses are bit-identical to an uninterrupted run with the same
  process count, no more steps were lost than ``max_lost`` allows (none for SIGTERM), and every resume
  exited 0. The first exit is recorded (143 after SIGTERM, -9 after SIGKILL), not judged.
* **Corruption trials.** For every file of the newest checkpoint of a finished run: flip one bit in the
  middle of the file (or, for empty files, delete it), then resume for more steps. Outcomes:
  ``verified-and-skipped`` (a one-line warning names the damaged step and the run resumes from the previous
  one), ``named error`` (exit 2 with one line), ``not read`` (the resumed run is still bit-identical to the
  reference: the file carried nothing the restore uses), or ``SILENT WRONG RESULT`` (the failure to avoid).

Resumable: every result is appended to ``--results`` (a JSON line) as soon as it is known, and each session
appends a ``{"kind": "session", ...}`` line (wall time, revision). Run again, the campaign keeps what is
there and runs only the missing signal trials (trial i draws the same process count / signal / step as in a
fresh campaign with the same ``--seed``) and the corruption pass if none was recorded; ``--fresh`` starts
over. The report counts every session's results and names the revisions they ran on.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
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


ERROR_PREFIX = "kexue: error:"  # kexue_jax.main.fail's one line


def error_line(text):
  lines = [l for l in text.splitlines() if l.startswith(ERROR_PREFIX)]
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


def draw(rng):
  """Trial parameters (process count, signal, step to signal at): the same sequence for a seed, resumed or not."""
  return rng.choice([1, 2]), rng.choice([signal.SIGKILL, signal.SIGTERM]), rng.randint(1, STEPS - 2)


def signal_trial(root, refs, i, params):
  nproc, sig, at = params
  workdir = os.path.join(root, f"trial{i}")
  shutil.rmtree(workdir, ignore_errors=True)  # left by an interrupted session
  log_dir = os.path.join(root, "logs", f"trial{i}-{time.time_ns()}")
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


def revision():
  try:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                           capture_output=True, text=True).stdout.strip()
    return out.stdout.strip() + ("+uncommitted" if dirty else "") if out.returncode == 0 else "unknown"
  except OSError:
    return "unknown"


def load(path):
  """(results, sessions) recorded in ``path`` (empty if it does not exist); results rescored."""
  if not os.path.exists(path):
    return [], []
  recs = [json.loads(line) for line in open(path) if line.strip()]
  return ([rescore(r) for r in recs if r["kind"] in ("signal", "corrupt")],
          [r for r in recs if r["kind"] == "session"])


def append(path, rec):
  with open(path, "a") as f:
    f.write(json.dumps(rec) + "\n")


def report(results, sessions, path, trials_asked):
  sig = sorted((r for r in results if r["kind"] == "signal"), key=lambda r: r["trial"])
  cor = [r for r in results if r["kind"] == "corrupt"]
  wall = sum(s["wall_s"] for s in sessions)
  kinds = collections.Counter((r["nproc"], r["signal"]) for r in sig)
  mix = ", ".join(f"{n} x {name} {kinds[n, name]}" for n in (1, 2) for name in ("SIGKILL", "SIGTERM"))
  runs = "; ".join(f"revision {s['revision']}: {s.get('signal_trials', '?')} signal trials, "
                   f"{s.get('corrupt_trials', '?')} corruptions, {s['wall_s'] / 60:.1f} min" for s in sessions)
  refs = "; ".join(dict.fromkeys(s["refs_info"] for s in sessions if s.get("refs_info")))
  no_identity = sum(r.get("bit_identical") is None for r in cor)
  lines = ["# Fault-injection campaign (benchmarks/faults.py)", "",
           f"Tiny byte LM, {STEPS} steps, checkpoint every {EVERY}; 1 process x 8 CPU devices or 2 x 4 over "
           f"gloo. Wall time {wall / 60:.1f} min in {len(sessions)} session(s) on a shared 2-core machine "
           f"({runs}).", "",
           f"* signal trials run: **{len(sig)}** of {trials_asked} asked ({mix}); passed: "
           f"**{sum(r['ok'] for r in sig)}**; with data loss or a wrong result: "
           f"**{sum(not r['bit_identical'] for r in sig)}**",
           f"* corruption trials: **{len(cor)}**; silent wrong results: "
           f"**{sum(r['outcome'] == 'SILENT WRONG RESULT' for r in cor)}**", "",
           f"A signal trial passes when the finished run is bit-identical to the uninterrupted one with the "
           f"same process count, every resume exits 0, and the steps lost (last step logged before the "
           f"signal minus the step resumed from) are at most {max_lost('SIGTERM')} for SIGTERM and "
           f"{max_lost('SIGKILL')} for SIGKILL ({' '.join(max_lost.__doc__.split('.', 1)[1].split())}) "
           f"The first exit is recorded, not judged: the engine exits 143 after a SIGTERM "
           f"(`kexue_jax.main.EXIT_CODES`); rows with 0 there ran on an engine older than that exit code.", "",
           f"References: {refs or 'not recorded'}."]
  if len(sig) < trials_asked:
    lines += ["", f"{trials_asked - len(sig)} of the {trials_asked} signal trials asked are still to run: "
              f"`python benchmarks/faults.py --trials {trials_asked}` runs only those."]
  lines += ["", "## Signal trials", "",
            "| # | procs | signal | at step | first exit | saved step | steps lost | resume exit | bit-identical | ok |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  for r in sig:
    lines.append(f"| {r['trial']} | {r['nproc']} | {r['signal']} | {r['at_step']} | {r['first_exit']} | "
                 f"{r['saved_step']} | {r['steps_lost']} | {r['resume_exit']} | {r['bit_identical']} | "
                 f"{'yes' if r['ok'] else '**NO**'} |")
  lines += ["", "## Single-file corruptions of the newest checkpoint (1 process)", ""]
  if no_identity:
    lines += [f"{no_identity} row(s) without the bit-identity flag (`None`): recorded before it was kept; their "
              f"outcome was judged from the exit code and the log.", ""]
  lines += ["| file | damage | exit | outcome | message |", "|---|---|---|---|---|"]
  for r in cor:
    msg = r["error"].replace("|", "/")[:160]
    lines.append(f"| `{r['file']}` | {r['how']} | {r['exit']} | {r['outcome']} | {msg} |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def references(root):
  """Uninterrupted 1- and 2-process runs (kept in ``root`` across sessions) and a line comparing them."""
  refs = {}
  for nproc in (1, 2):
    workdir = os.path.join(root, f"ref{nproc}")
    if len(losses(workdir)) != STEPS:
      shutil.rmtree(workdir, ignore_errors=True)
      codes, text = run(root, workdir, nproc, tag=f"ref{nproc}")
      assert codes == [0] * nproc, text[-3000:]
    refs[nproc] = losses(workdir)
  worst = max(abs(refs[1][s] - refs[2][s]) / abs(refs[1][s]) for s in refs[1])
  return refs, f"1-process vs 2-process uninterrupted losses: max relative difference {worst:.1e}"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--trials", type=int, default=50, help="signal trials wanted in all (done ones count)")
  parser.add_argument("--budget_min", type=float, default=60.0, help="stop starting trials after this")
  parser.add_argument("--root", default="/tmp/kexue_faults")
  parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "faults_result.md"))
  parser.add_argument("--results", default=None, help="JSON lines of the campaign (default: --out with .jsonl)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--no_corruption", action="store_true")
  parser.add_argument("--fresh", action="store_true", help="discard --results and start over")
  parser.add_argument("--report_only", action="store_true", help="only rewrite --out from --results")
  parser.add_argument("--dry_run", action="store_true", help="print what would run, run nothing")
  a = parser.parse_args()
  results_path = a.results or os.path.splitext(a.out)[0] + ".jsonl"
  if a.fresh and not (a.report_only or a.dry_run) and os.path.exists(results_path):
    os.remove(results_path)
  results, sessions = load(results_path)
  if a.report_only:
    report(results, sessions, a.out, a.trials)
    return
  done = {r["trial"] for r in results if r["kind"] == "signal"}
  rng = random.Random(a.seed)
  todo = [(i, params) for i, params in ((i, draw(rng)) for i in range(a.trials)) if i not in done]
  corrupt = not a.no_corruption and not any(r["kind"] == "corrupt" for r in results)
  print(f"{results_path}: {len(done)} signal trials and {len(results) - len(done)} corruptions recorded; to run: "
        f"{len(todo)} signal trials {[i for i, _ in todo]}" + (", the corruption pass" if corrupt else ""),
        flush=True)
  if a.dry_run or not (todo or corrupt):
    return
  t0 = time.time()
  end = t0 + 60 * a.budget_min
  os.makedirs(a.root, exist_ok=True)
  refs, refs_info = references(a.root)
  session = dict(kind="session", revision=revision(), started=time.strftime("%Y-%m-%d %H:%M:%S"),
                 refs_info=refs_info, signal_trials=0, corrupt_trials=0, wall_s=0.0)

  def record(rec):
    results.append(rec)
    append(results_path, rec)
    session[f"{rec['kind']}_trials"] += 1
    session["wall_s"] = time.time() - t0
    report(results, sessions + [session], a.out, a.trials)

  if corrupt:
    for rec in corruption_trials(a.root, refs, t0 + 60 * a.budget_min / 3):
      record(rec)
  for i, params in todo:
    if time.time() > end:
      break
    record(signal_trial(a.root, refs, i, params))
    print(json.dumps(results[-1]), flush=True)
  session["wall_s"] = time.time() - t0
  append(results_path, session)
  report(results, sessions + [session], a.out, a.trials)


if __name__ == "__main__":
  main()
