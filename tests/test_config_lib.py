"""config_lib.load_config: ``path.py[:arg]`` specs and dotted overrides (the one config loader)."""
import pathlib

import pytest

from kexue_jax import config_lib

REPO = pathlib.Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "lm" / "tiny.py")


def test_spec_arg_and_overrides():
  plain = config_lib.load_config(TINY)
  local = config_lib.load_config(TINY + ":runlocal")
  assert plain.num_train_steps == 300 and local.num_train_steps != plain.num_train_steps
  c = config_lib.load_config(TINY + ":steps=7", ["optimizer.learning_rate=0.5", "seed=3"])
  assert (c.num_train_steps, c.seed, c.optimizer.learning_rate) == (7, 3, 0.5)
  c = config_lib.load_config(TINY, {"data.name": "x", "batch_size": 4})
  assert (c.data.name, c.batch_size) == ("x", 4)


def test_split_spec():
  assert config_lib.split_spec("a/b.py:x=1,y") == ("a/b.py", "x=1,y")
  assert config_lib.split_spec("a/b.py") == ("a/b.py", None)


@pytest.mark.parametrize("bad, match", [(["nope=1"], "no key 'nope'"), (["data.nope=1"], "no key 'nope'"),
                                        (["seed=abc"], "seed=")])
def test_bad_overrides_name_the_key(bad, match):
  with pytest.raises(ValueError, match=match):
    config_lib.load_config(TINY, bad)


def test_missing_file():
  with pytest.raises(ValueError, match="does not exist"):
    config_lib.load_config("configs/none/such.py")


def test_sibling_loads_through_the_same_loader():
  c = config_lib.load_config(str(REPO / "configs" / "length_extrapolation" / "rope.py") + ":runlocal")
  assert c.num_train_steps >= 1
