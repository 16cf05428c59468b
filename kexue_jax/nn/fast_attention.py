"""Fast attention kernels behind `attention.attend` (selected by `AttentionConfig.kernel`).

`attend` prepares q exactly as for its XLA path (key/query normalisation,
the per-query multiplier c_i = 1/sqrt(d) * log-n * YaRN folded into q), then
asks `fast_attend`; a None answer means "use the XLA path". A kernel computes

    out_i = sum_j softmax_j( <q~_i, k~_j> ) v_j        (no further scaling)

with q~, k~ rotated here (RoPE, any frequency scaling; NoPE: unrotated) and
the mask built into the kernel:

  "splash"         TPU splash attention (jax.experimental.pallas.ops.tpu, Mosaic).
                   Masks: causal / full, sliding window, segment ids or key padding.
  "cudnn"          GPU cuDNN flash attention (jax.nn.dot_product_attention).
                   Masks: causal / full, causal sliding window; bf16/fp16 inputs only.
  "pallas_rerope"  pallas_rerope.rerope_flash_attention on any backend (Triton on
                   GPU, Mosaic on TPU). Masks: causal / full, sliding window, key padding.
  "auto"           TPU: splash (v4 and newer for bf16: v2/v3 have no bf16 Mosaic
                   matmul, XLA there), GPU: cudnn, CPU: XLA; ReRoPE stays on XLA (the
                   Pallas ReRoPE kernel is opt-in until verified on hardware).
  "xla"            never calls this module.

Positions: "splash", "cudnn" take position "rope" / "none" (ALiBi, xPos,
2D RoPE, RoPE-Tie and ReRoPE need the XLA path); "pallas_rerope" takes
"rerope", "leaky_rerope" (and "rope", "none"). Not handled by any kernel:
Lambda-mask, extra boolean masks, dropout, explicit orders, L != S (cached
decoding) -- those fall back to XLA with a one-line log, once per (config,
reason). Kernels mask by token index, so positions must be the token
indices (the default arange; true for the LM training path).

Off their hardware: "splash" and "pallas_rerope" run with the Pallas
interpreter on CPU (slow; that is how tests/test_kernels.py checks their
numerics); "cudnn" off GPU falls back. Pallas calls are not partitioned by
XLA, so inside a mesh (`jax.set_mesh`) they run under `jax.shard_map` over
the batch and head axes given by the logical-axis rules (outside a mesh, e.g.
in the training loop's init, they are called directly).

Status: dispatch, the cuDNN branch (with XLA standing in), splash and the
Pallas ReRoPE kernel (interpreter) are tested on CPU; splash and the Pallas
ReRoPE kernel are compiled for TPU (Mosaic, inside shard_map) by
kexue_jax.aot with libtpu (tests/test_aot.py); no GPU/TPU run yet. The
platform is the current mesh's (`_backend`), so an AOT compile for a TPU
topology on a CPU host picks the TPU kernels.
"""
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import PartitionSpec as P

from kexue_jax.nn import attention_config as acfg
from kexue_jax.nn import pallas_rerope
from kexue_jax.nn import positions as pos_lib

KERNELS = acfg.KERNELS
FLASH_POSITIONS = ("rope", "none")
CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
CUDNN_IMPLEMENTATION = "cudnn"     # tests set "xla" to run this path's numerics on CPU

_logged: dict = {}                 # (config, message) -> message; one log line per key


def _backend() -> str:
  """The platform of the current mesh's devices (an AOT compile for a TPU topology on a CPU host is
  "tpu"), else jax's default backend."""
  device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
  return getattr(device, "platform", None) or jax.default_backend()


def _device_kind() -> str:
  """The current mesh's device kind ("TPU v5 lite", ...), else the default device's."""
  device = getattr(jax.sharding.get_abstract_mesh(), "abstract_device", None)
  return getattr(device, "device_kind", None) or jax.devices()[0].device_kind


# Mosaic has no bf16 matmul on these (libtpu: "CompileTimeMosaicUnsupportedRhsType ... vector<128x128xbf16>"
# compiling splash for a v2-8, kexue_jax.aot); their Pallas kernels would need float32 inputs.
NO_BF16_MOSAIC = ("TPU v2", "TPU v3")


