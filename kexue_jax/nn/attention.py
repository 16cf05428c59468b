"""One attention entry point: every position method, mask, scaling and a KV cache.

`attend` is the pure function (q, k, v are the *un-rotated* projections; it
applies the position method itself, because ReRoPE needs the raw q and k);
`MultiHeadAttention` is the Flax module around it.

Logits, before the softmax (float32):

    a_ij = c_i * <q~_i, k~_j>  + bias_ij,    masked where mask_ij is False

  q~, k~   q, k after the position method (RoPE, xPos, 2D RoPE, RoPE-Tie, or
           the ReRoPE relative map f(i-j), kexue.fm/archives/9708),
           and after the key/query normalisation (`qk_norm`, 9859):
             "none": c = 1/sqrt(d);  "kna": k/|k|, c = 1 (no 1/sqrt d);
             "qna": q/|q|, c = 1;    "cosa": both normalised, c = lambda = s log n.
  c_i      also holds log-n scaling (8823 / 9706 eq. 14) and the YaRN
           temperature (0.1 ln k + 1)^2 (9948), folded into the query.
  bias     ALiBi: -m_h |i - j|.
  mask     causal, sliding window (|i-j| < w, 9431), Lambda-shape (window +
           first tokens, 9948), key padding, segment ids (packing).

Causal/window masks compare the token *positions* for the 1D methods
(dropped tokens keep their positions; cached decoding just works), and token
order for the 2D methods.
log n: n = query position + 1 (causal), or the number of valid keys (bidirectional).
"""
import functools
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kexue_jax.nn import attention_config as acfg
from kexue_jax.nn import fast_attention
from kexue_jax.nn import positions as pos_lib
from kexue_jax.nn import rerope_blockwise
# The options and the shared ReRoPE rotations live in the bottom module attention_config.py (re-exported).
from kexue_jax.nn.attention_config import AttentionConfig
from kexue_jax.nn.attention_config import IMPLS, KERNELS, LOGN, POSITIONS, QK_NORMS, REROPE_IMPLS, TWO_D
from kexue_jax.nn.attention_config import rerope_far_rotations

# ----------------------------------------------------------------------------
# Masks.

def make_mask(q_order_BL, k_order_BS, *, causal=True, window=None, first_tokens=0,
              k_valid_BS=None, q_segment_ids_BL=None, k_segment_ids_BS=None):
  """Boolean (B, 1, L, S) mask, True = attend. Orders are positions or indices."""
  rel = q_order_BL[:, :, None] - k_order_BS[:, None, :]
  mask = jnp.ones(rel.shape, bool)
  if causal:
    mask &= rel >= 0
  if window is not None:
    near = (rel < window) if causal else (jnp.abs(rel) < window)
    if first_tokens:
      near |= (k_order_BS < first_tokens)[:, None, :]
    mask &= near
  if k_valid_BS is not None:
    mask &= k_valid_BS[:, None, :].astype(bool)
  if q_segment_ids_BL is not None:
    mask &= q_segment_ids_BL[:, :, None] == k_segment_ids_BS[:, None, :]
  return mask[:, None]


# ----------------------------------------------------------------------------
# Scores.

def _einsum_scores(q_BLHD, k_BSHD):
  return jnp.einsum("blhd,bshd->bhls", q_BLHD, k_BSHD, preferred_element_type=jnp.float32)


def rerope_scores_two_matrix(q_BLHD, k_BSHD, q_pos_BL, k_pos_BS, c, length):
  """Parallel ReRoPE: standard RoPE scores inside |i-j| < w, clamped ones outside."""
  rope = functools.partial(pos_lib.apply_rope, **acfg.rope_kwargs(c, length))
  s_near = _einsum_scores(rope(q_BLHD, q_pos_BL), rope(k_BSHD, k_pos_BS))
  q_past, q_fut, k_far = rerope_far_rotations(q_BLHD, k_BSHD, q_pos_BL, k_pos_BS, c, length)
  rel = (q_pos_BL[:, :, None] - k_pos_BS[:, None, :])[:, None]
  w = c.rerope_window
  scores = jnp.where(rel >= w, _einsum_scores(q_past, k_far), s_near)
  if not c.causal:
    scores = jnp.where(rel <= -w, _einsum_scores(q_fut, k_far), scores)
  return scores


