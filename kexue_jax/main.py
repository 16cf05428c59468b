"""Command line: ``kexue --config CONFIG[:ARGS] --workdir DIR [--config.KEY=VALUE ...]`` (see :data:`USAGE`).

Every mistake in the command (unknown flag, unknown config key, a value of the wrong type, a config file that
does not exist or does not load) is reported as one line ``kexue: error: ...`` on stderr with exit code 2,
before any workdir is created or any compute starts; bad input the run itself finds (ValueError and friends
from ``train.run``) is reported the same way. A run stopped by SIGTERM/SIGINT exits with 128 + the signal
number (143/130) after its checkpoint is saved.
"""
from __future__ import annotations

import os
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging

from kexue_jax import config_lib

USAGE = """\
kexue: train a kexue_jax config, or evaluate a trained run's checkpoint.

usage: kexue --config CONFIG[:ARGS] --workdir DIR [--config.KEY=VALUE ...] [--eval_only [--eval_step=N]]
       (python -m kexue_jax.main takes the same flags)

  --config CONFIG[:ARGS]  a config file (configs/lm/tiny.py) or a shipped config's short name (lm/tiny);
                          ARGS after ':' vary it (lm/tiny:runlocal, rdrop/mnist1d:model=cnn,alpha=0).
                          Shipped:
{shipped}
  --workdir DIR           where config.json, metrics.jsonl and checkpoints/ go (a local path or gs://...).
                          The same command again resumes from DIR's latest checkpoint.
  --config.KEY=VALUE      override any config key: --config.optimizer.learning_rate=3e-4
                          --config.mesh.data=-1 --config.progress_bar=false (unknown keys are an error)
  --eval_only             evaluate DIR's latest checkpoint (or --eval_step=N) on data.eval_split, append the
                          result to DIR/eval_metrics.jsonl and exit; nothing is trained
  --coordinator_address HOST:PORT --num_processes N --process_id I
                          one process of a multi-process (multi-host) run; see the README's multi-host section
  --verbosity=0           show INFO logs (default: warnings only); --helpfull lists every absl flag

example:
  kexue --config lm/tiny:runlocal --workdir /tmp/kexue/lm_tiny

exit codes: 0 finished; 2 bad input (one line on stderr says what to change); 143 / 130 stopped by
SIGTERM / SIGINT after saving a checkpoint (run the same command to resume).
"""

_CONFIG = flags.DEFINE_string("config", None, "Config file or shipped config name, with optional ':ARGS'.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl and checkpoints/.")
_EVAL_ONLY = flags.DEFINE_bool("eval_only", False, "Evaluate a checkpoint of --workdir instead of training.")
_EVAL_STEP = flags.DEFINE_integer("eval_step", None, "With --eval_only: the checkpoint step (default latest).")

_HELP = ("-h", "-help", "--help", "-?", "--helpshort", "-helpshort")
# Exit status after a preemption signal: 128 + signal number, as a shell reports a process the signal killed.
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}
_overrides: list[tuple[str, str]] = []  # (dotted key, value text) of --config.KEY=VALUE, set by _parse_flags


def fail(message: str) -> None:
  """Prints ``kexue: error: <message>`` as one line on stderr and exits with code 2."""
  print(f"kexue: error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(2)


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates ``--config.KEY=VALUE`` / ``--config.KEY VALUE`` from the flags absl parses."""
  rest, overrides, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--":
      rest += argv[i:]
      break
    if arg.lstrip("-").startswith("config.") and arg.startswith("-"):
      key, eq, value = arg.lstrip("-")[len("config."):].partition("=")
      if not eq:
        if i + 1 == len(argv) or argv[i + 1].startswith("--"):
          raise config_lib.ConfigError(f"{arg} needs a value: {arg}=VALUE.")
        i, value = i + 1, argv[i + 1]
      overrides.append((key, value))
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parser with ``--help`` replaced by :data:`USAGE` and every flag error made one line."""
  if any(a in _HELP for a in argv[1:]):
    shipped = textwrap.fill(", ".join(config_lib.shipped_configs()) or "(none found)", width=110,
                            initial_indent=" " * 26, subsequent_indent=" " * 26)
    try:
      print(USAGE.format(shipped=shipped), flush=True)
    except BrokenPipeError:  # `kexue --help | head`: the reader closed the pipe; that is not an error
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
  try:
    rest, overrides = split_overrides(argv)
    _overrides[:] = overrides
    return flags.FLAGS(rest)
  except (flags.Error, config_lib.ConfigError) as e:
    fail(f"{str(e).rstrip('.')}; kexue --help lists the flags.")
  return []  # unreachable


# Multi-process (multi-host) start: all three together, or none (then --config.distributed_init=True lets JAX
# detect a Cloud TPU / SLURM / MPI cluster). See kexue_jax/distributed.py and the README's multi-host section.
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "HOST:PORT of process 0's coordinator.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")


