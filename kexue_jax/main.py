"""Command line: ``python -m kexue_jax.main --config configs/<group>/<name>.py[:arg] --workdir DIR``.

Any config key can be overridden with ``--config.a.b=value``; overriding a key that does not exist is an
error that names it. The resolved config is written to ``DIR/config.json``; a run started again with the
same workdir resumes from its latest checkpoint.
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, optionally with an argument: configs/lm/tiny.py:runlocal",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for config.json, metrics.jsonl and checkpoints/.")
flags.mark_flags_as_required(["config", "workdir"])
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
    print(f"kexue_jax: error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # keep the console to the progress bar; --verbosity=0 for INFO
  import jax  # pylint: disable=g-import-not-at-top

  config = _CONFIG.value
  _init_distributed(config)
  logging.info("JAX %s, process %d/%d, devices: %s", jax.__version__, jax.process_index(),
               jax.process_count(), jax.devices())
  from kexue_jax import train  # pylint: disable=g-import-not-at-top
  try:
    train.run(config, _WORKDIR.value)
  except (ValueError, train.NonFiniteError, train.ckpt_lib.CheckpointError) as e:
    # Bad input or a diverged run: one clear message instead of a traceback through the loop.
    logging.info("Traceback of the error below:", exc_info=True)
    print(f"\nkexue_jax: error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)


def run_main():
  """Console-script entry point (``kexue --config ... --workdir ...``)."""
  app.run(main)


if __name__ == "__main__":
  run_main()