def rerope_scores_relative(q_BLHD, k_BSHD, q_pos_BL, k_pos_BS, c, length):
  """One score matrix: a_ij = q_i^T R^{-f(i-j)} k_j (the decoding form, 9708).

  Keys are rotated per query, so memory is O(B L S H D): meant for L = 1.
  """
  B, L, H, D = q_BLHD.shape
  S = k_BSHD.shape[1]
  rot = pos_lib.rotary_dims(D, c.rotary_fraction)
  inv_freq = pos_lib.rope_inv_freq(rot, base=c.rope_base, scaling=c.scaling, length=length)
  rel_BLS = pos_lib.rerope_relative_position(
      q_pos_BL[:, :, None] - k_pos_BS[:, None, :], c.rerope_window, acfg.leak(c))
  angles = (-rel_BLS[..., None] * inv_freq).reshape(B * L, S, rot // 2)
  k_rep = jnp.broadcast_to(k_BSHD[:, None], (B, L, S, H, D)).reshape(B * L, S, H, D)
  k_rot = pos_lib.rotate_by_angles(k_rep, angles, convention=c.rope_convention)
  return jnp.einsum("blhd,blshd->bhls", q_BLHD, k_rot.reshape(B, L, S, H, D),
                    preferred_element_type=jnp.float32)


def _l2norm(x):
  x32 = x.astype(jnp.float32)
  return (x32 * jax.lax.rsqrt(jnp.sum(x32 * x32, -1, keepdims=True) + 1e-12)).astype(x.dtype)


def query_scale(c: AttentionConfig, n_BL, head_dim):
  """Per-query logit multiplier c_i: 1/sqrt(d) or 1, log n, CosA lambda, YaRN."""
  if c.qk_norm == "cosa":
    n = n_BL if c.logn == "train" else jnp.full_like(n_BL, c.logn_base_length / 2.0)
    scale = c.cosa_scale * jnp.log(jnp.maximum(n, 1.0))
  else:
    scale = pos_lib.logn_factor(n_BL, mode=c.logn, base_length=c.logn_base_length)
    if c.qk_norm == "none":
      scale = scale / math.sqrt(head_dim)
  return scale * pos_lib.yarn_attention_factor(c.scaling)


def _default_positions(p, B, L, c):
  if p is None:
    if c.position in TWO_D:
      raise ValueError(f"position={c.position!r} needs explicit (B, L, 2) positions.")
    return jnp.broadcast_to(jnp.arange(L, dtype=jnp.float32), (B, L))
  p = jnp.asarray(p, jnp.float32)
  want = 3 if c.position in TWO_D else 2
  if p.ndim == want - 1:
    p = jnp.broadcast_to(p[None], (B,) + p.shape)
  if p.ndim != want or p.shape[:2] != (B, L) or (want == 3 and p.shape[-1] != 2):
    raise ValueError(f"positions for position={c.position!r} must have shape "
                     f"{(B, L) if want == 2 else (B, L, 2)}, got {p.shape}.")
  return p


def attend(q_BLHD, k_BSHD, v_BSHD, *, config: AttentionConfig = AttentionConfig(),
           q_positions_BL=None, k_positions_BS=None, k_valid_BS=None,
           q_segment_ids_BL=None, k_segment_ids_BS=None, mask_BLS=None,
           q_order_BL=None, k_order_BS=None, dropout_rng=None, dropout_rate=0.0):
  """Attention with any position method on un-rotated q, k. Returns (B, L, H, D).

  q_positions_BL / k_positions_BS: positions (default arange); (B, L, 2) for
    "rope2d" ((y, x)) and "rope_tie" ((x, y)).
  k_valid_BS: key padding (True = real token). mask_BLS: extra boolean mask.
  q_order_BL / k_order_BS: sequence order for causal/window masks (default:
    the positions for 1D methods, token index for 2D methods).
  dropout_rng + dropout_rate > 0: dropout on the attention probabilities.
  Queries that see no key at all return zeros.
  """
  c = config
  B, L, H, D = q_BLHD.shape
  S = k_BSHD.shape[1]
  if k_BSHD.shape != (B, S, H, D) or v_BSHD.shape[:3] != (B, S, H):
    raise ValueError(f"q {q_BLHD.shape}, k {k_BSHD.shape}, v {v_BSHD.shape} do not match "
                     "(B, L, H, D), (B, S, H, D), (B, S, H, Dv).")
  if c.position in ("rope", "rerope", "leaky_rerope", "xpos", "rope_tie"):
    pos_lib.rotary_dims(D, c.rotary_fraction)  # validates even head_dim
  explicit_order = q_order_BL is not None or k_order_BS is not None
  q_pos = _default_positions(q_positions_BL, B, L, c)
  k_pos = _default_positions(k_positions_BS, B, S, c)
  if q_order_BL is None:
    q_order_BL = (jnp.broadcast_to(jnp.arange(S - L, S, dtype=jnp.float32), (B, L))
                  if c.position in TWO_D else q_pos)
  if k_order_BS is None:
    k_order_BS = (jnp.broadcast_to(jnp.arange(S, dtype=jnp.float32), (B, S))
                  if c.position in TWO_D else k_pos)
  q_order_BL = jnp.asarray(q_order_BL, jnp.float32)
  k_order_BS = jnp.asarray(k_order_BS, jnp.float32)

  mask = make_mask(q_order_BL, k_order_BS, causal=c.causal, window=c.window,
                   first_tokens=c.lambda_first_tokens, k_valid_BS=k_valid_BS,
                   q_segment_ids_BL=q_segment_ids_BL, k_segment_ids_BS=k_segment_ids_BS)
  if mask_BLS is not None:
    mask &= mask_BLS[:, None].astype(bool)

  # Per-query multiplier (log n, 1/sqrt d, CosA lambda, YaRN), folded into q.
  if c.causal:
    n_BL = q_order_BL + 1.0
  else:
    n_BL = jnp.sum(mask[:, 0], axis=-1).astype(jnp.float32)
  if c.qk_norm in ("qna", "cosa"):
    q_BLHD = _l2norm(q_BLHD)
  if c.qk_norm in ("kna", "cosa"):
    k_BSHD = _l2norm(k_BSHD)
  scale_BL = query_scale(c, n_BL, D)
  q_BLHD = (q_BLHD.astype(jnp.float32) * scale_BL[:, :, None, None]).astype(q_BLHD.dtype)

  # Current length for dynamic NTK: max(#keys, max key position + 1).
  length = None
  if c.scaling is not None and c.scaling.kind in pos_lib.LENGTH_DEPENDENT:
    length = jnp.maximum(float(S), jnp.max(k_pos) + 1.0)

  if c.kernel != "xla":  # fast kernels (TPU splash, cuDNN, Pallas ReRoPE); None = not expressible
    out = fast_attention.fast_attend(
        q_BLHD, k_BSHD, v_BSHD, config=c, q_positions_BL=q_pos, k_positions_BS=k_pos,
        k_valid_BS=k_valid_BS, q_segment_ids_BL=q_segment_ids_BL,
        k_segment_ids_BS=k_segment_ids_BS, length=length, extra=fast_attention.extras(
            mask_BLS, dropout_rng, dropout_rate, explicit_order))
    if out is not None:
      return out

  if c.impl == "blockwise" or (c.is_rerope and c.rerope_impl == "blockwise"):
    dropout = dropout_rng is not None and dropout_rate > 0.0
    if (mask_BLS is not None or q_segment_ids_BL is not None or dropout or explicit_order
        or c.position not in rerope_blockwise.BLOCKWISE_POSITIONS):
      raise ValueError(
          "blockwise attention supports positions 'rope', 'none', 'rerope', 'leaky_rerope' "
          "with causal/bidirectional, key padding, window and Lambda masks only (no extra "
          "mask, orders, segment ids or dropout); use impl='dense' / rerope_impl='two_matrix'.")
    return rerope_blockwise.blockwise_attention(
        q_BLHD, k_BSHD, v_BSHD, q_positions_BL=q_pos, k_positions_BS=k_pos,
        k_valid_BS=k_valid_BS, config=c, length=length)

  scores = _scores(q_BLHD, k_BSHD, q_pos, k_pos, c, length)
  if c.position == "alibi":
    slopes_H = jnp.asarray(pos_lib.alibi_slopes(H))
    dist = jnp.abs(q_pos[:, :, None] - k_pos[:, None, :])[:, None]
    scores = scores - slopes_H[None, :, None, None] * dist

  scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1)
  probs = jnp.where(jnp.any(mask, axis=-1, keepdims=True), probs, 0.0)
  if dropout_rng is not None and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  out = jnp.einsum("bhls,bshd->blhd", probs.astype(v_BSHD.dtype), v_BSHD,
                   preferred_element_type=jnp.float32)
  return out.astype(v_BSHD.dtype)


