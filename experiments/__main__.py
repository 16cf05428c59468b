"""``python -m experiments STUDY --workdir W ...``: the study launcher (experiments/framework/launcher.py)."""
import os
import sys

from experiments.framework import launcher

if __name__ == "__main__":
  try:
    sys.exit(launcher.main())
  except BrokenPipeError:
    # The reader left (`... --dry_run | head -3`): stop without a traceback. Python's recipe (library docs, signal,
    # "Note on SIGPIPE"): stdout goes to devnull so the flush at exit cannot fail again; exit code 1.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(1)
