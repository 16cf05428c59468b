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


# One config per task and model family trains 2 steps through train.run by default; the others differ from
# these only in sizes, attention options or data (each traced below, their modules tested in tests/nn/) and
# train with --runslow: each costs 10-60 s of compilation on a 2-core CPU.
TRAINED_BY_DEFAULT = {"configs/lm/tiny.py", "configs/length_extrapolation/hwfa.py", "configs/mlm_dropout/pretrain.py",
                      "configs/mlm_dropout/finetune.py", "configs/rdrop/mnist1d.py", "configs/simsiam/mnist1d.py"}


@pytest.mark.parametrize("path", CONFIGS)
def test_config_builds_and_traces(path):
  """Every config at runlocal: validates; data, task and model build; init / loss / evaluate trace (no compile)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from kexue_jax import tasks  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  c = load_config(path, "runlocal")
  config_lib.validate(c)
  task = tasks.get_task(c)
  batch = jax.tree.map(jnp.asarray, next(pipeline.make_train_iter(c.data, seed=0, global_batch_size=c.batch_size)))
  eval_batch = jax.tree.map(jnp.asarray, next(iter(pipeline.make_eval_iter(
      c.data, split=c.data.eval_split, global_batch_size=c.batch_size, num_batches=1))))
  variables = jax.eval_shape(task.init, jax.random.key(0), batch)
  loss, _ = jax.eval_shape(lambda v: task.loss(v, batch, jax.random.key(1)), variables)
  assert loss.shape == () and jnp.issubdtype(loss.dtype, jnp.floating)
  out = jax.eval_shape(lambda v: task.evaluate(v, eval_batch), variables)
  assert "loss" in out


@pytest.mark.parametrize("path", [p if p in TRAINED_BY_DEFAULT else pytest.param(p, marks=pytest.mark.slow)
                                  for p in CONFIGS])
def test_config_runs_two_steps(path, tmp_path):
  c = load_config(path, "runlocal")
  config_lib.validate(c)
  c.num_train_steps = 2
  c.progress_bar = False
  out = train.run(c, str(tmp_path))
  assert out["step"] == 2
  assert all(v == v for v in out["eval"].values())  # evaluation ran and is not NaN


@pytest.mark.parametrize("path", ["configs/length_extrapolation/rope_logn.py", "configs/length_extrapolation/hwfa.py",
                                  "configs/length_extrapolation/hwfa2.py"])
def test_values_derived_from_seq_len_follow_an_override(path):
  """`--config.data.seq_len=N` moves every value derived from N (log-n base, HWFA windows, test lengths)."""
  from kexue_jax import models  # pylint: disable=g-import-not-at-top
  c = load_config(path, "runlocal")
  n0 = c.data.seq_len
  c.data.seq_len = 4 * n0      # what config_flags does for --config.data.seq_len=...
  n = c.data.seq_len
  study = config_lib.to_dict(c.study)
  assert study["train_length"] == n and study["test_lengths"] == [n, 2 * n, 4 * n, 8 * n]
  module = models.build_model(c.model)
  attn = module.attention if isinstance(module.attention, tuple) else (module.attention,)
  assert {a.logn_base_length for a in attn} == {n}
  num_layers = c.model.num_layers
  if "hwfa2" in path:
    assert study["hwfa2_window"] == 2 * n // num_layers and study["hwfa2_rerope_window"] == n // 2
    assert {a.window for a in attn} == {None, 2 * n // num_layers}
  elif "hwfa" in path:
    # largest w with (w-1)(L-1)+1 <= 3/4 N, by search
    w = max(w for w in range(1, n + 1) if (w - 1) * (num_layers - 1) + 1 <= 0.75 * n)
    assert study["hwfa_window"] == w and [a.window for a in attn] == [w] * (num_layers - 1) + [None]
  # A derived key overridden on its own keeps its value and leaves data.seq_len alone.
  c.model.attention.logn_base_length = 7
  assert c.data.seq_len == n and models.build_model(c.model).attention
  assert config_lib.to_dict(c.model)["attention"]["logn_base_length"] == 7