def _scores(q, k, q_pos, k_pos, c, length):
  """Raw (B, H, L, S) float32 scores for the position method (no bias/mask)."""
  if c.position in ("none", "alibi"):
    return _einsum_scores(q, k)
  if c.position == "rope":
    rope = functools.partial(pos_lib.apply_rope, **acfg.rope_kwargs(c, length))
    return _einsum_scores(rope(q, q_pos), rope(k, k_pos))
  if c.position == "xpos":
    kw = dict(base=c.rope_base, scale_base=c.xpos_scale_base, convention=c.rope_convention)
    return _einsum_scores(pos_lib.apply_xpos(q, q_pos, **kw),
                          pos_lib.apply_xpos(k, k_pos, inverse=True, **kw))
  if c.position == "rope2d":
    r2 = functools.partial(pos_lib.apply_rope_2d, base=c.rope_base, convention=c.rope_convention)
    return _einsum_scores(r2(q, q_pos[..., 0], q_pos[..., 1]), r2(k, k_pos[..., 0], k_pos[..., 1]))
  if c.position == "rope_tie":
    rt = functools.partial(pos_lib.apply_rope_tie, base=c.rope_base,
                           rotary_fraction=c.rotary_fraction, convention=c.rope_convention)
    return _einsum_scores(rt(q, q_pos), rt(k, k_pos))
  # ReRoPE / Leaky ReRoPE.
  impl = c.rerope_impl
  if impl == "auto":
    impl = "relative" if q.shape[1] == 1 else "two_matrix"
  if impl == "relative":
    return rerope_scores_relative(q, k, q_pos, k_pos, c, length)
  return rerope_scores_two_matrix(q, k, q_pos, k_pos, c, length)


