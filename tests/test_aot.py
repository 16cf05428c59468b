"""kexue_jax.aot: the batch's shapes without data, the shared step builder, reports, and -- where libtpu is
installed (`pip install -e '.[tpu]'`; CI has it) -- real compiles for TPU topologies. Tests that need libtpu
take the `libtpu` fixture and skip cleanly without it."""
import dataclasses
import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from kexue_jax import aot
from kexue_jax import train
from kexue_jax.data import pipeline
from tests.helpers import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(path_arg):
  path, _, arg = path_arg.partition(":")
  return load_config(path, arg or None)


@pytest.fixture(scope="module")
def libtpu():
  if not aot.libtpu_available():
    pytest.skip("libtpu not installed (pip install -e '.[tpu]')")


def test_topology_names():
  assert aot.resolve_topology("v5e-8")[1].name == "v5e:2x4"
  assert aot.resolve_topology("v5e:4x4") == ("v5e-16", aot.TOPOLOGIES["v5e-16"])
  with pytest.raises(aot.AotError, match="unknown --topology 'v9-8'; use one of v2-8"):
    aot.resolve_topology("v9-8")


@pytest.mark.parametrize("config", ["configs/lm/tiny.py:runlocal", "configs/simsiam/cifar10_resnet18.py:runlocal"])
def test_abstract_batch_equals_the_real_pipeline(config):
  c = _config(config)
  real = train._peek_batch_spec(  # pylint: disable=protected-access
      pipeline.make_train_iter(c.data, seed=c.seed, global_batch_size=c.batch_size), c.batch_size)
  fake = aot.abstract_batch(c)
  assert jax.tree.map(lambda s: (s.shape, np.dtype(s.dtype)), fake) == \
      jax.tree.map(lambda s: (s.shape, np.dtype(s.dtype)), real)


def test_catalog_dataset_shapes_without_tensorflow_or_data():
  c = _config("configs/simsiam/cifar10_resnet18.py")
  spec = aot.abstract_batch(c)
  assert (spec["x"].shape, spec["x"].dtype, spec["label"].shape) == ((512, 32, 32, 3), np.float32, (512,))


