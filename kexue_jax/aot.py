r"""Compile a config's train and eval steps for a real TPU topology on any machine (no TPU needed).

    python -m kexue_jax.aot --config configs/length_extrapolation/rope.py:scale=medium --topology v5e-8
    python -m kexue_jax.aot --config configs/simsiam/cifar10_resnet18.py --topology v5e:4x4 --json
    python -m kexue_jax.aot --config configs/length_extrapolation/pretrained.py:full --topology v4-8 --eval_only

With ``libtpu`` installed (``pip install -e '.[tpu]'``), ``jax.experimental.topologies`` describes a TPU slice
without owning it; this module builds the run's mesh from those devices exactly as ``train.run`` builds it
from real ones (``train.make_mesh_and_rules``), makes the **same** jitted steps (``train.build_steps``: same
shardings, donation, ``dtype="auto"`` = bf16 on TPU, ``attention.kernel="auto"`` = splash inside
``shard_map``), and lowers + compiles them with XLA's TPU compiler. What it reports, per chip:

* memory: XLA's ``memory_analysis()`` of the compiled step (arguments = the sharded state and batch, outputs,
  temporaries = activations and workspace; donated outputs alias their arguments and are counted once),
  against the chip's HBM;
* FLOPs per step: the model FLOPs of the step (``train.model_flops_per_step``: XLA's cost analysis of the
  global, unpartitioned program with XLA attention and no remat), the same for every mesh; and a projected
  step time at a stated model-FLOPs utilisation ``--mfu`` over the chips' bf16 peak. XLA's count of the
  compiled per-device program is reported beside it (``xla_flops_per_device``) but is not used: splash
  attention (a Mosaic custom call) counts 0 in it, remat's recomputation counts, and work replicated on
  every device (the optimizer update under data parallelism) counts once per device -- measured on v5e-8:
  ``rope.py:scale=medium`` 3.79e12 x-devices vs 3.96e12 model FLOPs (the gap = the attention matmuls);
  ``lm/tiny.py`` data=8 6.41e9 vs fsdp=8 6.35e9 (the replicated Lion update);
* when it does not fit, or does not compile: what to change (fsdp, remat, microbatches, batch), each valid on
  the run's mesh (a batch that ``data x fsdp`` still divides).

``--eval_only`` compiles the eval step alone and reports it: for evaluation configs (a pretrained checkpoint
measured at long context) whose train step is never run.

No dataset is read: the batch's shapes come from the preprocessing applied to a few synthetic examples made
from the dataset's TFDS feature spec (``abstract_batch``), so catalog datasets need not be prepared.

The public anchor for compiling against a topology description is MaxText's ``train_compile.py``
(github.com/AI-Hypercomputer/maxtext); hardware numbers are Google Cloud's published TPU specifications
(cloud.google.com/tpu/docs/system-architecture-tpu-vm and the per-version pages).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from typing import Any

# libtpu looks for GCE metadata at start-up unless told where it is; AOT needs no TPU, so keep it quiet and
# keep this process's own backend on the CPU (before jax initialises any backend).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-8")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # several compiles (CI, tests) at once

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import ml_collections  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Topology:
  """A TPU slice as ``jax.experimental.topologies`` names it."""
  name: str                                     # e.g. "v5e:2x4"
  chips_per_host_bounds: tuple[int, int, int]
  note: str = ""
  chip_config: str = "default"                  # "megacore": one device per chip of two TensorCores


# Friendly name -> topology. Each was compiled here with the libtpu of the jax 0.10 line.
TOPOLOGIES: dict[str, Topology] = {
    "v2-8": Topology("v2:2x2", (2, 2, 1), "Colab TPU v2-8: 4 chips, 8 TensorCores (one device each)"),
    "v5e-1": Topology("v5e:1x1", (1, 1, 1), "Colab v5e-1: one chip"),
    "v5e-8": Topology("v5e:2x4", (2, 4, 1), "one v5e host, 8 chips"),
    # jax sees a v4 chip as one (megacore) device, and its mesh builder accepts nothing else for TPU > v3.
    "v4-8": Topology("v4:2x2x1", (2, 2, 1), "one v4 host: 4 megacore chips (one device each)", "megacore"),
    "v6e-8": Topology("v6e:2x4", (2, 4, 1), "one v6e host, 8 chips"),
    "v5p-8": Topology("v5p:2x2x1", (2, 2, 1), "one v5p host: 4 megacore chips"),
    "v5e-16": Topology("v5e:4x4", (2, 4, 1), "two v5e hosts, 16 chips (the multi-host mesh)"),
}


@dataclasses.dataclass(frozen=True)
class Chip:
  hbm_bytes: int          # per chip
  peak_bf16_flops: float  # per chip, dense
  name: str


# By jax's device_kind. Google Cloud's published per-chip figures.
CHIPS: dict[str, Chip] = {
    "TPU v2": Chip(16 * GiB, 45e12, "v2"),
    "TPU v3": Chip(32 * GiB, 123e12, "v3"),
    "TPU v4": Chip(32 * GiB, 275e12, "v4"),
    "TPU v5 lite": Chip(16 * GiB, 197e12, "v5e"),
    "TPU v5": Chip(95 * GiB, 459e12, "v5p"),
    "TPU v5p": Chip(95 * GiB, 459e12, "v5p"),
    "TPU v6 lite": Chip(32 * GiB, 918e12, "v6e"),
}


class AotError(ValueError):
  """Bad input to the AOT compile (one line, says what to change)."""


def resolve_topology(name: str) -> tuple[str, Topology]:
  """A friendly name (``v5e-8``) or a topology name (``v5e:2x4``) -> (friendly name, Topology)."""
  if name in TOPOLOGIES:
    return name, TOPOLOGIES[name]
  for friendly, topo in TOPOLOGIES.items():
    if topo.name == name:
      return friendly, topo
  known = ", ".join(f"{k} ({t.name})" for k, t in TOPOLOGIES.items())
  raise AotError(f"unknown --topology {name!r}; use one of {known}.")


def topology_devices(topo: Topology) -> list[Any]:
  """The TPU devices of ``topo`` (needs libtpu; no TPU)."""
  try:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    desc = topologies.get_topology_desc(platform="tpu", topology_name=topo.name, chip_config_name=topo.chip_config,
                                        chips_per_host_bounds=topo.chips_per_host_bounds, num_slices=1)
  except Exception as e:  # noqa: BLE001 - libtpu missing or too old: one line
    raise AotError(f"cannot describe TPU topology {topo.name} ({str(e).splitlines()[0][:160]}); AOT compiles "
                   "need libtpu in this environment: pip install -e '.[tpu]' (see setup.cfg).") from e
  return list(desc.devices)


def libtpu_available() -> bool:
  try:
    topology_devices(TOPOLOGIES["v5e-1"])
    return True
  except AotError:
    return False


def devices_per_chip(devices) -> int:
  """Devices sharing one chip (v2/v3/v4 without megacore: one device per TensorCore)."""
  per_chip: dict[tuple, int] = {}
  for d in devices:
    key = (getattr(d, "process_index", 0), tuple(getattr(d, "coords", (d.id,))))
    per_chip[key] = per_chip.get(key, 0) + 1
  return max(per_chip.values())


# ---------------------------------------------------------------------------------------------------------
# The batch's shapes without the data.

_TEXT = "text"
# Features of the TFDS catalog datasets the configs name (tfds's catalog builders need TensorFlow even to
# describe themselves; the built-ins describe themselves). Shapes/dtypes as TFDS decodes them.
CATALOG_FEATURES: dict[str, dict[str, Any]] = {
    "cifar10": {"image": ((32, 32, 3), np.uint8), "label": ((), np.int64), "id": _TEXT},
    "cifar100": {"image": ((32, 32, 3), np.uint8), "label": ((), np.int64), "coarse_label": ((), np.int64),
                 "id": _TEXT},
    "glue/sst2": {"sentence": _TEXT, "label": ((), np.int64), "idx": ((), np.int32)},
    "pg19": {"book_text": _TEXT, "book_title": _TEXT, "book_id": ((), np.int32), "publication_date": _TEXT,
             "book_link": _TEXT},
    "wikipedia": {"text": _TEXT, "title": _TEXT},
    "ag_news_subset": {"description": _TEXT, "title": _TEXT, "label": ((), np.int64)},
}


def _feature_specs(data_cfg) -> dict[str, Any]:
  """{feature: (shape, dtype) or "text"} of the config's dataset, without reading it."""
  from kexue_jax.data import builders  # pylint: disable=g-import-not-at-top
  if data_cfg.name in builders.BUILTINS:
    builder = builders.make_builder(data_cfg.name, data_cfg.get("data_dir"), glob=data_cfg.get("glob"))
    infos = builder.info.features.get_tensor_info()
    return {k: _TEXT if np.dtype(v.numpy_dtype) == np.object_ else (tuple(1 if d is None else d for d in v.shape),
                                                                     np.dtype(v.numpy_dtype))
            for k, v in infos.items()}
  name = data_cfg.name.split(":")[0]
  for key in (name, name.split("/")[0]):
    if key in CATALOG_FEATURES:
      return CATALOG_FEATURES[key]
  raise AotError(f"no feature spec for dataset {data_cfg.name!r}; add it to kexue_jax.aot.CATALOG_FEATURES.")


