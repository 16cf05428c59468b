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


class FakeDevice:
  def __init__(self, platform, device_kind="", process_index=0):
    self.platform, self.device_kind, self.process_index = platform, device_kind, process_index


@pytest.mark.parametrize("devices, expected", [
    ([FakeDevice("cpu")] * 8, {"data": -1, "fsdp": 1, "tensor": 1}),
    ([FakeDevice("gpu", "NVIDIA H100")], {"data": -1, "fsdp": 1, "tensor": 1}),
    ([FakeDevice("tpu", "TPU v3")] * 8, {"data": -1, "fsdp": 1, "tensor": 1}),
    ([FakeDevice("tpu", "TPU v5 lite")] * 8, {"data": -1, "fsdp": 1, "tensor": 1}),
    # A v4-32 slice: 4 hosts x 4 chips -> DP across hosts, FSDP within a host.
    ([FakeDevice("tpu", "TPU v4", p) for p in range(4) for _ in range(4)], {"data": 4, "fsdp": 4, "tensor": 1}),
])
def test_mesh_presets_for_mocked_topologies(devices, expected):
  assert sharding.resolve_mesh_config(dict(sharding.DEFAULT_MESH), "auto", devices) == expected
  # The resolved mesh always fits the device count.
  assert sharding.mesh_shape(expected, len(devices))


def test_explicit_mesh_is_kept():
  devices = [FakeDevice("tpu", "TPU v4", p) for p in range(4) for _ in range(4)]
  assert sharding.resolve_mesh_config({"data": 16, "fsdp": 1, "tensor": 1}, "auto", devices) == {
      "data": 16, "fsdp": 1, "tensor": 1}
  assert sharding.resolve_mesh_config(dict(sharding.DEFAULT_MESH), "none", devices) == sharding.DEFAULT_MESH
  with pytest.raises(ValueError, match="mesh_preset"):
    sharding.resolve_mesh_config(dict(sharding.DEFAULT_MESH), "fastest", devices)


@pytest.mark.parametrize("platform, dtype", [("cpu", jnp.float32), ("gpu", jnp.bfloat16), ("tpu", jnp.bfloat16)])
def test_precision_defaults_per_platform(platform, dtype):
  from kexue_jax import models
  assert models.resolve_dtype("auto", platform=platform) == dtype
  assert models.resolve_dtype("float32", platform=platform) == jnp.float32  # overridable
  cfg = config_lib.base_config()
  assert cfg.model.param_dtype == "float32" and cfg.model.dtype == "auto"  # params/optimizer state stay f32
