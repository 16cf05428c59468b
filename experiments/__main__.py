"""``python -m experiments STUDY --workdir W ...``: the study launcher (experiments/framework/launcher.py)."""
import sys

from experiments.framework import launcher

if __name__ == "__main__":
  sys.exit(launcher.main())