def _fake_source(data_cfg, num_examples: int = 8):
  """Synthetic examples with the dataset's features: zeros, and texts of 8 windows of bytes."""
  text = b"x" * (8 * (int(data_cfg.get("seq_len", 256)) + 1))
  specs = _feature_specs(data_cfg)

  def example(i):
    ex = {}
    for k, spec in specs.items():
      if spec == _TEXT:   # a path-like feature gets distinct module paths (stdlib_packages groups by them)
        ex[k] = f"pkg{i % 2}/mod{i}.py".encode() if k in ("path", "filename") else text
      else:
        ex[k] = np.zeros(spec[0], spec[1])
    return ex

  return [example(i) for i in range(num_examples)]


def abstract_batch(config: ml_collections.ConfigDict) -> dict[str, jax.ShapeDtypeStruct]:
  """Global shapes/dtypes of one training batch: the config's preprocessing on synthetic examples."""
  from kexue_jax import tasks  # pylint: disable=g-import-not-at-top,unused-import  (registers task views)
  from kexue_jax.data import preprocess  # pylint: disable=g-import-not-at-top
  del tasks
  ds = preprocess.get(config.data.preprocess)(_fake_source(config.data), config.data, train=True,
                                              seed=config.seed)
  ex = ds[0]
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct((config.batch_size,) + np.shape(a), np.asarray(a).dtype),
                      ex)


