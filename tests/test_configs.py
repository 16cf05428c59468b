"""Every config in configs/ builds and trains 2 steps at its `runlocal` size."""
import glob
import os

import pytest

from tests.helpers import load_config
from kexue_jax import config_lib
from kexue_jax import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"),
                                                              recursive=True)
                 if not os.path.basename(p).startswith("_"))


def test_there_are_configs():
  assert "configs/lm/tiny.py" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS)
def test_config_runs_two_steps(path, tmp_path):
  c = load_config(path, "runlocal")
  config_lib.validate(c)
  c.num_train_steps = 2
  c.progress_bar = False
  out = train.run(c, str(tmp_path))
  assert out["step"] == 2
  assert all(v == v for v in out["eval"].values())  # evaluation ran and is not NaN