def _log_once(config, msg, level=logging.WARNING):
  key = (config, msg)
  if key not in _logged:
    _logged[key] = msg
    logging.log(level, "attention kernel: %s", msg)


def extras(mask_BLS=None, dropout_rng=None, dropout_rate=0.0, explicit_order=False):
  """Names of the call's features that no kernel expresses (attend passes them)."""
  out = []
  if mask_BLS is not None:
    out.append("an extra mask_BLS")
  if dropout_rng is not None and dropout_rate > 0.0:
    out.append("attention dropout")
  if explicit_order:
    out.append("explicit q/k orders")
  return tuple(out)


def resolve_kernel(config, backend: str) -> str:
  """The kernel `config.kernel` means on `backend` ("xla" for the XLA path)."""
  k = config.kernel
  if k != "auto":
    return k
  if config.is_rerope:
    return "xla"
  return {"tpu": "splash", "gpu": "cudnn"}.get(backend, "xla")


def unsupported(kernel, config, *, backend, L, S, head_dim, dtype, has_valid=False,
                has_segments=False, extra=()):
  """Why `kernel` cannot compute this call (a one-line reason), or None if it can."""
  c = config
  if extra:
    return f"{', '.join(extra)} not expressible"
  if L != S:
    return f"L={L} != S={S} (cached decoding)"
  if c.lambda_first_tokens:
    return "Lambda-mask (lambda_first_tokens) not expressible"
  if kernel == "pallas_rerope":
    if c.position not in pallas_rerope.POSITIONS:
      return f"position {c.position!r} not in the Pallas ReRoPE kernel {pallas_rerope.POSITIONS}"
    if has_segments:
      return "segment ids not expressible in the Pallas ReRoPE kernel"
    return None
  if c.position not in FLASH_POSITIONS:
    return f"position {c.position!r} is not expressible in {kernel} (RoPE/NoPE only)"
  if kernel == "splash":
    if backend == "gpu":
      return "splash is a TPU (Mosaic) kernel"
    if L % 128:
      return f"splash needs L a multiple of 128, got {L}"
    if has_segments and has_valid:
      return "segment ids together with key padding not expressible in splash"
    return None
  if kernel == "cudnn":
    if backend != "gpu":
      return f"cudnn needs a GPU, backend is {backend}"
    if jnp.dtype(dtype) not in [jnp.dtype(d) for d in CUDNN_DTYPES]:
      return f"cudnn flash attention needs bf16/fp16 inputs, got {jnp.dtype(dtype).name}"
    if has_valid or has_segments:
      return "key padding / segment ids not expressible in cudnn here"
    if c.window is not None and not c.causal:
      return "cudnn has no bidirectional sliding window"
    if head_dim % 8 or head_dim > 128:
      return f"cudnn needs head_dim a multiple of 8 and <= 128, got {head_dim}"
    return None
  raise ValueError(f"unknown attention kernel {kernel!r}; use one of {KERNELS}.")


# ----------------------------------------------------------------------------
# Sharding: Pallas calls run per shard.

def _on_mesh(fn, q_BLHD, k_BSHD, v_BSHD, *batch_args):
  """fn(q, k, v, *batch_args) under shard_map over the mesh's batch/head axes.

  batch_args: arrays with a leading batch axis, or None. Without a mesh
  (or on one device) fn is called directly.
  """
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or math.prod(mesh.shape.values()) == 1:
    return fn(q_BLHD, k_BSHD, v_BSHD, *batch_args)
  spec = nn.logical_to_mesh_axes(("batch", "length", "heads", "kv"))
  batch_spec = lambda a: P(spec[0], *([None] * (a.ndim - 1))) if a is not None else None
  in_specs = (spec, spec, spec) + tuple(batch_spec(a) for a in batch_args)
  return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=spec,
                       check_vma=False)(q_BLHD, k_BSHD, v_BSHD, *batch_args)


# ----------------------------------------------------------------------------
# Kernels. Inputs: q carries its scale; q, k already rotated (splash, cudnn).

# Splash's tiles must fit the 16 MiB default scoped VMEM: measured with libtpu (kexue_jax.aot), the dkv
# kernel needs 18.3 MiB at block 512 with head dims (D, Dv) = (128, 1536) (a GAU's values), i.e. about
# 22 bytes per unit of block * (D + Dv). Keep block * (D + Dv) <= 2**19 (about 11.5 MiB).
_SPLASH_TILE_BUDGET = 2**19


