"""Fast attention kernels (fast_attention.py, pallas_rerope.py) on CPU.

What runs here: the dispatch logic with mocked backends; the cuDNN path's
code with jax.nn.dot_product_attention(implementation="xla") standing in for
cuDNN (no GPU here); the TPU splash kernel and the Pallas ReRoPE kernel in the
Pallas interpreter (interpret=True; Mosaic/Triton lowering is not exercised:
no TPU/GPU here). References: attention.attend's XLA path,
rerope_blockwise.blockwise_attention and tests/reference_np.py (float64).
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax import sharding
from kexue_jax.nn import attention as A
from kexue_jax.nn import fast_attention as F
from kexue_jax.nn import pallas_rerope as PR
from kexue_jax.nn import rerope_blockwise as RB
from kexue_jax.nn.positions import RopeScaling
from tests import reference_np as ref

ATOL = RTOL = 1e-5
C = A.AttentionConfig


@pytest.fixture(autouse=True)
def _fresh_log(monkeypatch):
  """Empty the once-per-config log memory and record what is logged."""
  monkeypatch.setattr(F, "_logged", {})
  lines = []
  monkeypatch.setattr(F.logging, "log", lambda level, fmt, *args: lines.append(fmt % args))
  return lines


def _close(a, b, atol=ATOL, rtol=RTOL):
  np.testing.assert_allclose(np.asarray(a).astype(np.float64), np.asarray(b).astype(np.float64),
                             atol=atol, rtol=rtol)


def _no_fallback(lines):
  assert not [line for line in lines if "falling back" in line], lines


_attend = jax.jit(A.attend, static_argnames="config")


# ----------------------------------------------------------------------------
# Dispatch.

def test_kernel_field_is_validated():
  with pytest.raises(ValueError, match="kernel"):
    C(kernel="flash")
  assert C().kernel == "xla"


@pytest.mark.parametrize("kernel,position,backend,want", [
    ("auto", "rope", "cpu", "xla"),
    ("auto", "rope", "tpu", "splash"),
    ("auto", "none", "gpu", "cudnn"),
    ("auto", "rerope", "tpu", "xla"),          # Pallas ReRoPE is opt-in
    ("auto", "leaky_rerope", "gpu", "xla"),
    ("splash", "rope", "cpu", "splash"),       # explicit: interpreter on CPU
    ("pallas_rerope", "rerope", "gpu", "pallas_rerope"),
])
def test_resolve_kernel(kernel, position, backend, want):
  assert F.resolve_kernel(C(kernel=kernel, position=position), backend) == want


def test_auto_on_cpu_is_the_xla_path(_fresh_log, qkv):
  q, k, v = qkv(0, L=16)
  out_auto = A.attend(q, k, v, config=C(kernel="auto"))
  out_xla = A.attend(q, k, v, config=C())
  np.testing.assert_array_equal(np.asarray(out_auto), np.asarray(out_xla))
  A.attend(q, k, v, config=C(kernel="auto"))
  assert len(_fresh_log) == 1 and "XLA path" in _fresh_log[0]


@pytest.mark.parametrize("backend,config,call,reason", [
    ("tpu", C(kernel="auto", position="alibi"), {}, "position 'alibi'"),
    ("tpu", C(kernel="splash", position="xpos"), {}, "position 'xpos'"),
    ("tpu", C(kernel="auto", window=4, lambda_first_tokens=2), {}, "Lambda-mask"),
    ("tpu", C(kernel="auto"), {"L": 8, "S": 16}, "cached decoding"),
    ("tpu", C(kernel="auto"), {"extra": ("an extra mask_BLS",)}, "mask_BLS"),
    ("tpu", C(kernel="auto"), {"L": 96, "S": 96}, "multiple of 128"),
    ("tpu", C(kernel="auto"), {"has_valid": True, "has_segments": True}, "segment ids"),
    ("gpu", C(kernel="splash"), {}, "TPU (Mosaic) kernel"),
    ("gpu", C(kernel="auto"), {"dtype": jnp.float32}, "bf16/fp16"),
    ("gpu", C(kernel="auto", causal=False, window=8), {}, "bidirectional sliding window"),
    ("gpu", C(kernel="auto"), {"has_valid": True}, "key padding"),
    ("gpu", C(kernel="auto"), {"head_dim": 12}, "head_dim"),
    ("cpu", C(kernel="cudnn"), {}, "needs a GPU"),
    ("cpu", C(kernel="pallas_rerope", position="alibi"), {}, "Pallas ReRoPE"),
])
def test_unsupported_reasons(backend, config, call, reason):
  kw = dict(backend=backend, L=128, S=128, head_dim=64, dtype=jnp.bfloat16)
  kw.update(call)
  got = F.unsupported(F.resolve_kernel(config, backend), config, **kw)
  assert got is not None and reason in got, got


@pytest.mark.parametrize("backend,kernel_attr,dtype", [("tpu", "_splash", np.float32),
                                                       ("gpu", "_cudnn", jnp.bfloat16)])
def test_auto_dispatches_rotated_inputs_and_logs_fallbacks_once(
    monkeypatch, _fresh_log, backend, kernel_attr, dtype, qkv):
  """Mocked backend: the chosen kernel gets RoPE-rotated, scaled q/k; inexpressible configs
  fall back to XLA (same output as kernel='xla') with one log line per config."""
  monkeypatch.setattr(F, "_backend", lambda: backend)
  calls = []
  def fake(q, k, v, *args, **kwargs):
    calls.append((q, k))
    return jnp.zeros_like(v)
  monkeypatch.setattr(F, kernel_attr, fake)
  q, k, v = (jnp.asarray(a, dtype) for a in qkv(1, L=128, D=16))
  out = A.attend(q, k, v, config=C(kernel="auto"))
  assert len(calls) == 1 and not np.any(np.asarray(out, np.float32))
  pos = jnp.broadcast_to(jnp.arange(128.0), (2, 128))
  want_q = A.pos_lib.apply_rope((q.astype(jnp.float32) / 4.0).astype(dtype), pos)
  _close(calls[0][0].astype(jnp.float32), want_q.astype(jnp.float32), atol=0, rtol=0)
  _close(calls[0][1].astype(jnp.float32), A.pos_lib.apply_rope(k, pos).astype(jnp.float32),
         atol=0, rtol=0)

  alibi = C(kernel="auto", position="alibi")
  for _ in range(3):
    out = A.attend(q, k, v, config=alibi)
  np.testing.assert_array_equal(np.asarray(out, np.float32),
                                np.asarray(A.attend(q, k, v, config=C(position="alibi")),
                                           np.float32))
  assert len(calls) == 1
  falls = [line for line in _fresh_log if "falling back" in line]
  assert len(falls) == 1 and "position 'alibi'" in falls[0], _fresh_log
  A.attend(q, k, v, config=C(kernel="auto", position="alibi", causal=False))  # a new config
  assert len([line for line in _fresh_log if "falling back" in line]) == 2


# ----------------------------------------------------------------------------
# Numerics of the flash paths against attend's XLA path.

FLASH_CASES = {
    "rope": C(),
    "rope_window": C(window=5),
    "nope_logn": C(position="none", logn="train", logn_base_length=8),
    "rope_ntk_retrofit": C(scaling=RopeScaling("ntk_aware", factor=4.0), logn="retrofit",
                           logn_base_length=8),
    "rope_yarn_kna": C(scaling=RopeScaling("yarn", factor=2.0, train_length=8), qk_norm="kna"),
    "rope_bidirectional_interleaved": C(causal=False, rope_convention="interleaved"),
}


@pytest.mark.parametrize("name", list(FLASH_CASES))
def test_cudnn_path_numerics_with_xla_implementation(monkeypatch, name, qkv):
  """The cudnn branch (rotation, scale=1, window as (w-1, 0)) run by dot_product_attention's
  XLA implementation in float32: must equal attend's XLA path."""
  monkeypatch.setattr(F, "_backend", lambda: "gpu")
  monkeypatch.setattr(F, "CUDNN_IMPLEMENTATION", "xla")
  monkeypatch.setattr(F, "CUDNN_DTYPES", (jnp.float32,))
  cfg = FLASH_CASES[name]
  q, k, v = qkv(2, L=24)
  sentinel = []
  real = F._cudnn
  monkeypatch.setattr(F, "_cudnn", lambda *a, **kw: sentinel.append(1) or real(*a, **kw))
  out = A.attend(q, k, v, config=dataclasses.replace(cfg, kernel="cudnn"))
  assert sentinel, "the cudnn branch was not taken"
  _close(out, A.attend(q, k, v, config=cfg))