def test_report_on_cpu_devices_uses_the_train_step_builder(monkeypatch):
  """The report's numbers come from the steps train.build_steps makes (here compiled for 8 CPU devices)."""
  calls = []
  build = train.build_steps
  monkeypatch.setattr(train, "build_steps", lambda *a, **k: calls.append(1) or build(*a, **k))
  c = _config("configs/lm/tiny.py:runlocal")
  chip = aot.Chip(hbm_bytes=2**30, peak_bf16_flops=1e12, name="test")
  r = aot.compile_on_devices(c, jax.devices()[:8], chip, mfu=0.5)
  assert calls == [1, 1]  # the compiled step, and the unpartitioned one its model FLOPs are counted on
  assert r["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1} and r["chips"] == 8
  mem = r["memory_per_device"]
  assert r["hbm_bytes_per_chip"] == mem["argument_bytes"] + mem["output_bytes"] - mem["alias_bytes"] \
      + mem["temp_bytes"] + mem["code_bytes"]
  # The donated state is aliased: the state's bytes are counted once.
  assert mem["alias_bytes"] > 0
  assert r["fits"] is True and "advice" not in r
  np.testing.assert_allclose(r["flops_per_step"], 8 * r["flops_per_device"])
  np.testing.assert_allclose(r["projected_step_time_s"], r["flops_per_device"] / (0.5 * 1e12))


def _analytic_lm_flops(c) -> float:
  """Matmul FLOPs of a train step of the pre-norm MHA ``transformer_lm`` (no biases, tied embedding), float64:
  3 x forward (backward = 2 x forward) over T tokens; forward per token = 2 x (QKVO + 2-matrix MLP weights)
  + 2 D V (logits) + 4 L H dh per layer (scores and values over all L keys, as MFU counts causal attention)."""
  m, L = c.model, c.data.seq_len
  D, H, dh, F, V, n = (float(x) for x in (m.embed_dim, m.num_heads, m.head_dim, m.mlp_dim, m.vocab_size,
                                          m.num_layers))
  return 3.0 * c.batch_size * L * (2 * n * (4 * D * H * dh + 2 * D * F) + 2 * D * V + n * 4 * L * H * dh)


def _check_model_flops(flops: float, c) -> None:
  """The model FLOPs exceed the matmul count only by elementwise work (norms, softmax, activations, loss, the
  optimizer): a few FLOPs per activation/parameter element against ~D per matmul output, so at most ~4/D
  (measured: 4.3% at D=64, 2.1% at D=128)."""
  ratio = flops / _analytic_lm_flops(c)
  assert 1.0 <= ratio <= 1.0 + 4.0 / c.model.embed_dim, ratio


def test_model_flops_match_the_analytic_count():
  c = _config("configs/lm/tiny.py:runlocal")
  _check_model_flops(train.model_flops_per_step(c, aot.abstract_batch(c)), c)


def test_eval_only_compiles_the_shared_eval_step_alone(monkeypatch):
  """--eval_only: the eval step train.build_steps makes, compiled alone (the train step is never lowered); its
  arguments are the parameters and the batch only -- jit drops the unused optimizer state."""
  build = train.build_steps
  built = []

  def build_without_train(*a, **k):
    steps = build(*a, **k)
    built.append(steps)
    return dataclasses.replace(steps, train_step=None)   # lowering it would fail

  monkeypatch.setattr(train, "build_steps", build_without_train)
  c = _config("configs/length_extrapolation/pretrained.py:runlocal")
  chip = aot.Chip(hbm_bytes=2**30, peak_bf16_flops=1e12, name="test")
  r = aot.compile_on_devices(c, jax.devices()[:8], chip, mfu=0.5, eval_only=True)
  assert len(built) == 2 and r["step"] == "eval"  # the compiled eval step; the one of the model FLOPs
  mem = r["memory_per_device"]
  params = built[0].abstract_model["params"]
  param_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(params))
  batch = aot.abstract_batch(c)
  batch_bytes_per_device = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(batch)) // 8
  assert r["mesh"] == {"data": 8, "fsdp": 1, "tensor": 1}     # parameters replicated, batch split in 8
  assert mem["argument_bytes"] == param_bytes + batch_bytes_per_device
  assert mem["alias_bytes"] == 0                               # nothing donated
  assert r["hbm_bytes_per_chip"] == r["eval_hbm_bytes_per_chip"] == mem["total_bytes"]
  assert r["fits"] is True and r["flops_per_step"] > 0
  np.testing.assert_allclose(r["projected_step_time_s"], r["flops_per_device"] / (0.5 * 1e12))
  assert aot.format_report({**r, "topology": "cpu-8", "topology_name": "cpu"}).startswith(
      "step            : eval (--eval_only)")
  with pytest.raises(aot.AotError, match="--eval_only compiles only the eval step, which --noeval skips"):
    aot.compile_on_devices(c, jax.devices()[:8], chip, with_eval=False, eval_only=True)


def test_pretrained_full_needs_no_overrides():
  """The 7B evaluation config builds its (unused) optimizer as it is: warmup <= num_train_steps."""
  from kexue_jax import config_lib, optim  # pylint: disable=g-import-not-at-top
  c = _config("configs/length_extrapolation/pretrained.py:full")
  config_lib.validate(c)
  optim.make_optimizer(c.optimizer, c.num_train_steps)