# ----------------------------------------------------------------------------
# Module.

class Projection(nn.Module):
  """``y = einsum(x, W) (+ b)`` with a multi-axis kernel created directly in its final shape.

  Hand-written instead of ``nn.DenseGeneral`` because DenseGeneral initialises a
  flattened 2-D kernel and reshapes it; under a mesh + logical-rules context (the
  training loop) flax unboxes that flat kernel against the 3 logical names and
  fails with a rank mismatch. Truncated normal with true std gain/sqrt(fan_in)
  over the contracted axes (gain 1 = LeCun normal, as DenseGeneral would give;
  layers.kernel_init's rule for 2-D kernels).
  """
  shape_in: tuple[int, ...]     # the contracted (input) dims of the kernel
  shape_out: tuple[int, ...]
  names: tuple[str, ...]        # logical names of all kernel axes
  use_bias: bool = False
  gain: float = 1.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    n_in, n_out = len(self.shape_in), len(self.shape_out)
    init = nn.initializers.variance_scaling(self.gain ** 2, "fan_in", "truncated_normal",
                                            in_axis=tuple(range(n_in)),
                                            out_axis=tuple(range(n_in, n_in + n_out)))
    kernel = self.param("kernel", nn.with_logical_partitioning(init, self.names),
                        self.shape_in + self.shape_out, self.param_dtype)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=self.dtype)
    y = jnp.tensordot(x, kernel, axes=(tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in))))
    if self.use_bias:
      bias_init = nn.with_logical_partitioning(nn.initializers.zeros_init(), self.names[n_in:])
      bias = self.param("bias", bias_init, self.shape_out, self.param_dtype)
      y = y + jnp.asarray(bias, self.dtype)
    return y