@pytest.mark.parametrize("cfg,padding,segments", [
    (C(), False, False),
    (C(window=40, position="none", logn="train", logn_base_length=64), True, False),
    (C(causal=False, window=33), True, False),
    (C(causal=False, scaling=RopeScaling("pi", factor=2.0)), False, True),
])
def test_splash_interpreted_matches_attend(_fresh_log, cfg, padding, segments, qkv):
  """The real TPU splash kernel, run by the Pallas interpreter on CPU."""
  B, L = 2, 128
  q, k, v = qkv(3, B=B, L=L, D=16)
  kw = {}
  if padding:   # right padding in row 0, left padding (queries that see nothing) in row 1
    idx = np.arange(L)
    kw["k_valid_BS"] = np.stack([idx < 100, idx >= 70])
  if segments:
    seg = (np.arange(L)[None] >= np.array([[50], [90]])).astype(np.int32)
    kw.update(q_segment_ids_BL=seg, k_segment_ids_BS=seg)
  out = _attend(q, k, v, config=dataclasses.replace(cfg, kernel="splash"), **kw)
  _no_fallback(_fresh_log)
  assert any("splash runs in the Pallas interpreter" in line for line in _fresh_log)
  _close(out, _attend(q, k, v, config=cfg, **kw))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("window", [None, 1, 7])