def test_advice_when_it_does_not_fit():
  c = _config("configs/length_extrapolation/rope.py:scale=medium")
  mesh = aot.mesh_sizes(c, jax.devices()[:8])
  assert mesh == {"data": 8, "fsdp": 1, "tensor": 1}   # the CPU preset for the default mesh
  mem = {"argument_bytes": 20 * 2**30, "temp_bytes": 2**30, "output_bytes": 0, "alias_bytes": 0,
         "code_bytes": 0, "total_bytes": 21 * 2**30}
  tips = aot.advice(c, mem, 16 * 2**30, mesh=mesh)
  assert tips[0].startswith("train step needs 21.00 GiB per chip of 16 GiB")
  assert tips[1] == ("shard parameters and optimizer state over the chips: "
                     "--config.mesh.fsdp=-1 --config.mesh.data=1")
  assert "--config.model.remat=True" in tips[2]
  assert tips[-1] == "a smaller global batch: --config.batch_size=32"
  # Activation-heavy: recomputation first.
  mem.update(argument_bytes=2**30, temp_bytes=20 * 2**30)
  assert "remat" in aot.advice(c, mem, 16 * 2**30, mesh=mesh)[1]


def _flag_values(tip):
  return dict(re.findall(r"--config\.([\w.]+)=(\S+)", tip))


@pytest.mark.parametrize("mesh,batch,microbatches,step", [
    ({"data": 1, "fsdp": 8, "tensor": 1}, 8, 1, "eval"),     # pretrained.py:full on v5e-8 (the reported case)
    ({"data": 1, "fsdp": 8, "tensor": 1}, 8, 1, "train"),
    ({"data": 8, "fsdp": 1, "tensor": 1}, 64, 1, "train"),
    ({"data": 8, "fsdp": 1, "tensor": 1}, 24, 1, "train"),   # halving gives 12: not a multiple of 8
    ({"data": 8, "fsdp": 1, "tensor": 1}, 64, 4, "train"),
    ({"data": 2, "fsdp": 8, "tensor": 1}, 16, 1, "train"),   # v5e-16's multi-host preset
    ({"data": 2, "fsdp": 2, "tensor": 2}, 12, 3, "train"),
    ({"data": 1, "fsdp": 1, "tensor": 1}, 16, 1, "train"),   # one chip
    ({"data": 4, "fsdp": 1, "tensor": 1}, 4, 1, "eval"),
    ({"data": 8, "fsdp": 1, "tensor": 1}, 8, 1, "train"),
])
def test_advice_is_valid_on_the_mesh(mesh, batch, microbatches, step):
  """Each suggested change, applied to the config, changes something and gives a mesh (resolved by
  sharding.mesh_shape from the suggested flags) whose data x fsdp divides the batch and each microbatch slice, as
  sharding.check_batch_size and config_lib.validate demand."""
  from kexue_jax import sharding  # pylint: disable=g-import-not-at-top
  c = _config("configs/length_extrapolation/pretrained.py:full")
  c.batch_size, c.microbatches = batch, microbatches
  c.model.num_heads, c.model.remat = 32, False
  n = mesh["data"] * mesh["fsdp"] * mesh["tensor"]
  mem = {"argument_bytes": 2**30, "temp_bytes": 30 * 2**30, "output_bytes": 0, "alias_bytes": 0, "code_bytes": 0,
         "total_bytes": 31 * 2**30}
  tips = aot.advice(c, mem, 16 * 2**30, mesh=mesh, step=step)
  assert tips[0].startswith(f"{step} step needs 31.00 GiB")
  changes = [_flag_values(t) for t in tips[1:]]
  assert changes, tips                  # something to change
  for change in changes:
    assert change, tips
    new_mesh = dict(mesh)
    new_mesh.update({k.split(".")[1]: int(v) for k, v in change.items() if k.startswith("mesh.")})
    sizes = dict(zip(("data", "fsdp", "tensor"), sharding.mesh_shape(new_mesh, n)))
    b, k = int(change.get("batch_size", batch)), int(change.get("microbatches", microbatches))
    dp = sizes["data"] * sizes["fsdp"]
    assert b < batch or k > microbatches or sizes != mesh or change.get("model.remat") == "True", change
    assert b % k == 0 and b % dp == 0 and (b // k) % dp == 0, (change, sizes)
  if step == "eval":   # no backward pass: neither recomputation nor gradient accumulation helps
    assert not any("remat" in t or "microbatches" in t for t in tips)
  if mesh["fsdp"] > 1 or mesh["data"] == 1:   # already sharded, or nothing to shard over
    assert not any("shard parameters" in t for t in tips)


def test_advice_for_the_7b_eval_on_v5e_8():
  """The batch is one example per chip on 8-way FSDP: halving it (4) would not divide over the 8 chips, so the
  advice splits the model over `tensor` to make room for the smaller batch."""
  c = _config("configs/length_extrapolation/pretrained.py:full")
  tips = aot.advice(c, None, 0, mesh={"data": 1, "fsdp": 8, "tensor": 1}, step="eval")
  assert tips == ["the batch is already 8 = one example per data-parallel device (data x fsdp = 8); split the "
                  "model instead: --config.mesh.tensor=2 --config.mesh.fsdp=-1 --config.batch_size=4"]


def test_failure_advice_for_an_out_of_hbm_compile():
  c = _config("configs/lm/tiny.py:runlocal")
  err = RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
                     "temporaries (705.22G) exceeds available HBM (15.75G).\nmore")
  line, status = aot.failure_advice(c, err, mesh={"data": 1, "fsdp": 1, "tensor": 1})
  assert status == 3 and line.startswith("does not fit: RESOURCE_EXHAUSTED: Ran out of memory on HBM")
  assert "\n" not in line and "fsdp" not in line   # one chip: nothing to shard over
  assert line.index("microbatches") < line.index("batch_size=")


