"""A Pallas kernel for blockwise ReRoPE / Leaky ReRoPE attention (forward pass).

No flash kernel in JAX expresses ReRoPE (kexue.fm/archives/9708): its logits are

    a_ij = (R_i q_i)^T (R_j k_j)                         0 <= |i - j| < w    "near"
         = (R_w q_i)^T k_j                               i - j >= w          "past"
         = (R_-w q_i)^T k_j                              j - i >= w          "future"

and Leaky ReRoPE (leak k) clamps to w + (|i-j| - w)/k instead:
past = (R_{(i-w)/k+w} q_i)^T (R_{j/k} k_j), future = (R_{(i+w)/k-w} q_i)^T (R_{j/k} k_j).
So the five rotated copies q_near, q_past, q_future, k_near, k_far are made
once in XLA (O(n d), `attention_config.rerope_far_rotations`), and the kernel runs
flash attention over them, choosing per (query block, key block) tile:

    past only    (every i - j >= w in the tile)   one matmul  q_past k_far^T
    near only    (every |i - j| < w)              one matmul  q_near k_near^T
    future only  (every j - i >= w)               one matmul  q_future k_far^T
    mixed        (the tile straddles |i - j| = w) two (three) matmuls + select

with the online softmax (running max m, normaliser l, accumulator acc, in
float32) across key blocks. This is the same math as the XLA version
`rerope_blockwise.blockwise_attention`; the kernel skips key blocks outside
the causal triangle / sliding-window band with the loop bounds.

Layout: one program per (batch*head, query block) -- grid (B H, L / block_q) --
holding its query block and the *whole* key/value sequence of its head, with
a `fori_loop` over key blocks (the Triton-style loop, which is the form that
runs on GPU, TPU and in interpret mode alike).

Conventions and constraints:
  * q carries its logit scale (1/sqrt d, log n, ...), as in blockwise_attention.
  * Rotations use the given positions; masks and the tile choice use token
    indices (query i = S - L + its index, key j = its index), so positions
    must be the token indices (the default arange) for the result to match.
  * Masks: causal or bidirectional, sliding window (|i-j| < window), key
    padding. Not: Lambda-mask, segment ids, extra masks, dropout.
  * Backward: `jax.custom_vjp` whose backward pass is the VJP of the XLA
    blockwise version (recomputes the forward in XLA; memory O(n block)).
  * Block shapes: block_q, block_k multiples of 8 (sublanes); on TPU block_k
    should be a multiple of 128 (lanes of the (block_q, block_k) score tile)
    and head_dim a multiple of 128 is fastest; on GPU (Triton) block sizes
    must be powers of two >= 16. L and S are padded to whole blocks. The
    whole key/value sequence of one head sits in on-chip memory (TPU VMEM:
    about 3 S d x bytes, double-buffered), which bounds S on TPU; beyond
    that use the XLA blockwise version.
  * GPU: compiled through Triton (`_compiler_params`), not jax's default
    Mosaic GPU lowering, which would stage the whole K/V of a head in shared
    memory (> 228 KiB already at S=512, d=128, bf16).
  * Tested on CPU with interpret=True (numerics, gradients, under a mesh),
    lowered to Triton IR for CUDA with jax.export, and compiled for TPU
    (Mosaic, forward + the XLA backward, inside shard_map) with libtpu by
    kexue_jax.aot (tests/test_aot.py). Mosaic reads the TPU generation from
    the current mesh, so compile under `jax.set_mesh` (the training loop and
    aot do). Triton/PTX compilation and benchmarks need a GPU
    (benchmarks/accelerator_check.py).
"""
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from kexue_jax.nn import attention_config as acfg
from kexue_jax.nn import rerope_blockwise

POSITIONS = rerope_blockwise.BLOCKWISE_POSITIONS
_NEG = -1e30
_NEAR, _PAST, _FUT, _MIXED = 0, 1, 2, 3


def _round_up(n, m):
  return -(-n // m) * m


def _pad(x, axis, size, value=0):
  extra = size - x.shape[axis]
  if not extra:
    return x
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, extra)
  return jnp.pad(x, pad, constant_values=value)


def _compiler_params(platform):
  """GPU: the Triton lowering (refs stay in global memory; Mosaic GPU, jax's default, would
  copy the whole K/V of a head to shared memory). TPU: both grid axes are independent."""
  if platform in ("gpu", "cuda", "rocm"):
    from jax.experimental.pallas import triton as pl_triton  # pylint: disable=g-import-not-at-top
    return pl_triton.CompilerParams(num_warps=4, num_stages=2)
  if platform == "tpu":
    from jax.experimental.pallas import tpu as pltpu  # pylint: disable=g-import-not-at-top
    return pltpu.CompilerParams(dimension_semantics=("parallel", "parallel"))
  return None