def test_splash_mask_and_visible_keys_match_make_mask(causal, window):
  L = 24
  want = np.asarray(A.make_mask(jnp.arange(float(L))[None], jnp.arange(float(L))[None],
                                causal=causal, window=window))[0, 0]
  got = np.asarray(F.splash_mask(L, L, causal=causal, window=window)[:, :])
  np.testing.assert_array_equal(got, want)
  valid = np.random.default_rng(0).random((3, L)) < 0.3
  full = np.asarray(A.make_mask(jnp.broadcast_to(jnp.arange(float(L)), (3, L)),
                                jnp.broadcast_to(jnp.arange(float(L)), (3, L)), causal=causal,
                                window=window, k_valid_BS=valid))[:, 0]
  np.testing.assert_array_equal(
      np.asarray(F.has_visible_key(valid, L, causal=causal, window=window)), full.any(-1))


# ----------------------------------------------------------------------------
# The Pallas ReRoPE kernel (interpreter).

def _positions(B, n):
  return jnp.broadcast_to(jnp.arange(n, dtype=jnp.float32), (B, n))


@pytest.mark.parametrize("seed", range(3))
def test_pallas_rerope_matches_blockwise_and_two_matrix(seed, qkv):
  rng = np.random.default_rng(100 + seed)
  B, L, H = int(rng.integers(1, 3)), int(rng.integers(9, 41)), int(rng.integers(1, 3))
  D = int(rng.choice([8, 16]))
  leaky = bool(seed % 2)
  cfg = C(position="leaky_rerope" if leaky else "rerope", rerope_window=int(rng.integers(1, L)),
          leaky_k=float(rng.choice([0.5, 4.0, 16.0])), causal=seed != 1,
          window=int(rng.integers(4, L)) if seed == 2 else None)
  bq, bk = int(rng.choice([8, 16])), int(rng.choice([8, 16, 32]))
  q, k, v = qkv(seed, B=B, L=L, H=H, D=D)
  q = (q / np.sqrt(D)).astype(np.float32)  # the kernel's q carries the logit scale
  valid = np.arange(L)[None] < rng.integers(L // 2, L + 1, size=(B, 1))
  kernel = jax.jit(lambda q, k, v, valid: PR.rerope_flash_attention(
      q, k, v, config=cfg, k_valid_BS=valid, block_q=bq, block_k=bk, interpret=True))
  out = kernel(q, k, v, valid)
  pos = _positions(B, L)
  blockwise = RB.blockwise_attention(q, k, v, q_positions_BL=pos, k_positions_BS=pos,
                                     config=cfg, k_valid_BS=valid, block_size=bk)
  _close(out, blockwise)
  two_matrix = _attend((q * np.sqrt(D)).astype(np.float32), k, v, k_valid_BS=valid,
                        config=dataclasses.replace(cfg, rerope_impl="two_matrix"))
  _close(out, two_matrix)


def test_pallas_rerope_matches_float64_reference(_fresh_log, qkv):
  cfg = C(position="leaky_rerope", rerope_window=3, leaky_k=2.0)
  q, k, v = qkv(7, B=1, L=11, H=2, D=8)
  out = _attend(q, k, v, config=dataclasses.replace(cfg, kernel="pallas_rerope", block_size=8))
  _no_fallback(_fresh_log)
  _close(out, ref.attention(q, k, v, cfg))


def test_pallas_rerope_gradients_equal_two_matrix(_fresh_log, qkv):
  """custom_vjp: Pallas forward, backward through the XLA blockwise version."""
  cfg = C(position="rerope", rerope_window=5, block_size=8)
  q, k, v = qkv(8, B=1, L=16, H=1, D=8)
  loss = lambda c: jax.jit(jax.grad(lambda q, k, v: jnp.sum(A.attend(q, k, v, config=c) ** 2),
                                    (0, 1, 2)))
  g_kernel = loss(dataclasses.replace(cfg, kernel="pallas_rerope"))(q, k, v)
  _no_fallback(_fresh_log)
  g_xla = loss(dataclasses.replace(cfg, rerope_impl="two_matrix"))(q, k, v)
  for a, b in zip(g_kernel, g_xla):
    _close(a, b)


def test_pallas_rerope_under_a_sharded_mesh(monkeypatch, _fresh_log, qkv):
  """Inside jax.set_mesh + logical rules the kernel runs per (batch, head) shard."""
  specs = []
  real = jax.shard_map
  monkeypatch.setattr(F.jax, "shard_map", lambda f, **kw: specs.append(kw["in_specs"]) or real(f, **kw))
  mesh = sharding.make_mesh(dict(data=2, fsdp=2, tensor=2))
  cfg = C(position="rerope", rerope_window=6, block_size=8)
  q, k, v = qkv(9, B=4, L=24, H=2, D=8)
  f = jax.jit(A.attend, static_argnames="config")
  want = f(q, k, v, config=dataclasses.replace(cfg, rerope_impl="two_matrix"))
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.DEFAULT_RULES):
    got = f(q, k, v, config=dataclasses.replace(cfg, kernel="pallas_rerope"))
  _no_fallback(_fresh_log)
  assert specs and specs[0][0] == jax.P(("data", "fsdp"), None, "tensor", None), specs
  _close(got, want)