def _splash_block(n, head_dim=128, value_dim=128):
  fits = [b for b in (512, 256, 128) if n % b == 0 and b * (head_dim + value_dim) <= _SPLASH_TILE_BUDGET]
  return fits[0] if fits else 128


@functools.lru_cache(maxsize=64)
def _splash_kernel(num_heads, L, S, causal, window, interpret, head_dim=128, value_dim=128):
  """A splash MHA kernel for one example (mask processing is numpy: cached)."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # pylint: disable=g-import-not-at-top
  mask = splash_mask(L, S, causal=causal, window=window)
  b = _splash_block(L, head_dim, value_dim)
  blocks = sa.BlockSizes(block_q=b, block_kv=b, block_kv_compute=b, block_q_dkv=b,
                         block_kv_dkv=b, block_kv_dkv_compute=b, block_q_dq=b, block_kv_dq=b)
  return sa.make_splash_mha(sa.MultiHeadMask([mask] * num_heads), block_sizes=blocks,
                            head_shards=1, q_seq_shards=1, interpret=interpret)


def splash_mask(L, S, *, causal, window):
  """The splash mask for attend's causal/window masks (token-index order).

  causal, window w:  0 <= i - j < w   -> LocalMask(left w-1, right 0)
  bidirectional, w:  |i - j| < w      -> LocalMask(left w-1, right w-1)
  causal / full without a window      -> CausalMask / FullMask.
  """
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # pylint: disable=g-import-not-at-top
  if window is not None:
    return sa.LocalMask((L, S), window_size=(window - 1, 0 if causal else window - 1), offset=0)
  return sa.CausalMask((L, S)) if causal else sa.FullMask((L, S))


def splash_segment_ids(B, L, S, k_valid_BS=None, q_segment_ids_BL=None, k_segment_ids_BS=None):
  """SegmentIds for splash: packing ids as given, or key padding as ids (q: 0, keys: 0 / -1)."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa  # pylint: disable=g-import-not-at-top
  if q_segment_ids_BL is not None:
    return sa.SegmentIds(q=jnp.asarray(q_segment_ids_BL, jnp.int32),
                         kv=jnp.asarray(k_segment_ids_BS, jnp.int32))
  if k_valid_BS is not None:
    return sa.SegmentIds(q=jnp.zeros((B, L), jnp.int32),
                         kv=jnp.where(jnp.asarray(k_valid_BS, bool), 0, -1).astype(jnp.int32))
  return None


def has_visible_key(k_valid_BS, L, *, causal, window):
  """(B, L) bool: query i sees at least one valid key (token-index masks, L == S).

  Prefix sums c_n = #valid keys among the first n; keys visible to i are
  j in [lo_i, hi_i] with lo = max(0, i-w+1) (window) else 0, hi = i (causal)
  or min(S-1, i+w-1) / S-1 (bidirectional).
  """
  valid = jnp.asarray(k_valid_BS, jnp.int32)
  S = valid.shape[1]
  c = jnp.pad(jnp.cumsum(valid, axis=1), ((0, 0), (1, 0)))
  i = np.arange(L)
  lo = np.maximum(i - window + 1, 0) if window is not None else np.zeros_like(i)
  if causal:
    hi = i
  else:
    hi = np.minimum(i + window - 1, S - 1) if window is not None else np.full_like(i, S - 1)
  return (c[:, hi + 1] - c[:, lo]) > 0


def _splash(q_BLHD, k_BSHD, v_BSHD, k_valid_BS, q_seg_BL, k_seg_BS, *, config, interpret):
  B, L, H, D = q_BLHD.shape
  S = k_BSHD.shape[1]
  kernel = _splash_kernel(H, L, S, config.causal, config.window, interpret, D, v_BSHD.shape[-1])
  heads_first = lambda x: jnp.swapaxes(x, 1, 2)                      # (B, H, L, D)
  seg = splash_segment_ids(B, L, S, k_valid_BS, q_seg_BL, k_seg_BS)
  if seg is None:
    out = jax.vmap(kernel)(heads_first(q_BLHD), heads_first(k_BSHD), heads_first(v_BSHD))
  else:
    out = jax.vmap(kernel)(heads_first(q_BLHD), heads_first(k_BSHD), heads_first(v_BSHD), seg)
  out = heads_first(out).astype(v_BSHD.dtype)
  if k_valid_BS is not None:   # rows with no visible key are zeros in attend
    keep = has_visible_key(k_valid_BS, L, causal=config.causal, window=config.window)
    out = jnp.where(keep[:, :, None, None], out, 0).astype(out.dtype)
  return out


