"""Mesh construction, rule normalisation, optimizer-state shardings, config argument parsing."""
import jax
import jax.numpy as jnp
import optax
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from kexue_jax import config_lib
from kexue_jax import sharding


@pytest.mark.parametrize("cfg, n, shape", [
    (dict(data=-1, fsdp=1, tensor=1), 8, (8, 1, 1)),
    (dict(data=2, fsdp=-1, tensor=2), 8, (2, 2, 2)),
    (dict(data=1, fsdp=1, tensor=1), 1, (1, 1, 1)),
    (dict(data=4, fsdp=2), 8, (4, 2, 1)),
])
def test_mesh_shape(cfg, n, shape):
  assert sharding.mesh_shape(cfg, n) == shape


@pytest.mark.parametrize("cfg, message", [
    (dict(data=3, fsdp=1, tensor=1), "multiplies to 3 devices but 8"),
    (dict(data=3, fsdp=-1, tensor=1), "does not divide the 8"),
    (dict(data=-1, fsdp=-1, tensor=1), "at most one axis of size -1"),
    (dict(data=8, pipeline=1), "unknown axes"),
    (dict(data=0, fsdp=1, tensor=1), "positive or -1"),
])
def test_mesh_errors(cfg, message):
  with pytest.raises(ValueError, match=message):
    sharding.mesh_shape(cfg, 8)


def test_make_mesh_is_auto():
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  assert mesh.axis_types == (AxisType.Auto,) * 3
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}


def test_rules_are_validated():
  assert sharding.normalize_rules([["batch", ["data", "fsdp"]], ["kv", None]]) == (
      ("batch", ("data", "fsdp")), ("kv", None))
  with pytest.raises(ValueError, match="unknown mesh axes"):
    sharding.normalize_rules([["embed", "model"]])


def test_batch_divisibility():
  mesh = sharding.make_mesh(dict(data=4, fsdp=2, tensor=1))
  sharding.check_batch_size(16, mesh)
  with pytest.raises(ValueError, match="not divisible by the data-parallel size 8"):
    sharding.check_batch_size(12, mesh)


def test_optimizer_state_follows_parameter_shardings():
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  params = {"dense": {"kernel": jnp.zeros((8, 4)), "bias": jnp.zeros((4,))}, "scale": jnp.zeros((4,))}
  k_sh = jax.sharding.NamedSharding(mesh, P("fsdp", "tensor"))
  b_sh = jax.sharding.NamedSharding(mesh, P("tensor"))
  r_sh = sharding.replicated(mesh)
  param_sh = {"dense": {"kernel": k_sh, "bias": b_sh}, "scale": r_sh}
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(1e-3))
  opt = jax.eval_shape(tx.init, params)
  opt_sh = sharding.follow_params(opt, params, param_sh, mesh)
  adam = opt_sh[1][0]
  for moment in (adam.mu, adam.nu):
    assert moment["dense"]["kernel"] == k_sh and moment["dense"]["bias"] == b_sh
    assert moment["scale"] == r_sh
  assert adam.count == r_sh


def test_parse_arg():
  a = config_lib.parse_arg("runlocal,steps=7,variant=ntk", runlocal=False, steps=100, variant="rope")
  assert (a.runlocal, a.steps, a.variant) == (True, 7, "ntk")
  assert config_lib.parse_arg(None, runlocal=False).runlocal is False
  with pytest.raises(ValueError, match="unknown config argument 'nope'"):
    config_lib.parse_arg("nope", runlocal=False)