def test_multi_head_attention_module_with_the_kernel(_fresh_log):
  """The Flax module (what the models use) through the kernel equals its XLA path."""
  cfg = C(position="leaky_rerope", rerope_window=4, leaky_k=8.0, block_size=8)
  x = np.random.default_rng(10).normal(size=(2, 16, 32)).astype(np.float32)
  mha = lambda c: A.MultiHeadAttention(num_heads=2, head_dim=8, config=c)
  params = mha(cfg).init(jax.random.key(0), x)
  pos = np.broadcast_to(np.arange(16), (2, 16))
  run = lambda c: jax.jit(lambda p: mha(c).apply(p, x, positions_BL=pos))(params)
  got = run(dataclasses.replace(cfg, kernel="pallas_rerope"))
  _no_fallback(_fresh_log)
  _close(got, run(cfg))


@pytest.mark.parametrize("causal", [True, False])
def test_pallas_rerope_lowers_to_triton_for_cuda(causal):
  """Cross-platform lowering (jax.export, no GPU needed) emits one Triton kernel for CUDA.

  This checks the kernel against Pallas' Triton lowering rules; Triton/PTX compilation and
  Mosaic (TPU) lowering need the device and are not run here.
  """
  cfg = C(position="leaky_rerope", rerope_window=64, leaky_k=16.0, causal=causal, window=200)
  shape = jax.ShapeDtypeStruct((2, 256, 2, 64), jnp.bfloat16)
  f = jax.jit(lambda q, k, v: PR.rerope_flash_attention(q, k, v, config=cfg, block_q=64,
                                                        block_k=64, platform="gpu"))
  triton = "__gpu$xla.gpu.triton"
  exp = jax.export.export(f, platforms=["cuda"], disabled_checks=[
      jax.export.DisabledSafetyCheck.custom_call(triton)])(shape, shape, shape)
  assert exp.mlir_module().count(f"custom_call @{triton}") == 1