def test_failure_advice_for_a_kernel_out_of_vmem():
  """The error libtpu gave for the LE `full` config (GAU values of 1536 dims) before splash's tiles were sized
  to the head dims (fast_attention._splash_block)."""
  err = RuntimeError(
      "RESOURCE_EXHAUSTED: E1001: CompileTimeScopedVmemOom:\nRan out of memory in memory space vmem while "
      "allocating on stack for %splash_mha_dkv_no_residuals.1 = (f32[32,512,128]) custom-call(...). Scoped "
      "allocation with size 18.27M and limit 16.00M exceeded scoped vmem limit by 2.27M.")
  line, status = aot.failure_advice(_config("configs/lm/tiny.py:runlocal"), err,
                                    mesh={"data": 8, "fsdp": 1, "tensor": 1})
  assert status == 1
  assert line.startswith("does not compile: splash_mha_dkv_no_residuals needs 18.27M of on-chip VMEM "
                         "(limit 16.00M). What to change: --config.model.attention.kernel=xla")


def test_splash_tiles_fit_scoped_vmem():
  from kexue_jax.nn import fast_attention as F  # pylint: disable=g-import-not-at-top
  assert F._splash_block(512, 128, 128) == 512      # the LE medium config (compiled for v5e-8)
  assert F._splash_block(512, 128, 1536) == 256     # GAU values: 512 needed 18.3 MiB of 16 MiB VMEM
  assert F._splash_block(384, 128, 128) == 128


