"""configs/lion: every sweep entry builds a valid config and optimizer; the
embedding fixes reach the model's embedding table."""
import importlib.util
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import pytest

from tests.helpers import load_config
from kexue_jax import config_lib
from kexue_jax import optim
from kexue_jax import tasks

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = "configs/lion/byte_lm.py"


def sweeps():
  spec = importlib.util.spec_from_file_location(
      "lion_sweeps", os.path.join(REPO, "configs/lion/_sweeps.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.ALL


def test_every_sweep_entry_builds():
  for name, args in sweeps().items():
    for arg in args:
      c = load_config(CONFIG, arg)
      config_lib.validate(c)
      optim.make_optimizer(c.optimizer, c.num_train_steps)
      assert c.optimizer.name in arg or "opt=" not in arg, (name, arg)


@pytest.mark.parametrize("arg,bad", [("opt=sgd", "opt"), ("fix=tie", "fix")])
def test_bad_arguments(arg, bad):
  with pytest.raises(ValueError, match=bad):
    load_config(CONFIG, arg)


def test_emb_adamw_routes_the_embedding_table_to_adamw():
  c = load_config(CONFIG, "runlocal,untied,fix=emb_adamw")
  task = tasks.get_task(c)
  batch = {"tokens": jnp.zeros((2, c.data.seq_len + 1), jnp.int32)}
  params = nn.unbox(jax.eval_shape(lambda r: task.init(r, batch),
                                   jax.random.key(0))["params"])
  tx, _ = optim.make_optimizer(c.optimizer, c.num_train_steps)
  state = jax.eval_shape(tx.init, params)
  ms = [s for s in jax.tree.leaves(
      state, is_leaf=lambda x: isinstance(x, optax.MultiTransformState))
        if isinstance(s, optax.MultiTransformState)][0]
  adam = [s for s in jax.tree.leaves(
      ms.inner_states["group0"],
      is_leaf=lambda x: isinstance(x, optax.ScaleByAdamState))
          if isinstance(s, optax.ScaleByAdamState)][0]
  # AdamW's moments exist for the embedding only (other leaves masked out)
  assert not isinstance(adam.mu["embed"]["embedding"], optax.MaskedNode)
  assert isinstance(adam.mu["head"]["kernel"], optax.MaskedNode)