class MultiHeadAttention(nn.Module):
  """Multi-head self-attention over `attend`, with an optional KV cache.

  Kernels: query/key/value ('embed', 'heads', 'kv'), out ('heads', 'kv', 'embed').
  decode=True: flax 'cache' collection holding the *un-rotated* keys, the
  values, their positions and validity, and the write index. Initialise with
  a full-length input (the cache length); then call with one (or a few)
  tokens per step. Keys are stored un-rotated so that ReRoPE (which rotates
  every key relative to the current query), dynamic NTK (frequencies depend
  on the length) and every other method share one cache layout. The price is
  re-rotating the cached keys at every step, O(S H D) elementwise work next
  to the O(S H D) attention itself.
  """
  num_heads: int
  head_dim: int
  config: AttentionConfig = AttentionConfig()
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  use_bias: bool = False
  decode: bool = False
  gain: float = 1.0  # init std gain/sqrt(fan_in) of the four projections (transformer.py's depth gain)
  # Grouped-query attention (Ainslie et al., arXiv 2305.13245; LLaMA-2-70B, Mistral, Qwen2):
  # num_kv_heads key/value heads, query head h reads kv head h // (num_heads / num_kv_heads).
  # None = num_heads (ordinary MHA). The KV cache stores the num_kv_heads heads.
  num_kv_heads: int | None = None
  qkv_bias: bool | None = None  # bias on query/key/value only (Qwen2); None = use_bias

  @nn.compact
  def __call__(self, x_BLD, *, positions_BL=None, padding_mask_BL=None, segment_ids_BL=None,
               deterministic=True):
    """positions default arange(L) (+ cache index when decoding);
    padding_mask_BL True = real token; segment_ids_BL restricts attention to
    equal ids (packing; not with decode)."""
    B, L, Dm = x_BLD.shape
    H, Dh = self.num_heads, self.head_dim
    KV = H if self.num_kv_heads is None else self.num_kv_heads
    if KV < 1 or H % KV:
      raise ValueError(f"num_kv_heads={KV} must divide num_heads={H}.")
    qkv_bias = self.use_bias if self.qkv_bias is None else self.qkv_bias
    dense = functools.partial(
        Projection, shape_in=(Dm,), names=("embed", "heads", "kv"), use_bias=qkv_bias,
        gain=self.gain, dtype=self.dtype, param_dtype=self.param_dtype)
    names = ("batch", "length", "heads", "kv")
    q = nn.with_logical_constraint(dense(shape_out=(H, Dh), name="query")(x_BLD), names)
    # GQA kv kernels name their head axis "kv_heads" (unsharded unless a rule maps it).
    kv_dense = dense if KV == H else functools.partial(dense, names=("embed", "kv_heads", "kv"))
    k = kv_dense(shape_out=(KV, Dh), name="key")(x_BLD)
    v = kv_dense(shape_out=(KV, Dh), name="value")(x_BLD)
    if KV == H:
      k = nn.with_logical_constraint(k, names)
      v = nn.with_logical_constraint(v, names)

    c = self.config
    two_d = c.position in TWO_D
    if positions_BL is None and two_d:
      raise ValueError(f"position={c.position!r} needs explicit positions_BL of shape (B, L, 2).")
    k_valid = None if padding_mask_BL is None else jnp.asarray(padding_mask_BL, bool)
    kwargs = {}
    if self.decode:
      if segment_ids_BL is not None:
        raise ValueError("segment_ids_BL is not supported with decode=True.")
      k, v, k_valid, kwargs = self._cache(k, v, positions_BL, k_valid)
    else:
      if positions_BL is not None:
        kwargs = dict(q_positions_BL=positions_BL, k_positions_BS=positions_BL)
      if segment_ids_BL is not None:
        kwargs.update(q_segment_ids_BL=segment_ids_BL, k_segment_ids_BS=segment_ids_BL)
    if KV != H:  # GQA: repeat each kv head for its H / KV query heads (after the cache)
      k = nn.with_logical_constraint(jnp.repeat(k, H // KV, axis=2), names)
      v = nn.with_logical_constraint(jnp.repeat(v, H // KV, axis=2), names)

    rng = None
    if not deterministic and self.dropout_rate > 0.0:
      rng = self.make_rng("dropout")
    out = attend(q, k, v, config=c, k_valid_BS=k_valid, dropout_rng=rng,
                 dropout_rate=self.dropout_rate, **kwargs)
    out = nn.with_logical_constraint(out, names)
    return Projection(shape_in=(H, Dh), shape_out=(Dm,), names=("heads", "kv", "embed"),
                      use_bias=self.use_bias, gain=self.gain, dtype=self.dtype,
                      param_dtype=self.param_dtype, name="out")(out)

  def _cache(self, k_BLHD, v_BLHD, positions, k_valid_BL):
    """Write this chunk into the cache; return all cached keys and attend kwargs."""
    B, L, H, D = k_BLHD.shape
    c = self.config
    pos_tail = (2,) if c.position in TWO_D else ()
    initialized = self.has_variable("cache", "cached_key")
    ck = self.variable("cache", "cached_key", jnp.zeros, k_BLHD.shape, k_BLHD.dtype)
    cv = self.variable("cache", "cached_value", jnp.zeros, v_BLHD.shape, v_BLHD.dtype)
    cp = self.variable("cache", "cached_positions", jnp.zeros, (B, L) + pos_tail, jnp.float32)
    cm = self.variable("cache", "cached_valid", jnp.zeros, (B, L), bool)
    ci = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    S = ck.value.shape[1]
    idx = ci.value
    if positions is None:
      positions = jnp.broadcast_to((idx + jnp.arange(L)).astype(jnp.float32), (B, L))
    positions = jnp.broadcast_to(jnp.asarray(positions, jnp.float32), (B, L) + pos_tail)
    valid = jnp.ones((B, L), bool) if k_valid_BL is None else k_valid_BL
    order_BL = jnp.broadcast_to((idx + jnp.arange(L)).astype(jnp.float32), (B, L))
    if not initialized:  # init call: no cache yet, behave like prefill on the full input
      kw = dict(q_positions_BL=positions, k_positions_BS=positions)
      if pos_tail:
        kw.update(q_order_BL=order_BL, k_order_BS=order_BL)
      return k_BLHD, v_BLHD, valid, kw
    if L > S:
      raise ValueError(f"decode chunk of {L} tokens exceeds the cache length {S}.")
    upd = lambda a, x: jax.lax.dynamic_update_slice(a, x, (0, idx) + (0,) * (a.ndim - 2))
    ck.value = upd(ck.value, k_BLHD)
    cv.value = upd(cv.value, v_BLHD)
    cp.value = upd(cp.value, positions)
    cm.value = upd(cm.value, valid)
    ci.value = idx + L
    # Slots not yet written are invalid; order for masks = write index.
    k_order = jnp.broadcast_to(jnp.arange(S, dtype=jnp.float32), (B, S))
    kw = dict(q_positions_BL=positions, k_positions_BS=cp.value)
    if pos_tail:
      kw.update(q_order_BL=order_BL, k_order_BS=k_order)
    k_valid = cm.value & (k_order < (idx + L))
    return ck.value, cv.value, k_valid, kw