def test_no_bf16_mosaic_kernels_on_tpu_v2(monkeypatch):
  """libtpu refused splash's bf16 matmul for a v2-8 ("CompileTimeMosaicUnsupportedRhsType"): on v2/v3 the
  Mosaic kernels fall back to XLA for bf16 inputs."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from kexue_jax.nn import attention_config as acfg  # pylint: disable=g-import-not-at-top
  from kexue_jax.nn import fast_attention as F  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(F, "_backend", lambda: "tpu")
  monkeypatch.setattr(F, "_device_kind", lambda: "TPU v2")
  monkeypatch.setattr(F, "_logged", {})
  q = jnp.zeros((1, 128, 1, 128), jnp.bfloat16)
  pos = jnp.zeros((1, 128))
  out = F.fast_attend(q, q, q, config=acfg.AttentionConfig(kernel="splash"), q_positions_BL=pos,
                      k_positions_BS=pos)
  assert out is None
  assert any("no bf16 Mosaic matmul on TPU v2" in m for m in F._logged.values())  # pylint: disable=protected-access


def test_cli_eval_only_with_noeval_is_one_line_exit_2():
  p = subprocess.run([sys.executable, "-m", "kexue_jax.aot", "--config=configs/lm/tiny.py:runlocal", "--eval_only",
                      "--noeval"], cwd=ROOT, capture_output=True, text=True, check=False)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines() == [
      "kexue_jax.aot: error: --eval_only compiles only the eval step, which --noeval skips; drop one of the two."]


def test_cli_bad_topology_is_one_line_exit_2():
  p = subprocess.run([sys.executable, "-m", "kexue_jax.aot", "--config=configs/lm/tiny.py:runlocal",
                      "--topology=v9-8"], cwd=ROOT, capture_output=True, text=True, check=False)
  assert p.returncode == 2
  assert p.stderr.strip().splitlines()[-1].startswith("kexue_jax.aot: error: unknown --topology 'v9-8'")


# --------------------------------------------------------------------------------------------------------
# Real TPU compiles (libtpu).

def test_tpu_v4_is_one_megacore_device_per_chip(libtpu):
  """jax's TPU mesh builder takes one device per chip for TPU > v3 (a real v4-8 shows 4 devices); the default
  chip config's 8 TensorCore devices made every v4-8 compile fail."""
  devices = aot.topology_devices(aot.TOPOLOGIES["v4-8"])
  assert (len(devices), aot.devices_per_chip(devices), devices[0].device_kind) == (4, 1, "TPU v4")


@pytest.mark.parametrize("topology,chips,hosts,mesh", [
    pytest.param("v5e-1", 1, 1, {"data": 1, "fsdp": 1, "tensor": 1}, marks=pytest.mark.slow),
    ("v5e-16", 16, 2, {"data": 2, "fsdp": 8, "tensor": 1}),   # multi-host preset: DP across hosts
])
def test_tpu_compile_tiny_lm(libtpu, topology, chips, hosts, mesh):
  r = aot.compile_for_topology(_config("configs/lm/tiny.py:runlocal"), topology, with_eval=False)
  assert (r["chips"], r["hosts"], r["mesh"]) == (chips, hosts, mesh)
  assert r["device_kind"] == "TPU v5 lite" and r["hbm_capacity_bytes"] == 16 * 2**30
  assert r["fits"] and 0 < r["hbm_bytes_per_chip"] < r["hbm_capacity_bytes"]
  assert r["flops_per_step"] > 0


def test_tpu_flops_per_step_are_the_same_for_every_mesh(libtpu):
  """FLOPs/step of one config on v5e-8 as data=8 and as fsdp=8: identical (the model FLOPs do not depend on the
  mesh), and the analytic count. XLA's count of the compiled per-device program is not: with splash attention
  (L = 128) the attention matmuls are missing from it, and under data=8 the replicated optimizer update is
  counted once per device."""
  reports = []
  for mesh in ({"data": 8, "fsdp": 1}, {"data": 1, "fsdp": 8}):
    c = _config("configs/lm/tiny.py:runlocal")
    c.data.seq_len, c.model.attention.kernel = 128, "auto"
    c.mesh.update(mesh)
    reports.append(aot.compile_for_topology(c, "v5e-8", with_eval=False))
    _check_model_flops(reports[-1]["flops_per_step"], c)
    assert "splash_mha" in " ".join(reports[-1]["pallas_kernels"])
  a, b = reports
  assert (a["mesh"]["data"], b["mesh"]["fsdp"]) == (8, 8)
  assert a["flops_per_step"] == b["flops_per_step"] and a["projected_step_time_s"] == b["projected_step_time_s"]
  m, L = c.model, c.data.seq_len
  attention = 3.0 * c.batch_size * L * m.num_layers * 4 * L * m.num_heads * m.head_dim
  for r in reports:
    assert r["xla_flops_per_device"] * 8 < r["flops_per_step"] - 0.5 * attention, r