def _resolve_auto_dtypes(config: ml_collections.ConfigDict, platform: str) -> ml_collections.ConfigDict:
  """``dtype="auto"`` anywhere under ``config.model`` -> the dtype train.run would pick on ``platform``."""
  from kexue_jax import models  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict(config.to_dict())

  def walk(node):
    for k in list(node.keys()):
      v = node[k]
      if isinstance(v, ml_collections.ConfigDict):
        walk(v)
      elif k.endswith("dtype") and v == "auto":
        node[k] = np.dtype(models.resolve_dtype("auto", platform=platform)).name
  walk(config.model)
  return config


# ---------------------------------------------------------------------------------------------------------
# Compile and report.

def _memory(compiled) -> dict[str, int]:
  m = compiled.memory_analysis()
  arg, out, alias = m.argument_size_in_bytes, m.output_size_in_bytes, m.alias_size_in_bytes
  temp, code = m.temp_size_in_bytes, m.generated_code_size_in_bytes
  return {"argument_bytes": int(arg), "output_bytes": int(out), "alias_bytes": int(alias),
          "temp_bytes": int(temp), "code_bytes": int(code),
          "total_bytes": int(arg + out - alias + temp + code)}


def mesh_sizes(config: ml_collections.ConfigDict, devices) -> dict[str, int]:
  """``{'data', 'fsdp', 'tensor'}`` sizes of the mesh ``train.make_mesh_and_rules`` builds over ``devices`` (-1 and
  the topology preset resolved), without building it."""
  from kexue_jax import sharding  # pylint: disable=g-import-not-at-top
  cfg = sharding.resolve_mesh_config(config.mesh, config.get("mesh_preset", "auto"), devices)
  return dict(zip(sharding.MESH_AXES, sharding.mesh_shape(cfg, len(devices))))