def _cudnn(q_BLHD, k_BSHD, v_BSHD, *, config):
  window = None
  if config.window is not None:
    window = (config.window - 1, 0)
  return jax.nn.dot_product_attention(
      q_BLHD, k_BSHD, v_BSHD, scale=1.0, is_causal=config.causal, local_window_size=window,
      implementation=CUDNN_IMPLEMENTATION)


def fast_attend(q_BLHD, k_BSHD, v_BSHD, *, config, q_positions_BL, k_positions_BS,
                k_valid_BS=None, q_segment_ids_BL=None, k_segment_ids_BS=None, length=None,
                extra=()):
  """Attention through the kernel `config.kernel` selects, or None (use XLA).

  q_BLHD already carries its logit multiplier and key/query normalisation
  (as attend prepares it); q, k are un-rotated; positions are (B, L) / (B, S).
  extra: names of features of the call no kernel expresses (`extras`).
  """
  c = config
  backend = _backend()
  kernel = resolve_kernel(c, backend)
  if kernel == "xla":
    _log_once(c, f"kernel={c.kernel!r} on {backend}: XLA path for position={c.position!r}",
              logging.INFO)
    return None
  B, L, H, D = q_BLHD.shape
  S = k_BSHD.shape[1]
  reason = unsupported(kernel, c, backend=backend, L=L, S=S, head_dim=D, dtype=q_BLHD.dtype,
                       has_valid=k_valid_BS is not None,
                       has_segments=q_segment_ids_BL is not None, extra=extra)
  if reason:
    _log_once(c, f"{kernel} not used ({reason}); falling back to the XLA path")
    return None
  if (backend == "tpu" and kernel in ("splash", "pallas_rerope") and jnp.dtype(q_BLHD.dtype) == jnp.bfloat16
      and _device_kind() in NO_BF16_MOSAIC):
    _log_once(c, f"{kernel} not used (no bf16 Mosaic matmul on {_device_kind()}); falling back to the XLA path")
    return None
  interpret = backend == "cpu"
  if interpret and kernel != "cudnn":
    _log_once(c, f"{kernel} runs in the Pallas interpreter on {backend} (slow; for tests)",
              logging.INFO)

  if kernel == "pallas_rerope":
    block = {"tpu": 128, "gpu": 64}.get(backend, c.block_size)
    fn = lambda q, k, v, qp, kp, kv: pallas_rerope.rerope_flash_attention(
        q, k, v, config=c, q_positions_BL=qp, k_positions_BS=kp, k_valid_BS=kv, length=length,
        block_q=block, block_k=block, interpret=interpret, platform=backend)
    return _on_mesh(fn, q_BLHD, k_BSHD, v_BSHD, q_positions_BL, k_positions_BS, k_valid_BS)

  if c.position == "rope":
    rope = functools.partial(pos_lib.apply_rope, **acfg.rope_kwargs(c, length))
    q_BLHD, k_BSHD = rope(q_BLHD, q_positions_BL), rope(k_BSHD, k_positions_BS)
  if kernel == "cudnn":
    try:
      return _cudnn(q_BLHD, k_BSHD, v_BSHD, config=c)
    except (NotImplementedError, ValueError, RuntimeError) as e:   # shape/dtype/version checks
      _log_once(c, f"cudnn not used ({str(e).splitlines()[0]}); falling back to the XLA path")
      return None
  fn = lambda q, k, v, kv, qs, ks: _splash(q, k, v, kv, qs, ks, config=c, interpret=interpret)
  return _on_mesh(fn, q_BLHD, k_BSHD, v_BSHD, k_valid_BS, q_segment_ids_BL, k_segment_ids_BS)