def _init_distributed(config) -> None:
  """Connects the processes of a multi-host run (before any other JAX call); bad flags: one line, exit 2."""
  from kexue_jax import distributed  # pylint: disable=g-import-not-at-top
  try:
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                           auto=bool(config.get("distributed_init", False)))
  except ValueError as e:
    fail(str(e))


def main(argv):
  if len(argv) > 1:
    fail(f"unexpected arguments {argv[1:]}: flags are --config, --workdir and --config.KEY=VALUE "
         "(kexue --help).")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # keep the console to the progress bar; --verbosity=0 for INFO
  if not _CONFIG.value or not _WORKDIR.value:
    fail("--config and --workdir are required, e.g. kexue --config lm/tiny:runlocal --workdir /tmp/kexue/lm "
         "(kexue --help).")
  if _EVAL_STEP.value is not None and not _EVAL_ONLY.value:
    fail("--eval_step is for --eval_only runs; add --eval_only or drop --eval_step.")
  try:
    config = config_lib.load_config(_CONFIG.value, _overrides)
    config_lib.validate(config)  # before JAX starts: a bad value costs no backend start-up (train.run re-checks)
  except ValueError as e:  # ConfigError included
    fail(str(e))
  config.lock()  # the run reads keys; it never adds one

  import jax  # pylint: disable=g-import-not-at-top
  _cpu_when_libtpu_without_tpu(jax)  # before any backend starts, so also before jax.distributed
  _init_distributed(config)
  logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__, jax.process_index(),
               jax.process_count(), jax.devices())
  from kexue_jax import metrics as metrics_lib  # pylint: disable=g-import-not-at-top
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  try:
    if _EVAL_ONLY.value:
      train.run(config, _WORKDIR.value, eval_only=True, checkpoint_step=_EVAL_STEP.value)
      return 0
    result = train.run(config, _WORKDIR.value)
  except (ValueError, FileNotFoundError, ImportError, train.NonFiniteError, train.ckpt_lib.CheckpointError) as e:
    # Bad input or a diverged run: one clear line instead of a traceback through the loop.
    logging.info("Traceback of the error below:", exc_info=True)
    metrics_lib.close_progress_bars()
    fail(str(e))
  if result.get("preempted"):
    return EXIT_CODES.get(result["preempted"], EXIT_CODES["SIGTERM"])
  return 0


def _cpu_when_libtpu_without_tpu(jax) -> None:
  """libtpu installed (the [tpu] extra, e.g. for kexue_jax.aot) on a machine without a TPU: jax would try the
  TPU at start-up and print libtpu's warnings. Use the CPU then, unless JAX_PLATFORMS chooses."""
  import glob  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  if os.environ.get("JAX_PLATFORMS") or importlib.util.find_spec("libtpu") is None:
    return
  if glob.glob("/dev/accel*") or glob.glob("/dev/vfio/[0-9]*"):  # TPU VMs expose their chips here
    return
  if any(importlib.util.find_spec(p) for p in ("jax_cuda12_plugin", "jax_cuda13_plugin")):
    return
  jax.config.update("jax_platforms", "cpu")


def run_main():
  """Console-script entry point (``kexue --config ... --workdir ...``)."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run_main()