def advice(config: ml_collections.ConfigDict, mem: dict[str, int] | None, capacity: int, *,
           mesh: dict[str, int], activations_heavy: bool | None = None, step: str = "train") -> list[str]:
  """What to change so the ``step`` ("train" or "eval") fits, largest lever first, from where the bytes go.

  Every suggestion is valid on ``mesh`` (the resolved sizes, see ``mesh_sizes``): the global batch -- and, for the
  train step, each microbatch slice -- stays divisible by the data-parallel size ``data x fsdp`` that
  ``sharding.check_batch_size`` demands. Recomputation and microbatches only shrink a backward pass, so the eval
  step gets neither.
  """
  data, fsdp, tensor = mesh["data"], mesh["fsdp"], mesh["tensor"]
  dp, batch = data * fsdp, int(config.batch_size)
  train = step == "train"
  mb = int(config.microbatches) if train else 1
  if activations_heavy is None:
    activations_heavy = mem is not None and mem["temp_bytes"] > mem["argument_bytes"]
  fsdp_tip = (f"shard parameters{' and optimizer state' if train else ''} over the chips: --config.mesh.fsdp=-1 "
              "--config.mesh.data=1" if data > 1 and fsdp == 1 else None)
  remat_tip = ("recompute activations in the backward pass: --config.model.remat=True"
               if train and "remat" in config.model and not config.model.remat else None)
  more_mb = [k for k in range(mb + 1, batch // dp + 1) if batch % k == 0 and (batch // k) % dp == 0]
  mb_tip = (f"accumulate gradients over slices: --config.microbatches={more_mb[0]}"
            if train and more_mb else None)
  unit = dp * mb                                # the global batch must stay a multiple of this
  smaller = (batch // 2) // unit * unit
  if smaller:
    batch_tip = f"a smaller global batch: --config.batch_size={smaller}"
  else:  # one example per data-parallel device (per slice) already: halve data x fsdp by doubling tensor
    heads = config.model.get("num_heads")
    halve_data = f" --config.mesh.data={data // 2}" if fsdp % 2 else ""   # else fsdp=-1 halves itself
    batch_tip = (f"the batch is already {batch} = one example per data-parallel device{' and slice' if mb > 1 else ''}"
                 f" (data x fsdp = {dp}); split the model instead: --config.mesh.tensor={2 * tensor} "
                 f"--config.mesh.fsdp=-1{halve_data} --config.batch_size={batch // 2}"
                 if dp % 2 == 0 and batch % 2 == 0 and (heads is None or heads % (2 * tensor) == 0) else None)
  order = [remat_tip, mb_tip, fsdp_tip, batch_tip] if activations_heavy else [fsdp_tip, remat_tip, mb_tip,
                                                                               batch_tip]
  tips = [t for t in order if t]
  if mem is not None:
    tips.insert(0, f"{step} step needs {mem['total_bytes'] / GiB:.2f} GiB per chip of {capacity / GiB:.0f} GiB "
                   f"(state+batch {mem['argument_bytes'] / GiB:.2f}, activations/temp {mem['temp_bytes'] / GiB:.2f})")
  return tips


def _check_steps(with_eval: bool, eval_only: bool) -> None:
  if eval_only and not with_eval:
    raise AotError("--eval_only compiles only the eval step, which --noeval skips; drop one of the two.")


def compile_for_topology(config: ml_collections.ConfigDict, topology: str, *, mfu: float = 0.4,
                         with_eval: bool = True, eval_only: bool = False) -> dict[str, Any]:
  """Compiles ``config``'s train (and eval) step -- or, ``eval_only``, its eval step alone -- for ``topology``;
  returns the report dict (see module doc)."""
  _check_steps(with_eval, eval_only)
  friendly, topo = resolve_topology(topology)
  devices = topology_devices(topo)
  kind = devices[0].device_kind
  if kind not in CHIPS:
    raise AotError(f"no HBM/peak figures for device kind {kind!r}; add it to kexue_jax.aot.CHIPS.")
  report = compile_on_devices(config, devices, CHIPS[kind], mfu=mfu, with_eval=with_eval, eval_only=eval_only)
  return {"topology": friendly, "topology_name": topo.name, **report}


def compile_on_devices(config: ml_collections.ConfigDict, devices, chip: Chip, *, mfu: float = 0.4,
                       with_eval: bool = True, eval_only: bool = False) -> dict[str, Any]:
  """The report for ``devices`` (a TPU topology's, or any devices: tests use CPU ones) of ``chip``.

  The report's memory, FLOPs, fit and advice are the train step's; with ``eval_only`` (an evaluation config,
  e.g. a pretrained checkpoint's) only the eval step is compiled and they are the eval step's (``"step"`` says
  which). The eval step takes the whole state but reads only params/extra: jit drops the unused optimizer state
  from its arguments (``keep_unused=False``), so its memory is what an evaluation needs.
  """
  from flax import linen as nn  # pylint: disable=g-import-not-at-top
  from kexue_jax import config_lib  # pylint: disable=g-import-not-at-top
  from kexue_jax import tasks  # pylint: disable=g-import-not-at-top
  from kexue_jax import train  # pylint: disable=g-import-not-at-top

  _check_steps(with_eval, eval_only)
  t0 = time.perf_counter()
  jax.config.update("jax_threefry_partitionable", True)
  config_lib.validate(config)
  kind = devices[0].device_kind
  per_chip = devices_per_chip(devices)
  num_chips = len(devices) // per_chip
  config = _resolve_auto_dtypes(config, devices[0].platform)
  hosts = len({d.process_index for d in devices})
  if config.batch_size % hosts:   # train.run's per-process check (jax.process_count() is 1 here)
    raise AotError(f"config.batch_size={config.batch_size} is not divisible by the {hosts} hosts of this "
                   f"topology; use a multiple of {hosts}.")

  mesh, rules = train.make_mesh_and_rules(config, devices)
  task = tasks.get_task(config)
  batch_spec = abstract_batch(config)
  steps = train.build_steps(config, task, batch_spec, mesh, rules)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    compiled = None if eval_only else steps.train_step.lower(steps.abstract_state, batch_spec).compile()
    compiled_eval = steps.eval_step.lower(steps.abstract_state, batch_spec).compile() if with_eval else None

  step = "eval" if eval_only else "train"
  if eval_only:
    compiled = compiled_eval
  mem = _memory(compiled)
  flops = train.model_flops_per_step(config, batch_spec, step=step)
  hlo = compiled.as_text() or ""
  kernels = sorted(set(re.findall(r"(splash_mha\w*|rerope_flash\w*)", hlo)))
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  xla_flops_device = float(cost.get("flops", 0.0)) if cost else 0.0
  hbm_per_chip = mem["total_bytes"] * per_chip
  fits = hbm_per_chip <= chip.hbm_bytes
  num_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(steps.abstract_model["params"]))
  report = {
      "step": step, "device_kind": kind, "chips": num_chips,
      "devices": len(devices), "hosts": hosts,
      "mesh": {k: int(v) for k, v in mesh.shape.items()},
      "num_params": num_params, "batch_size": int(config.batch_size),
      "hbm_bytes_per_chip": int(hbm_per_chip), "hbm_capacity_bytes": int(chip.hbm_bytes), "fits": bool(fits),
      "memory_per_device": mem,
      "flops_per_step": flops, "flops_per_device": flops / len(devices) if flops else None,
      "xla_flops_per_device": xla_flops_device,
      "peak_bf16_flops_per_chip": chip.peak_bf16_flops, "mfu_assumed": mfu,
      "projected_step_time_s": flops / (mfu * chip.peak_bf16_flops * num_chips) if flops else None,
      "compile_time_s": time.perf_counter() - t0,
      "pallas_kernels": kernels,    # Mosaic kernels in the compiled step (splash, Pallas ReRoPE)
      "tpu_custom_calls": hlo.count('custom_call_target="tpu_custom_call"'),
  }
  if compiled_eval is not None:
    report["eval_hbm_bytes_per_chip"] = _memory(compiled_eval)["total_bytes"] * per_chip
  if not fits:
    report["advice"] = advice(config, mem, chip.hbm_bytes, mesh=report["mesh"], step=step)
  return report


def format_report(r: dict[str, Any]) -> str:
  mem = r["memory_per_device"]
  gib = lambda b: f"{b / GiB:.3f} GiB"
  unit = "chip" if r["devices"] == r["chips"] else f"device ({r['devices'] // r['chips']} per chip)"
  step = r.get("step", "train")
  lines = [
      f"step            : {step}{' (--eval_only)' if step == 'eval' else ''}",
      f"topology        : {r['topology']} ({r['topology_name']}): {r['chips']} x {r['device_kind']}, "
      f"{r['devices']} devices on {r['hosts']} host(s)",
      f"mesh            : {r['mesh']}   parameters: {r['num_params']:,}   global batch: {r['batch_size']}",
      f"per {unit}: arguments {gib(mem['argument_bytes'])}, outputs {gib(mem['output_bytes'])} "
      f"(aliased {gib(mem['alias_bytes'])}), temp {gib(mem['temp_bytes'])}, code {gib(mem['code_bytes'])}",
      f"HBM per chip    : {gib(r['hbm_bytes_per_chip'])} of {gib(r['hbm_capacity_bytes'])} -> "
      f"{'fits' if r['fits'] else 'DOES NOT FIT'}",
  ]
  if "eval_hbm_bytes_per_chip" in r and step == "train":
    lines.append(f"eval step       : {gib(r['eval_hbm_bytes_per_chip'])} per chip")
  if r["projected_step_time_s"]:
    lines.append(f"FLOPs per step  : {r['flops_per_step']:.3e} model FLOPs (XLA's count of the compiled step: "
                 f"{r['xla_flops_per_device']:.3e} per device, without Mosaic kernels); projected step time "
                 f"{r['projected_step_time_s'] * 1e3:.3g} ms at {r['mfu_assumed']:.0%} MFU of "
                 f"{r['peak_bf16_flops_per_chip'] / 1e12:.0f} TFLOP/s bf16 per chip")
  lines.append(f"Mosaic kernels  : {', '.join(r['pallas_kernels']) or 'none'} "
               f"({r['tpu_custom_calls']} tpu_custom_call ops in the {step} step)")
  lines.append(f"compile time    : {r['compile_time_s']:.1f} s (on this machine)")
  for tip in r.get("advice", []):
    lines.append(f"  what to change: {tip}")
  return "\n".join(lines)


def failure_advice(config, error: Exception, mesh: dict[str, int], step: str = "train") -> tuple[str, int]:
  """(one line, exit status) for a step that does not compile on ``mesh`` (``mesh_sizes``): 3 = out of HBM,
  1 = anything else."""
  msg = (str(error).strip().splitlines() or [type(error).__name__])[0][:300].rstrip(".")
  low = str(error).lower()
  if "vmemoom" in low or "memory space vmem" in low:   # a kernel's on-chip scratch, not HBM
    kernel = re.search(r"%(\w+?)(?:\.\d+)? = ", str(error))
    size = re.search(r"Scoped allocation with size (\S+) and limit (\S+)", str(error))
    what = f"{kernel.group(1) if kernel else 'a kernel'} needs {size.group(1) if size else 'more'} of on-chip " \
           f"VMEM (limit {size.group(2) if size else '?'})"
    return (f"does not compile: {what}. What to change: --config.model.attention.kernel=xla, or smaller "
            "head dims (the kernel's tile is block x (head_dim + value dim))."), 1
  if any(s in low for s in ("resource_exhausted", "out of memory", "ran out of memory")):
    tips = advice(config, None, 0, mesh=mesh, activations_heavy="temporaries" in low, step=step)
    return f"does not fit: {msg}. What to change: {'; or '.join(tips)}.", 3
  if "mosaic" in low or "pallas" in low or "splash" in low:
    return (f"kernel failed to compile: {msg}. What to change: --config.model.attention.kernel=xla "
            "(the XLA attention path)."), 1
  return f"does not compile: {msg}", 1


# ---------------------------------------------------------------------------------------------------------
# Command line.

def _flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config = config_flags.DEFINE_config_file(
      "config", None, "Config file (+ :args), as for kexue_jax.main.", lock_config=True)
  topology = flags.DEFINE_string(
      "topology", "v5e-8", f"TPU slice: {', '.join(TOPOLOGIES)} (or its topology name, e.g. v5e:2x4).")
  as_json = flags.DEFINE_bool("json", False, "Print one JSON object instead of the table.")
  mfu = flags.DEFINE_float("mfu", 0.4, "Model-FLOPs utilisation assumed for the projected step time.")
  with_eval = flags.DEFINE_bool("eval", True, "Also compile the eval step (--noeval: the train step only).")
  eval_only = flags.DEFINE_bool(
      "eval_only", False, "Compile the eval step alone and report it (an evaluation config, e.g. a pretrained "
      "checkpoint's, as `kexue --eval_only` runs it).")
  flags.mark_flags_as_required(["config"])
  return config, topology, as_json, mfu, with_eval, eval_only


def run_main():
  """``python -m kexue_jax.aot``; exit 0 = fits, 3 = does not fit (the report or the compiler says so), 1 = does not
  compile, 2 = bad input. (Flags are defined here, not at import, so tests can import this module.)"""
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  config_flag, topology, as_json, mfu, with_eval, eval_only = _flags()

  def main(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # as kexue_jax.main: the report only
    if len(argv) > 1:
      print(f"kexue_jax.aot: error: unexpected arguments {argv[1:]}", file=sys.stderr)
      sys.exit(2)
    config = config_flag.value
    try:
      report = compile_for_topology(config, topology.value, mfu=mfu.value, with_eval=with_eval.value,
                                    eval_only=eval_only.value)
    except (AotError, ValueError) as e:
      print(f"kexue_jax.aot: error: {e}", file=sys.stderr, flush=True)
      sys.exit(2)
    except Exception as e:  # noqa: BLE001 - an XLA / Mosaic compile error: one line and what to change
      mesh = mesh_sizes(config, topology_devices(resolve_topology(topology.value)[1]))
      line, status = failure_advice(config, e, mesh, step="eval" if eval_only.value else "train")
      print(f"kexue_jax.aot: {topology.value}: {line}", file=sys.stderr, flush=True)
      sys.exit(status)
    print(json.dumps(report, sort_keys=True) if as_json.value else format_report(report), flush=True)
    sys.exit(0 if report["fits"] else 3)

  app.run(main)


if __name__ == "__main__":
  run_main()
