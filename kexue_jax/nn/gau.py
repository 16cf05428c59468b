"""Gated Attention Unit (GAU), as in Su's GAU-α (kexue.fm/archives/8934, 9052).

With x_LD the layer input, e = expansion_dim, s = key_dim (single head):

    U = φ(x W_u),  V = φ(x W_v)          W_u, W_v ∈ R^{D×e}       φ = swish
    Z = φ(x W_z)                         W_z ∈ R^{D×s}            (shared by Q and K)
    Q = Z ⊙ γ_q (+ β_q),  K = Z ⊙ γ_k (+ β_k)    per-dim scale (offset only if use_bias)
    a_ij = <R_i Q_i, R_j K_j> / sqrt(s)   R = the attention config's position method (RoPE ...)
    O = (U ⊙ A V) W_o                    W_o ∈ R^{e×D}

The normalisation A of the scores a (`normalization`), masked keys excluded:

  "softmax_plus" (GAU-α, bert4keras `attention_normalize`, kexue.fm/archives/8823):
        A_i = softmax_j( a_ij · log(max(n_i, 16)) / log(512) )
  "softmax":      A_i = softmax_j(a_ij), with whatever `logn` the AttentionConfig asks for
  "squared_relu" (FLASH, Su's 1/(ns) form, kexue.fm/archives/8934):
        A_ij = relu(a_ij)^2 / n_i

n_i is the number of keys query i may see: position + 1 for causal attention (so a
causal LM never sees the sequence length and decoding equals the full pass) and the
number of valid (non-padded) keys for bidirectional attention (bert4keras uses the
valid length in both cases). `softmax_plus_base` (512) is the length at which
softmax_plus equals plain softmax. Both softmax paths reuse `attention.attend`, so
every position method of AttentionConfig (RoPE scalings, windows, ReRoPE, log n ...)
works in a GAU; "squared_relu" supports position "rope" / "none".

decode=True keeps a KV cache ('cache' collection: un-rotated K, V, positions, validity,
index) exactly like `MultiHeadAttention`.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kexue_jax.nn import layers
from kexue_jax.nn import positions as pos_lib
from kexue_jax.nn.attention import AttentionConfig, attend, make_mask

Dtype = Any

GAU_NORMALIZATIONS = ("softmax_plus", "softmax", "squared_relu")


def keys_seen(positions_BL, k_valid_BS, causal: bool, num_keys: int):
  """n_i: position + 1 (causal) or the number of valid keys (bidirectional), float32."""
  if causal:
    return jnp.asarray(positions_BL, jnp.float32) + 1.0
  B, L = positions_BL.shape
  if k_valid_BS is None:
    return jnp.full((B, L), float(num_keys), jnp.float32)
  n_B = jnp.sum(k_valid_BS.astype(jnp.float32), axis=-1)
  return jnp.broadcast_to(n_B[:, None], (B, L))


def squared_relu_attention(q_BLHD, k_BSHD, v_BSHD, *, config, q_pos_BL, k_pos_BS,
                           k_valid_BS, n_BL, dropout_rng=None, dropout_rate=0.0):
  """A = relu(<R q, R k>/sqrt(s))^2 / n, masked keys get 0; returns A V."""
  c = config
  if c.position not in ("rope", "none"):
    raise ValueError(f"GAU squared_relu supports position 'rope' or 'none', got {c.position!r}")
  if c.position == "rope":
    kw = dict(base=c.rope_base, rotary_fraction=c.rotary_fraction,
              convention=c.rope_convention, scaling=c.scaling)
    q_BLHD = pos_lib.apply_rope(q_BLHD, q_pos_BL, **kw)
    k_BSHD = pos_lib.apply_rope(k_BSHD, k_pos_BS, **kw)
  s = q_BLHD.shape[-1]
  a = jnp.einsum("blhd,bshd->bhls", q_BLHD, k_BSHD,
                 preferred_element_type=jnp.float32) / math.sqrt(s)
  mask = make_mask(q_pos_BL, k_pos_BS, causal=c.causal, window=c.window,
                   first_tokens=c.lambda_first_tokens, k_valid_BS=k_valid_BS)
  probs = jnp.where(mask, jnp.square(jax.nn.relu(a)), 0.0) / n_BL[:, None, :, None]
  if dropout_rng is not None and dropout_rate > 0.0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
    probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
  out = jnp.einsum("bhls,bshd->blhd", probs.astype(v_BSHD.dtype), v_BSHD,
                   preferred_element_type=jnp.float32)
  return out.astype(v_BSHD.dtype)


class GatedAttentionUnit(nn.Module):
  """Single-head GAU: x_BLD -> y_BLD (see module docstring).

  Attributes:
    expansion_dim: e (GAU-α: 2 * D). key_dim: s (GAU-α: 128).
    config: AttentionConfig (position method, causal, window, ...).
    normalization: one of GAU_NORMALIZATIONS.
  Kernels: wu, wv ('embed', 'mlp'); wz ('embed', 'kv'); wo ('mlp', 'embed');
  q/k scale and offset ('kv',).
  """
  expansion_dim: int
  key_dim: int = 128
  config: AttentionConfig = AttentionConfig()
  normalization: str = "softmax_plus"
  softmax_plus_base: int = 512
  activation: str = "swish"
  use_bias: bool = False
  dropout_rate: float = 0.0
  gain: float = 1.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  decode: bool = False

  @nn.compact
  def __call__(self, x_BLD, *, positions_BL=None, padding_mask_BL=None, deterministic=True):
    if self.normalization not in GAU_NORMALIZATIONS:
      raise ValueError(f"unknown GAU normalization {self.normalization!r}; "
                       f"expected one of {GAU_NORMALIZATIONS}")
    c = self.config
    if c.position in ("rope2d", "rope_tie"):
      raise ValueError(f"GAU supports 1D position methods, got {c.position!r}")
    if self.normalization == "softmax_plus" and c.logn != "none":
      raise ValueError("normalization='softmax_plus' already applies log n; "
                       "use normalization='softmax' with AttentionConfig.logn instead")
    B, L, D = x_BLD.shape
    act = layers.get_activation(self.activation)
    kw = dict(gain=self.gain, use_bias=self.use_bias, dtype=self.dtype,
              param_dtype=self.param_dtype)
    u_BLE = act(layers.dense(self.expansion_dim, ("embed", "mlp"), name="wu", **kw)(x_BLD))
    v_BLE = act(layers.dense(self.expansion_dim, ("embed", "mlp"), name="wv", **kw)(x_BLD))
    z_BLS = act(layers.dense(self.key_dim, ("embed", "kv"), name="wz", **kw)(x_BLD))
    u_BLE = nn.with_logical_constraint(u_BLE, ("batch", "length", "mlp"))
    v_BLE = nn.with_logical_constraint(v_BLE, ("batch", "length", "mlp"))

    def vec(name, init):
      return self.param(name, nn.with_logical_partitioning(init, ("kv",)), (self.key_dim,),
                        self.param_dtype).astype(self.dtype)
    q_BLS = z_BLS * vec("q_scale", nn.initializers.ones)
    k_BLS = z_BLS * vec("k_scale", nn.initializers.ones)
    if self.use_bias:
      q_BLS = q_BLS + vec("q_offset", nn.initializers.zeros)
      k_BLS = k_BLS + vec("k_offset", nn.initializers.zeros)

    # Single head: (B, L, 1, s) and (B, L, 1, e).
    q, k, v = q_BLS[:, :, None], k_BLS[:, :, None], v_BLE[:, :, None]
    k_valid = None if padding_mask_BL is None else jnp.asarray(padding_mask_BL, bool)
    if self.decode:
      k, v, k_valid, q_pos, k_pos = self._cache(k, v, positions_BL, k_valid)
    else:
      q_pos = (jnp.broadcast_to(jnp.arange(L, dtype=jnp.float32), (B, L))
               if positions_BL is None else
               jnp.broadcast_to(jnp.asarray(positions_BL, jnp.float32), (B, L)))
      k_pos = q_pos
    n_BL = keys_seen(q_pos, k_valid, c.causal, k.shape[1])

    rng = None
    if not deterministic and self.dropout_rate > 0.0:
      rng = self.make_rng("dropout")
    if self.normalization == "squared_relu":
      o = squared_relu_attention(q, k, v, config=c, q_pos_BL=q_pos, k_pos_BS=k_pos,
                                 k_valid_BS=k_valid, n_BL=n_BL, dropout_rng=rng,
                                 dropout_rate=self.dropout_rate)
    else:
      if self.normalization == "softmax_plus":
        scale_BL = jnp.log(jnp.maximum(n_BL, 16.0)) / math.log(self.softmax_plus_base)
        q = (q.astype(jnp.float32) * scale_BL[:, :, None, None]).astype(q.dtype)
      o = attend(q, k, v, config=c, q_positions_BL=q_pos, k_positions_BS=k_pos,
                 k_valid_BS=k_valid, dropout_rng=rng, dropout_rate=self.dropout_rate)
    o_BLE = u_BLE * o[:, :, 0].astype(self.dtype)
    return layers.dense(D, ("mlp", "embed"), name="wo", **kw)(o_BLE)

  def _cache(self, k_BL1S, v_BL1E, positions, k_valid_BL):
    """Append this chunk to the cache; return (keys, values, valid, q_pos, k_pos)."""
    B, L = k_BL1S.shape[:2]
    initialized = self.has_variable("cache", "cached_key")
    ck = self.variable("cache", "cached_key", jnp.zeros, k_BL1S.shape, k_BL1S.dtype)
    cv = self.variable("cache", "cached_value", jnp.zeros, v_BL1E.shape, v_BL1E.dtype)
    cp = self.variable("cache", "cached_positions", jnp.zeros, (B, L), jnp.float32)
    cm = self.variable("cache", "cached_valid", jnp.zeros, (B, L), bool)
    ci = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    idx = ci.value
    if positions is None:
      positions = idx + jnp.arange(L)
    positions = jnp.broadcast_to(jnp.asarray(positions, jnp.float32), (B, L))
    valid = jnp.ones((B, L), bool) if k_valid_BL is None else k_valid_BL
    if not initialized:  # init: behave like a full forward pass
      return k_BL1S, v_BL1E, valid, positions, positions
    S = ck.value.shape[1]
    if L > S:
      raise ValueError(f"decode chunk of {L} tokens exceeds the cache length {S}.")
    upd = lambda a, x: jax.lax.dynamic_update_slice(a, x, (0, idx) + (0,) * (a.ndim - 2))
    ck.value = upd(ck.value, k_BL1S)
    cv.value = upd(cv.value, v_BL1E)
    cp.value = upd(cp.value, positions)
    cm.value = upd(cm.value, valid)
    ci.value = idx + L
    written = jnp.arange(S)[None, :] < (idx + L)
    return ck.value, cv.value, cm.value & written, positions, cp.value