@pytest.mark.slow
def test_tpu_cli_json(libtpu):
  p = subprocess.run([sys.executable, "-m", "kexue_jax.aot", "--config=configs/lm/tiny.py:runlocal",
                      "--topology=v2-8", "--json"], cwd=ROOT, capture_output=True, text=True, check=False)
  assert p.returncode == 0, p.stderr[-2000:]
  r = json.loads(p.stdout.strip().splitlines()[-1])
  for key in ("topology", "chips", "hbm_bytes_per_chip", "hbm_capacity_bytes", "fits", "flops_per_step"):
    assert key in r
  # v2-8: 4 chips of two TensorCores, one device each; 16 GiB per chip.
  assert (r["topology"], r["chips"], r["devices"], r["hbm_capacity_bytes"]) == ("v2-8", 4, 8, 16 * 2**30)


@pytest.mark.slow
@pytest.mark.parametrize("kernel,name", [("auto", "splash_mha"), ("pallas_rerope", "rerope_flash")])
def test_tpu_attention_kernels_compile_inside_shard_map(libtpu, kernel, name):
  """kernel='auto' is splash on TPU; the Pallas ReRoPE kernel lowers to Mosaic (its numerics are checked
  against the XLA reference in interpret mode in test_kernels.py)."""
  c = _config("configs/length_extrapolation/inv_leaky.py:scale=tiny")
  c.data.seq_len, c.batch_size = 128, 8
  c.model.attention.kernel = kernel
  c.model.attention.logn_base_length = 128
  if kernel == "auto":
    c.model.attention.position = "rope"
  r = aot.compile_for_topology(c, "v5e-8", with_eval=False)
  assert any(k.startswith(name) for k in r["pallas_kernels"]), r["pallas_kernels"]


@pytest.mark.slow
def test_tpu_eval_only_on_v4_8(libtpu):
  """The eval step alone, for v4-8's 4 megacore chips (the 7B row of RESULTS_tpu_aot.md on a tiny model)."""
  r = aot.compile_for_topology(_config("configs/length_extrapolation/pretrained.py:runlocal"), "v4-8",
                               eval_only=True)
  assert (r["step"], r["chips"], r["devices"], r["device_kind"]) == ("eval", 4, 4, "TPU v4")
  assert r["hbm_capacity_bytes"] == 32 * 2**30 and r["memory_per_device"]["alias_bytes"] == 0
  assert r["fits"] and r["hbm_bytes_per_chip"] == r["eval_hbm_bytes_per_chip"] and r["flops_per_step"] > 0


def test_table_names_a_crashed_compile():
  """A compile that kills the process (libtpu segfault): the table row names the signal and the frame, not the
  last line of faulthandler's dump (its module list)."""
  sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
  import tpu_aot  # pylint: disable=g-import-not-at-top
  dump = ("Fatal Python error: Segmentation fault\n\nThread 0x7f (most recent call first):\n"
          '  File "jax/_src/compiler.py", line 337 in backend_compile_and_load\n  File "x.py", line 1 in f\n\n'
          "Extension modules: jaxlib.cpu_feature_guard, numpy._core._multiarray_umath")
  line = tpu_aot.failure_line(-11, dump)
  assert line.startswith("process crashed (Fatal Python error: Segmentation fault, exit -11)")
  assert "backend_compile_and_load" in line and "Extension modules" not in line
  assert tpu_aot.failure_line(1, "Traceback ...\nValueError: bad mesh") == "ValueError: bad mesh"
