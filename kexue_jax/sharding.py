"""The only place that knows mesh axes.

A run's devices form a 3-axis mesh ``('data', 'fsdp', 'tensor')``:

* ``data``   -- pure data parallelism: parameters replicated, batch split;
* ``fsdp``   -- fully-sharded data parallelism: batch split *and* parameters split (ZeRO-3 style);
* ``tensor`` -- tensor (model) parallelism: attention heads / MLP hidden units split.

Modules annotate their parameters with *logical* axis names (``'embed'``, ``'mlp'``, ``'heads'``, ...)
and never see a mesh; the config's ``logical_axis_rules`` map those names onto mesh axes. Meshes are
always built with ``AxisType.Auto``: in jax >= 0.8 ``jax.make_mesh`` defaults to Explicit axes, under
which linen's logical partitioning fails (flax's lm1b example builds its mesh and shardings the same way:
github.com/google/flax/tree/main/examples/lm1b).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Data parallel over `data`, ZeRO-3 over `fsdp`, Megatron-style tensor parallel over `tensor`.
DEFAULT_RULES = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv", None),
    ("vocab", "tensor"),
    ("norm", None),
    ("conv_in", None),
    ("conv_out", "tensor"),
)


def mesh_shape(mesh_cfg: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
  """Resolves ``{'data': d, 'fsdp': f, 'tensor': t}`` (one of them may be -1) against a device count."""
  unknown = set(mesh_cfg.keys()) - set(MESH_AXES)
  if unknown:
    raise ValueError(f"config.mesh has unknown axes {sorted(unknown)}; the mesh axes are {MESH_AXES}.")
  sizes = [int(mesh_cfg.get(a, 1)) for a in MESH_AXES]
  if any(s == 0 or s < -1 for s in sizes):
    raise ValueError(f"config.mesh sizes must be positive or -1 (= the rest), got {dict(zip(MESH_AXES, sizes))}.")
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh may have at most one axis of size -1, got {dict(zip(MESH_AXES, sizes))}.")
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(
          f"config.mesh {dict(zip(MESH_AXES, sizes))}: the fixed axes multiply to {known}, which does not "
          f"divide the {num_devices} available devices. Choose axis sizes whose product divides {num_devices}.")
    sizes[sizes.index(-1)] = num_devices // known
  elif known != num_devices:
    raise ValueError(
        f"config.mesh {dict(zip(MESH_AXES, sizes))} multiplies to {known} devices but {num_devices} are "
        f"available. Make the product equal {num_devices}, or set one axis to -1 (e.g. --config.mesh.data=-1).")
  return tuple(sizes)


DEFAULT_MESH = {"data": -1, "fsdp": 1, "tensor": 1}

# Presets used when a config leaves `mesh` at DEFAULT_MESH (and `mesh_preset="auto"`), by topology.
# One process: data parallelism over every local device -- for the model sizes of our studies (<= ~100M
# parameters) replicated weights fit on every listed chip (v2: 8 GiB/core, v3: 16, v4: 32, v5e: 16), and
# pure DP needs one all-reduce per step. Several processes (pods, multi-host GPU): FSDP inside a host
# (fast ICI/NVLink) and DP across hosts (slower DCN): data = #processes, fsdp = devices per process.
MESH_PRESETS = {
    "cpu": ("CPU (any number of devices)", {"data": -1, "fsdp": 1, "tensor": 1}),
    "gpu": ("one GPU or one host of GPUs", {"data": -1, "fsdp": 1, "tensor": 1}),
    "tpu": ("one TPU host: v2-8 / v3-8 (8 cores), v4-8 (4 chips), v5e-8, v6e-8 (8 chips)",
            {"data": -1, "fsdp": 1, "tensor": 1}),
    "multihost": ("several processes (TPU pod slice, multi-host GPU)", None),  # computed below
}


def preset_name(devices: Sequence[Any]) -> str:
  if len({getattr(d, "process_index", 0) for d in devices}) > 1:
    return "multihost"
  platform = devices[0].platform
  return platform if platform in MESH_PRESETS else "cpu"


def auto_mesh_config(devices: Sequence[Any]) -> dict[str, int]:
  """The preset mesh for these devices (see MESH_PRESETS)."""
  name = preset_name(devices)
  if name == "multihost":
    num_processes = len({d.process_index for d in devices})
    return {"data": num_processes, "fsdp": len(devices) // num_processes, "tensor": 1}
  return dict(MESH_PRESETS[name][1])


def resolve_mesh_config(mesh_cfg: Mapping[str, int], preset: str, devices: Sequence[Any]) -> dict[str, int]:
  """``mesh_preset="auto"`` replaces a mesh left at its default by the topology's preset; ``"none"``
  keeps the config's mesh as it is."""
  mesh = {a: int(mesh_cfg.get(a, 1)) for a in mesh_cfg}
  if preset == "none":
    return mesh
  if preset != "auto":
    raise ValueError(f"config.mesh_preset={preset!r}; use 'auto' (topology preset when config.mesh is "
                     f"left at {DEFAULT_MESH}) or 'none'.")
  return auto_mesh_config(devices) if mesh == DEFAULT_MESH else mesh


