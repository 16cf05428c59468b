"""config_lib: ``:arg`` parsing, base_config's keys, validate's one-line errors, to_dict, load_sibling, and
load_config (``path.py[:arg]`` specs and dotted overrides: the one config loader)."""
import json
import pathlib

import pytest

from kexue_jax import config_lib


def test_parse_arg():
  a = config_lib.parse_arg("runlocal,steps=7,variant=ntk", runlocal=False, steps=100, variant="rope")
  assert (a.runlocal, a.steps, a.variant) == (True, 7, "ntk")
  assert config_lib.parse_arg(None, runlocal=False).runlocal is False
  with pytest.raises(ValueError, match="unknown config argument 'nope'"):
    config_lib.parse_arg("nope", runlocal=False)


def test_parse_arg_types_follow_the_defaults():
  a = config_lib.parse_arg("lr=1,name=3,extra=[1],flag=0", lr=0.5, name="x", extra=None, flag=True)
  assert (a.lr, a.name, a.extra, a.flag) == (1.0, "3", [1], False)
  assert isinstance(a.lr, float)
  with pytest.raises(ValueError, match="needs a value"):
    config_lib.parse_arg("lr", lr=0.5)


def test_base_config_holds_only_known_top_level_keys_and_validates():
  c = config_lib.base_config()
  assert set(c.keys()) <= set(config_lib.TOP_LEVEL_KEYS)
  config_lib.validate(c)


@pytest.mark.parametrize("change, match", [
    (lambda c: c.__setitem__("optimzer", 1), r"unknown top-level config keys \['optimzer'\]"),
    (lambda c: c.__delitem__("model"), r"missing required keys \['model'\]"),
    (lambda c: c.__setitem__("batch_size", 0), "config.batch_size must be >= 1"),
    (lambda c: c.__setitem__("eval_every_steps", -1), "config.eval_every_steps must be >= 0"),
    (lambda c: c.update(batch_size=6, microbatches=4), "not divisible by config.microbatches=4"),
    (lambda c: c.__setitem__("preemption_check_every_steps", 0), "config.preemption_check_every_steps must be >= 1"),
    (lambda c: c.profile.update(start_step=0), "config.profile.start_step must be a positive integer"),
    (lambda c: c.profile.update(start_step=1, num_steps=-2), "config.profile.num_steps must be a positive"),
    (lambda c: c.profile.update(start_step=c.num_train_steps + 1), "is after the run's last step"),
])
def test_validate_errors(change, match):
  c = config_lib.base_config()
  c.unlock()
  change(c)
  with pytest.raises(ValueError, match=match):
    config_lib.validate(c)


def test_to_dict_is_json_able():
  c = config_lib.base_config()
  d = config_lib.to_dict(c)
  assert json.loads(json.dumps(d)) == d
  assert d["init_from"]["mapping"] == [["", ""]] and d["seed"] == c.seed


def test_load_sibling(tmp_path):
  (tmp_path / "_common.py").write_text("VALUE = 42\n")
  (tmp_path / "cfg.py").write_text("")
  assert config_lib.load_sibling(str(tmp_path / "cfg.py"), "_common.py").VALUE == 42


def test_to_dict_resolves_field_references_inside_lists():
  c = config_lib.base_config()
  n = c.data.get_ref("seq_len")
  c.study.lengths = [n * 1, n * 2]
  c.study.window = n // 4
  c.data.seq_len = 64
  assert config_lib.to_dict(c.study) == {"lengths": [64, 128], "window": 16}


def test_num_eval_batches_is_one_top_level_key():
  c = config_lib.base_config()
  assert "num_eval_batches" in c and "num_eval_batches" not in c.data


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
  with pytest.raises(config_lib.ConfigNotFoundError, match="no config file 'configs/none/such.py'"):
    config_lib.load_config("configs/none/such.py")


def test_short_names_and_typed_overrides_in_every_spelling():
  """One loader for the CLI, the launcher and tests: ``name:arg`` specs, and overrides given as
  ``--config.KEY=VALUE`` text (parsed to the key's type), ``key=value`` strings, pairs or a dict."""
  assert config_lib.split_spec("lm/tiny:runlocal") == ("lm/tiny", "runlocal")
  assert config_lib.split_spec("a/b.py:init=/x:y") == ("a/b.py", "init=/x:y")
  c = config_lib.load_config("lm/tiny:runlocal", [("optimizer.learning_rate", "1"), "progress_bar=off"])
  assert c.optimizer.learning_rate == 1.0 and isinstance(c.optimizer.learning_rate, float)
  assert c.progress_bar is False
  with pytest.raises(config_lib.ConfigError, match="did you mean config.optimizer"):
    config_lib.load_config("lm/tiny", {"optimzer.learning_rate": 1.0})


def test_a_config_file_that_fails_is_one_config_error(tmp_path):
  (tmp_path / "broken.py").write_text("import no_such_module_xyz\n")
  with pytest.raises(config_lib.ConfigError, match="does not load: ModuleNotFoundError"):
    config_lib.load_config(str(tmp_path / "broken.py"))
  (tmp_path / "empty.py").write_text("")
  with pytest.raises(config_lib.ConfigError, match="has no get_config"):
    config_lib.load_config(str(tmp_path / "empty.py"))


def test_sibling_loads_through_the_same_loader():
  c = config_lib.load_config(str(REPO / "configs" / "length_extrapolation" / "rope.py") + ":runlocal")
  assert c.num_train_steps >= 1
