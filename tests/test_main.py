"""The command line (kexue_jax/main.py): help, one-line errors with exit code 2, typed overrides, exit codes.

The CLI tests run ``python -m kexue_jax.main`` in a subprocess; every mistake exits before any compute, so
each takes about as long as the imports.
"""
import os
import subprocess
import sys

import ml_collections
import pytest

from kexue_jax import config_lib
from kexue_jax import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, cwd=REPO, timeout=120):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.run([sys.executable, "-m", "kexue_jax.main", *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


def test_help_shows_flags_and_an_example():
  proc = cli("--help")
  assert proc.returncode == 0, proc.stderr
  for text in ("--config CONFIG[:ARGS]", "--workdir DIR", "--config.KEY=VALUE", "--eval_only", "example:",
               "lm/tiny:runlocal", "143"):
    assert text in proc.stdout, text


# (arguments after the command, a fragment the one error line must contain)
MISTAKES = {
    "key_typo": (["--config", "lm/tiny:runlocal", "--config.optimzer.learning_rate=1"],
                 "did you mean config.optimizer?"),
    "nested_key_typo": (["--config", "lm/tiny:runlocal", "--config.model.attention.positon=rope"],
                        "did you mean config.model.attention.position?"),
    "missing_config_file": (["--config", "configs/lm/tyni.py"], "did you mean 'lm/tiny'?"),
    "int_value": (["--config", "lm/tiny", "--config.num_train_steps=ten"], "expected an integer"),
    "bool_value": (["--config", "lm/tiny", "--config.progress_bar=maybe"], "expected true or false"),
    "float_value": (["--config", "lm/tiny", "--config.optimizer.learning_rate=fast"], "expected a number"),
    "group_value": (["--config", "lm/tiny", "--config.mesh=3"], "set its keys instead"),
    "no_value": (["--config", "lm/tiny", "--config.seed"], "needs a value"),
    "config_argument": (["--config", "lm/tiny:runlcal"], "unknown config argument 'runlcal'"),
    "config_argument_type": (["--config", "lm/tiny:steps=many"], "must be of type int"),
    "unknown_flag": (["--config", "lm/tiny", "--worker=3"], "Unknown command line flag 'worker'"),
    "no_config": ([], "--config and --workdir are required"),
    "eval_only_untrained": (["--config", "lm/tiny:runlocal", "--eval_only"], "has no checkpoints/"),
    "eval_step_without_eval_only": (["--config", "lm/tiny", "--eval_step=3"], "--eval_step is for --eval_only"),
    # config.profile is checked with the other config values, before any compute (not after compiling)
    "profile_start_step": (["--config", "lm/tiny:runlocal", "--config.profile.start_step=0"],
                           "config.profile.start_step must be a positive integer"),
    "profile_num_steps": (["--config", "lm/tiny:runlocal", "--config.profile.start_step=2",
                           "--config.profile.num_steps=0"], "config.profile.num_steps must be a positive integer"),
    "profile_after_the_run": (["--config", "lm/tiny:runlocal", "--config.num_train_steps=10",
                               "--config.profile.start_step=11"], "is after the run's last step"),
    # found by train.run itself (after the workdir was created and locked): the workdir is removed again
    "mesh_found_by_the_run": (["--config", "lm/tiny:runlocal", "--config.mesh.data=64"],
                              "multiplies to 64 devices"),
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_user_mistake_is_one_line_exit_2_no_workdir(name, tmp_path):
  args, fragment = MISTAKES[name]
  workdir = tmp_path / "run"
  proc = cli(*args, *([f"--workdir={workdir}"] if name != "no_config" else []))
  lines = proc.stderr.splitlines()
  assert proc.returncode == 2, proc.stderr
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("kexue: error: ") and fragment in lines[0], lines[0]
  assert not workdir.exists()


def test_short_config_name_works_from_any_directory(tmp_path):
  """`--config lm/tiny` resolves against the package from a directory without configs/ (help-free check:
  a mistake later on the line proves the config itself loaded)."""
  proc = cli("--config", "lm/tiny:runlocal", f"--workdir={tmp_path / 'run'}", "--config.no_such_key=1",
             cwd=str(tmp_path))
  assert proc.returncode == 2 and "config has no key 'no_such_key'" in proc.stderr, proc.stderr


def test_overrides_are_parsed_to_the_keys_types():
  c = config_lib.load_config("lm/tiny:runlocal", [
      ("optimizer.learning_rate", "3e-4"), ("optimizer.learning_rate", "1"), ("mesh.data", "-1"),
      ("progress_bar", "False"), ("data.glob", "/x/**/*.txt"), ("init_from.step", "5"),
      ("model.attention.position", "alibi"), ("init_from.mapping", "(('a', 'b'),)"), ("data.glob", "None")])
  assert c.optimizer.learning_rate == 1.0 and isinstance(c.optimizer.learning_rate, float)
  assert c.mesh.data == -1 and c.progress_bar is False and c.init_from.step == 5
  assert c.model.attention.position == "alibi" and c.init_from.mapping == (("a", "b"),)
  assert c.data.glob is None


def test_overrides_cannot_add_keys():
  with pytest.raises(config_lib.ConfigError, match="did you mean config.seed"):
    config_lib.load_config("lm/tiny", [("sead", "1")])


def test_split_overrides_takes_both_spellings():
  rest, overrides = main.split_overrides(["prog", "--config", "lm/tiny", "--config.seed=3", "--config.mesh.data",
                                          "2", "--workdir=w"])
  assert rest == ["prog", "--config", "lm/tiny", "--workdir=w"]
  assert overrides == [("seed", "3"), ("mesh.data", "2")]


def test_exit_codes_are_128_plus_the_signal():
  import signal
  assert main.EXIT_CODES == {"SIGTERM": 128 + signal.SIGTERM, "SIGINT": 128 + signal.SIGINT}


def test_shipped_configs_all_load_by_short_name():
  names = config_lib.shipped_configs()
  assert "lm/tiny" in names and not any(n.split("/")[1].startswith("_") for n in names)
  for name in names:
    assert isinstance(config_lib.load_config(name, []), ml_collections.ConfigDict), name


def test_error_found_by_the_run_is_one_line_naming_a_real_key(tmp_path):
  """A bad value only the run can check (warmup longer than the run) is still one line with exit 2, and the
  key it names exists (it once said config.optim.warmup_steps)."""
  proc = cli("--config", "lm/tiny:runlocal", f"--workdir={tmp_path / 'run'}", "--config.optimizer.warmup_steps=20",
             timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and "config.optimizer.warmup_steps" in lines[0], proc.stderr
  config_lib.load_config("lm/tiny", [("optimizer.warmup_steps", "1")])  # the named key can be set


def test_resolve_config_path_in_an_installed_layout(tmp_path, monkeypatch):
  """A wheel holds the configs in kexue_jax/configs/ (setup.py); a checkout has configs/ beside kexue_jax/."""
  pkg = tmp_path / "site-packages" / "kexue_jax"
  (pkg / "configs" / "lm").mkdir(parents=True)
  (pkg / "configs" / "lm" / "tiny.py").write_text("def get_config(arg=None):\n  return None\n")
  (pkg / "configs" / "lm" / "_part.py").write_text("")
  monkeypatch.setattr(config_lib, "__file__", str(pkg / "config_lib.py"))
  monkeypatch.chdir(tmp_path)
  want = str(pkg / "configs" / "lm" / "tiny.py")
  for name in ("lm/tiny", "lm/tiny.py", "configs/lm/tiny.py"):
    assert config_lib.resolve_config_path(name) == want, name
  assert config_lib.shipped_configs() == ["lm/tiny"]
  (tmp_path / "mine.py").write_text("")
  assert config_lib.resolve_config_path("mine.py") == "mine.py"  # a path here wins
  with pytest.raises(config_lib.ConfigNotFoundError, match="did you mean 'lm/tiny'"):
    config_lib.resolve_config_path("lm/tinny")