def _kernel(qn_ref, qp_ref, qf_ref, kn_ref, kf_ref, v_ref, valid_ref, o_ref, *,
            block_q, block_k, num_k_blocks, q_offset, w, window, causal):
  """One (batch*head, query block) program; refs are (block_q | S, D) tiles."""
  q_lo = q_offset + pl.program_id(1) * block_q
  q_hi = q_lo + block_q - 1
  qn, qp, qf = qn_ref[...], qp_ref[...], qf_ref[...]
  nt = (((1,), (1,)), ((), ()))  # q k^T
  dot = lambda a, b: jax.lax.dot_general(a, b, nt, preferred_element_type=jnp.float32)

  # Key blocks that can hold a visible key (static ints mixed with traced scalars).
  j_hi = num_k_blocks
  if causal:
    j_hi = jnp.minimum(num_k_blocks, q_hi // block_k + 1)
  j_lo = 0
  if window is not None:
    j_lo = jnp.maximum(q_lo - window + 1, 0) // block_k
    if not causal:
      j_hi = jnp.minimum(j_hi, (q_hi + window - 1) // block_k + 1)

  def body(j, carry):
    m, l, acc = carry
    k_lo = j * block_k
    ks = pl.ds(pl.multiple_of(k_lo, block_k), block_k)
    kn, kf, vb = kn_ref[ks, :], kf_ref[ks, :], v_ref[ks, :]
    r = ((q_lo + jax.lax.broadcasted_iota(jnp.int32, (block_q, block_k), 0))
         - (k_lo + jax.lax.broadcasted_iota(jnp.int32, (block_q, block_k), 1)))

    def mixed():
      s = jnp.where(r >= w, dot(qp, kf), dot(qn, kn))
      if not causal:
        s = jnp.where(r <= -w, dot(qf, kf), s)
      return s
    branches = [lambda: dot(qn, kn), lambda: dot(qp, kf), lambda: dot(qf, kf), mixed]
    r_min, r_max = q_lo - (k_lo + block_k - 1), q_hi - k_lo
    cat = jnp.where(r_min >= w, _PAST,
          jnp.where((r_min > -w) & (r_max < w), _NEAR,
          jnp.where(r_max <= -w, _FUT, _MIXED)))
    s = jax.lax.switch(cat, branches)

    mask = valid_ref[:, ks] > 0                                        # (1, block_k)
    if causal:
      mask = mask & (r >= 0)
    if window is not None:
      mask = mask & ((r < window) if causal else (jnp.abs(r) < window))
    s = jnp.where(mask, s, _NEG)
    m_new = jnp.maximum(m, s.max(axis=-1, keepdims=True))
    corr = jnp.exp(m - m_new)
    p = jnp.where(mask, jnp.exp(s - m_new), 0.0)
    l = l * corr + p.sum(axis=-1, keepdims=True)
    pv = jax.lax.dot_general(p.astype(vb.dtype), vb, (((1,), (0,)), ((), ())),
                             preferred_element_type=jnp.float32)
    return m_new, l, acc * corr + pv

  dv = v_ref.shape[-1]
  init = (jnp.full((block_q, 1), _NEG, jnp.float32), jnp.zeros((block_q, 1), jnp.float32),
          jnp.zeros((block_q, dv), jnp.float32))
  m, l, acc = jax.lax.fori_loop(j_lo, j_hi, body, init)
  o_ref[...] = (acc / jnp.where(l > 0, l, 1.0)).astype(o_ref.dtype)


def _forward(q_BLHD, k_BSHD, v_BSHD, q_pos_BL, k_pos_BS, k_valid_BS, length, *, config,
             block_q, block_k, interpret, platform):
  c = config
  B, L, H, D = q_BLHD.shape
  S, Dv = k_BSHD.shape[1], v_BSHD.shape[-1]
  q_near, q_past, q_fut, k_near, k_far = acfg.rotated_copies(
      q_BLHD, k_BSHD, q_pos_BL, k_pos_BS, c, length)

  bq, bk = min(block_q, _round_up(L, 8)), min(block_k, _round_up(S, 8))
  Lp, Sp = _round_up(L, bq), _round_up(S, bk)
  heads_first = lambda x, n: _pad(jnp.moveaxis(x, 2, 1).reshape((B * H,) + x.shape[1:2]
                                                                 + x.shape[3:]), 1, n)
  qs = [heads_first(t, Lp) for t in (q_near, q_past, q_fut)]
  ks = [heads_first(t, Sp) for t in (k_near, k_far, v_BSHD)]
  valid = jnp.ones((B, S), bool) if k_valid_BS is None else jnp.asarray(k_valid_BS, bool)
  valid = _pad(valid.astype(jnp.int32), 1, Sp)[:, None, :]              # (B, 1, Sp)

  # A ReRoPE window beyond every distance makes every tile "near" (plain RoPE / NoPE).
  w = int(c.rerope_window) if c.is_rerope else L + S + 1
  kernel = functools.partial(
      _kernel, block_q=bq, block_k=bk, num_k_blocks=Sp // bk, q_offset=S - L, w=w,
      window=c.window, causal=c.causal)
  q_spec = pl.BlockSpec((None, bq, D), lambda bh, i: (bh, i, 0))
  k_spec = lambda d: pl.BlockSpec((None, Sp, d), lambda bh, i: (bh, 0, 0))
  out = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((B * H, Lp, Dv), v_BSHD.dtype),
      grid=(B * H, Lp // bq),
      in_specs=[q_spec, q_spec, q_spec, k_spec(D), k_spec(D), k_spec(Dv),
                pl.BlockSpec((None, 1, Sp), lambda bh, i: (bh // H, 0, 0))],
      out_specs=pl.BlockSpec((None, bq, Dv), lambda bh, i: (bh, i, 0)),
      interpret=interpret,
      compiler_params=None if interpret else _compiler_params(platform),
      name="rerope_flash_fwd",
  )(*qs, *ks, valid)
  return jnp.moveaxis(out[:, :L].reshape(B, H, L, Dv), 1, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9, 10, 11))
def _attention(q, k, v, q_pos, k_pos, k_valid, length, config, block_q, block_k, interpret,
               platform):
  return _forward(q, k, v, q_pos, k_pos, k_valid, length, config=config, block_q=block_q,
                  block_k=block_k, interpret=interpret, platform=platform)


def _fwd(q, k, v, q_pos, k_pos, k_valid, length, config, block_q, block_k, interpret, platform):
  out = _forward(q, k, v, q_pos, k_pos, k_valid, length, config=config, block_q=block_q,
                 block_k=block_k, interpret=interpret, platform=platform)
  return out, (q, k, v, q_pos, k_pos, k_valid, length)


def _bwd(config, block_q, block_k, interpret, platform, res, g):
  """Backward through the XLA blockwise version (same function, so same gradients)."""
  del interpret, platform
  q, k, v, q_pos, k_pos, k_valid, length = res
  fn = lambda q_, k_, v_: rerope_blockwise.blockwise_attention(
      q_, k_, v_, q_positions_BL=q_pos, k_positions_BS=k_pos, config=config,
      k_valid_BS=k_valid, length=length, block_size=max(block_q, block_k))
  _, vjp = jax.vjp(fn, q, k, v)
  zeros = jax.tree.map(lambda x: None, (q_pos, k_pos, k_valid, length))
  return vjp(g) + zeros


_attention.defvjp(_fwd, _bwd)


def rerope_flash_attention(q_BLHD, k_BSHD, v_BSHD, *, config, q_positions_BL=None,
                           k_positions_BS=None, k_valid_BS=None, length=None,
                           block_q=128, block_k=128, interpret=False, platform=None):
  """ReRoPE / Leaky ReRoPE (also "rope", "none") flash attention in Pallas.

  q_BLHD (B, L, H, D) carries its logit scale; k_BSHD (B, S, H, D), v (B, S, H, Dv);
  positions default to arange (and must equal the token indices, see the
  module docstring). interpret=True runs the kernel with the Pallas
  interpreter (CPU tests). platform ("gpu" | "tpu", default jax.default_backend())
  picks the compiler parameters (Triton on GPU). Returns (B, L, H, Dv) in v's dtype; queries that
  see no key return zeros.
  """
  c = config
  if c.position not in POSITIONS:
    raise ValueError(f"the Pallas ReRoPE kernel supports positions {POSITIONS}, got {c.position!r}.")
  if c.lambda_first_tokens:
    raise ValueError("the Pallas ReRoPE kernel has no Lambda-mask (lambda_first_tokens).")
  B, L = q_BLHD.shape[:2]
  S = k_BSHD.shape[1]
  q_pos = (jnp.broadcast_to(jnp.arange(S - L, S, dtype=jnp.float32), (B, L))
           if q_positions_BL is None else jnp.asarray(q_positions_BL, jnp.float32))
  k_pos = (jnp.broadcast_to(jnp.arange(S, dtype=jnp.float32), (B, S))
           if k_positions_BS is None else jnp.asarray(k_positions_BS, jnp.float32))
  return _attention(q_BLHD, k_BSHD, v_BSHD, q_pos, k_pos, k_valid_BS, length, c,
                    int(block_q), int(block_k), bool(interpret), platform or jax.default_backend())