def make_mesh(mesh_cfg: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """Builds the ``('data', 'fsdp', 'tensor')`` mesh with Auto axis types."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh_cfg, len(devices))
  if devices == list(jax.devices()):
    # Lets jax pick a topology-aware device order (TPU ICI rings etc.).
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(shape))
  if devices[0].platform == "tpu":
    # A TPU topology that is not this process's backend (kexue_jax.aot): the same topology-aware order.
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(shape), devices=devices)
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(shape))


def normalize_rules(rules: Sequence[Sequence[Any]]) -> tuple[tuple[str, Any], ...]:
  """Config rules (lists from JSON/CLI or tuples) -> the tuple-of-pairs form flax expects."""
  out = []
  for rule in rules:
    if len(rule) != 2:
      raise ValueError(f"each logical_axis_rules entry must be (logical_name, mesh_axes), got {rule!r}")
    name, axes = rule
    if isinstance(axes, (list, tuple)):
      axes = tuple(axes)
      bad = [a for a in axes if a not in MESH_AXES]
    else:
      bad = [axes] if axes is not None and axes not in MESH_AXES else []
    if bad:
      raise ValueError(f"logical_axis_rules entry {rule!r} names unknown mesh axes {bad}; use {MESH_AXES}.")
    out.append((str(name), axes))
  return tuple(out)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over ``data`` x ``fsdp``; everything else replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def data_parallel_size(mesh: Mesh) -> int:
  return math.prod(mesh.shape[a] for a in BATCH_AXES)


def check_batch_size(global_batch_size: int, mesh: Mesh, what: str = "config.batch_size") -> None:
  dp = data_parallel_size(mesh)
  if global_batch_size % dp:
    raise ValueError(
        f"{what}={global_batch_size} is not divisible by the data-parallel size {dp} "
        f"(mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']}). Use a multiple of {dp}.")
  if global_batch_size % jax.process_count():
    raise ValueError(f"{what}={global_batch_size} is not divisible by the {jax.process_count()} processes.")


def logical_shardings(abstract_boxed: Any, mesh: Mesh, rules) -> Any:
  """NamedShardings for a tree of (possibly) ``nn.LogicallyPartitioned`` leaves.

  Unannotated leaves are replicated. Returns a tree with the structure of ``nn.unbox(abstract_boxed)``.
  """
  specs = nn.get_partition_spec(abstract_boxed)
  return nn.logical_to_mesh_sharding(specs, mesh, rules)


def _path_key(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def follow_params(tree: Any, params: Any, param_shardings: Any, mesh: Mesh) -> Any:
  """Shardings for an optimizer state: a leaf whose path ends with a parameter's path and whose shape
  equals that parameter's takes the parameter's sharding (Adam/Lion moments, accumulators); every other
  leaf (counters, scalars) is replicated.

  Written by hand because optax's ``tree_map_params`` re-runs ``init`` on a placeholder, which breaks
  callable weight-decay masks; matching on path suffixes works for any chain (masked, MultiSteps, ...).
  """
  by_path = {}
  for (path, p), sh in zip(jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(param_shardings)):
    by_path[_path_key(path)] = (tuple(p.shape), sh)
  lengths = sorted({len(k) for k in by_path}, reverse=True)

  def pick(path, leaf):
    key = _path_key(path)
    for n in lengths:
      hit = by_path.get(key[-n:]) if n <= len(key) else None
      if hit is not None and hit[0] == tuple(getattr(leaf, "shape", ())):
        return hit[1]
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(pick, tree)


def shard_host_batch(batch: Any, sharding: NamedSharding) -> Any:
  """Host-local numpy batch (this process's slice) -> globally sharded jax arrays."""
  return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sharding, np.asarray(a)), batch)


def describe(shardings: Any) -> dict[str, str]:
  """``{'params/path': 'PartitionSpec(...)'}`` for logging and tests."""
  out = {}
  for path, sh in jax.tree_util.tree_flatten_with_path(shardings)[0]:
    out["/".join(_path_key(path))] = str(sh.spec)
  return out
