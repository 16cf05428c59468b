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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # keep the console to the progress bar; --verbosity=0 for INFO
  import jax  # pylint: disable=g-import-not-at-top

  _cpu_when_libtpu_without_tpu(jax)
  config = _CONFIG.value
  if config.get("distributed_init", False):
    jax.distributed.initialize()
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
  app.run(main)


if __name__ == "__main__":
  run_main()
