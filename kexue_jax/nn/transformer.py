"""Transformer decoder LM and bidirectional encoder with per-layer attention choice.

One residual block, with sublayer F (attention, FFN or one GAU) and norm N:

    pre-norm:   x <- x + Dropout(F(N(x)))          (final N before the output head)
    post-norm:  x <- N(x + Dropout(F(x)))          (N also right after the embedding,
                                                    as RoFormerV2 / GAU-α do)

block="mha":  F = MultiHeadAttention, then F = Mlp (two sublayers per layer).
block="gau":  F = GatedAttentionUnit (one sublayer per layer; Su's length
              extrapolation studies use 24 post-norm single-head GAU layers,
              kexue.fm/archives/9603, 9052).

Attention is chosen per layer: `attention` is one `AttentionConfig` (shared)
or a tuple with one config per layer (e.g. from `hwfa_attention`).

Output logits are float32: tied (x E^T with the input embedding E) or untied
(a separate [embed, vocab] Dense).

Initialisation (layers.py; https://kexue.fm/archives/8620, 8978, GAU-α 9052): truncated normal with true std gain/sqrt(fan_in) for the MLP and GAU matrices
and gain/sqrt(embed_dim) for the embedding table, gain = num_layers^(-1/init_order).
Default init_order=None (gain 1, i.e. LeCun); GAU-α uses init_order=3 over its GAU
layers, RoFormerV2 2; the MHA projections (attention.Projection) get the same gain.
Norm scales start at 1, biases at 0. The untied head uses gain 1.
"""
import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from kexue_jax.nn import layers
from kexue_jax.nn.attention import AttentionConfig, MultiHeadAttention
from kexue_jax.nn.gau import GatedAttentionUnit

Dtype = Any

NORM_PLACEMENTS = ("pre", "post")
BLOCKS = ("mha", "gau")


def per_layer_configs(attention, num_layers: int) -> tuple[AttentionConfig, ...]:
  """One AttentionConfig -> repeated; a sequence -> checked to have num_layers entries."""
  if isinstance(attention, AttentionConfig):
    return (attention,) * num_layers
  attention = tuple(attention)
  if len(attention) != num_layers:
    raise ValueError(f"got {len(attention)} per-layer attention configs for "
                     f"num_layers={num_layers}; pass one config or exactly one per layer")
  for a in attention:
    if not isinstance(a, AttentionConfig):
      raise ValueError(f"per-layer attention entries must be AttentionConfig, got {type(a)}")
  return attention


class Block(nn.Module):
  """One residual layer (see module docstring). Called positionally (for nn.remat)."""
  num_heads: int
  head_dim: int
  mlp_dim: int
  attention: AttentionConfig
  norm: str = "pre"
  block: str = "mha"
  norm_type: str = "layernorm"
  mlp_activation: str = "gelu"
  mlp_gated: bool = False
  gau_normalization: str = "softmax_plus"
  gau_activation: str = "swish"
  use_bias: bool = False
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  gain: float = 1.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  decode: bool = False
  num_kv_heads: int | None = None   # GQA (attention.MultiHeadAttention); None = num_heads
  qkv_bias: bool | None = None      # bias on q/k/v only (Qwen2); None = use_bias
  norm_epsilon: float = 1e-6

  def _norm(self, name):
    return layers.make_norm(self.norm_type, epsilon=self.norm_epsilon, dtype=self.dtype,
                            param_dtype=self.param_dtype, module_name=name)

  def _sublayer(self, f, name, x_BLD, deterministic):
    drop = nn.Dropout(self.dropout_rate)
    if self.norm == "pre":
      return x_BLD + drop(f(self._norm(name)(x_BLD)), deterministic=deterministic)
    return self._norm(name)(x_BLD + drop(f(x_BLD), deterministic=deterministic))

  @nn.compact
  def __call__(self, x_BLD, positions_BL, padding_mask_BL, deterministic):
    if self.norm not in NORM_PLACEMENTS:
      raise ValueError(f"unknown norm placement {self.norm!r}; expected one of {NORM_PLACEMENTS}")
    if self.block == "mha":
      attn = MultiHeadAttention(
          num_heads=self.num_heads, head_dim=self.head_dim, config=self.attention,
          dropout_rate=self.attention_dropout_rate, dtype=self.dtype,
          param_dtype=self.param_dtype, use_bias=self.use_bias, decode=self.decode,
          gain=self.gain, num_kv_heads=self.num_kv_heads, qkv_bias=self.qkv_bias, name="attn")
      x_BLD = self._sublayer(
          lambda h: attn(h, positions_BL=positions_BL, padding_mask_BL=padding_mask_BL,
                         deterministic=deterministic), "norm_attn", x_BLD, deterministic)
      mlp = layers.Mlp(self.mlp_dim, activation=self.mlp_activation, gated=self.mlp_gated,
                       use_bias=self.use_bias, gain=self.gain, dtype=self.dtype,
                       param_dtype=self.param_dtype, name="mlp")
      x_BLD = self._sublayer(lambda h: mlp(h, deterministic), "norm_mlp", x_BLD, deterministic)
    elif self.block == "gau":
      gau = GatedAttentionUnit(
          expansion_dim=self.mlp_dim, key_dim=self.head_dim, config=self.attention,
          normalization=self.gau_normalization, activation=self.gau_activation,
          use_bias=self.use_bias, dropout_rate=self.attention_dropout_rate, gain=self.gain,
          dtype=self.dtype, param_dtype=self.param_dtype, decode=self.decode, name="gau")
      x_BLD = self._sublayer(
          lambda h: gau(h, positions_BL=positions_BL, padding_mask_BL=padding_mask_BL,
                        deterministic=deterministic), "norm_gau", x_BLD, deterministic)
    else:
      raise ValueError(f"unknown block {self.block!r}; expected one of {BLOCKS}")
    return nn.with_logical_constraint(x_BLD, ("batch", "length", "embed"))


class _Stack(nn.Module):
  """Shared body of TransformerLM / TransformerEncoder: embed -> blocks -> final norm."""
  vocab_size: int
  num_layers: int
  embed_dim: int
  num_heads: int
  head_dim: int
  mlp_dim: int
  dropout_rate: float = 0.0
  attention: Any = AttentionConfig()
  norm: str = "pre"
  block: str = "mha"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  remat: bool = False
  decode: bool = False
  # Added fields.
  norm_type: str = "layernorm"
  mlp_activation: str = "gelu"
  mlp_gated: bool = False
  gau_normalization: str = "softmax_plus"
  gau_activation: str = "swish"
  use_bias: bool = False
  attention_dropout_rate: float = 0.0
  tie_embedding: bool = True
  embed_norm: bool | None = None   # None: True for post-norm (RoFormerV2 / GAU-α), else False
  init_order: float | None = None
  # Pretrained LLaMA-family options (kexue_jax/hf): defaults leave every model unchanged.
  num_kv_heads: int | None = None   # grouped-query attention; None = num_heads
  qkv_bias: bool | None = None      # bias on q/k/v only (Qwen2); None = use_bias
  norm_epsilon: float = 1e-6        # epsilon of every norm (LLaMA 1e-5 / 1e-6)

  causal: ClassVar[bool] = True      # not a field: fixed by the subclass

  def _configs(self):
    cfgs = per_layer_configs(self.attention, self.num_layers)
    return tuple(dataclasses.replace(c, causal=self.causal) for c in cfgs)

  def _check(self):
    if self.norm not in NORM_PLACEMENTS:
      raise ValueError(f"unknown norm placement {self.norm!r}; expected one of {NORM_PLACEMENTS}")
    if self.block not in BLOCKS:
      raise ValueError(f"unknown block {self.block!r}; expected one of {BLOCKS}")
    if self.norm_type not in layers.NORMS:
      raise ValueError(f"unknown norm_type {self.norm_type!r}; expected one of {layers.NORMS}")

  def setup(self):
    self._check()
    gain = layers.depth_gain(self.num_layers, self.init_order)
    self.embed = layers.Embed(self.vocab_size, self.embed_dim, gain=gain, dtype=self.dtype,
                              param_dtype=self.param_dtype)
    block_cls = Block
    if self.remat:
      # args: (self, x, positions, padding_mask, deterministic) -> deterministic is static.
      block_cls = nn.remat(Block, static_argnums=(4,))
    self.blocks = [
        block_cls(num_heads=self.num_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim,
                  attention=cfg, norm=self.norm, block=self.block, norm_type=self.norm_type,
                  mlp_activation=self.mlp_activation, mlp_gated=self.mlp_gated,
                  gau_normalization=self.gau_normalization, gau_activation=self.gau_activation,
                  use_bias=self.use_bias, dropout_rate=self.dropout_rate,
                  attention_dropout_rate=self.attention_dropout_rate, gain=gain,
                  dtype=self.dtype, param_dtype=self.param_dtype, decode=self.decode,
                  num_kv_heads=self.num_kv_heads, qkv_bias=self.qkv_bias,
                  norm_epsilon=self.norm_epsilon, name=f"block{i}")
        for i, cfg in enumerate(self._configs())]
    use_embed_norm = self.embed_norm if self.embed_norm is not None else self.norm == "post"
    mk = lambda name: layers.make_norm(self.norm_type, epsilon=self.norm_epsilon, dtype=self.dtype,
                                       param_dtype=self.param_dtype, module_name=name)
    self.embed_norm_layer = mk("embed_norm") if use_embed_norm else None
    self.final_norm = mk("final_norm") if self.norm == "pre" else None
    self.embed_dropout = nn.Dropout(self.dropout_rate)
    if not self.tie_embedding:
      self.head = layers.dense(self.vocab_size, ("embed", "vocab"), gain=1.0,
                               dtype=jnp.float32, param_dtype=self.param_dtype, name="head")

  def hidden(self, tokens_BL, *, positions_BL=None, padding_mask_BL=None, deterministic=True):
    """Final hidden states h_BLD (after the final norm for pre-norm), in `dtype`."""
    if tokens_BL.ndim != 2:
      raise ValueError(f"tokens must be [batch, length], got shape {tokens_BL.shape}")
    if positions_BL is None and not self.decode:
      positions_BL = jnp.broadcast_to(jnp.arange(tokens_BL.shape[1]), tokens_BL.shape)
    x_BLD = self.embed(tokens_BL)
    x_BLD = self.embed_dropout(x_BLD, deterministic=deterministic)
    if self.embed_norm_layer is not None:
      x_BLD = self.embed_norm_layer(x_BLD)
    x_BLD = nn.with_logical_constraint(x_BLD, ("batch", "length", "embed"))
    for blk in self.blocks:
      x_BLD = blk(x_BLD, positions_BL, padding_mask_BL, deterministic)
    if self.final_norm is not None:
      x_BLD = self.final_norm(x_BLD)
    return x_BLD

  def logits(self, h_BLD):
    """float32 logits from hidden states (tied: h E^T; untied: Dense head)."""
    if self.tie_embedding:
      logits_BLV = self.embed.attend(h_BLD)
    else:
      logits_BLV = self.head(h_BLD.astype(jnp.float32))
    return nn.with_logical_constraint(logits_BLV, ("batch", "length", "vocab"))


class TransformerLM(_Stack):
  """Causal decoder LM: tokens_BL -> logits_BLV (float32).

  positions_BL: defaults to arange(L). padding_mask_BL: True at real tokens
  (False keys are never attended to). decode=True: autoregressive decoding
  with the attention KV cache ('cache' collection; initialise it with a full
  length dummy batch, then call one token at a time with mutable=['cache'] and
  explicit positions_BL).
  """
  causal: ClassVar[bool] = True

  def __call__(self, tokens_BL, *, positions_BL=None, padding_mask_BL=None,
               deterministic=True):
    h_BLD = self.hidden(tokens_BL, positions_BL=positions_BL,
                        padding_mask_BL=padding_mask_BL, deterministic=deterministic)
    return self.logits(h_BLD)


class TransformerEncoder(_Stack):
  """Bidirectional encoder (same fields as TransformerLM; `causal` forced False).

  __call__ returns MLM logits_BLV (float32) over the vocabulary, or
  (logits_BLV, hidden_BLD) with return_hidden=True (hidden feeds
  classification heads, see heads.py). Dropped tokens: either gather the kept
  tokens with their original positions_BL, or keep all tokens and set
  padding_mask_BL False at dropped ones -- both give the same outputs at kept
  tokens (tested).
  """
  causal: ClassVar[bool] = False

  def __call__(self, tokens_BL, *, positions_BL=None, padding_mask_BL=None,
               deterministic=True, return_hidden=False):
    h_BLD = self.hidden(tokens_BL, positions_BL=positions_BL,
                        padding_mask_BL=padding_mask_BL, deterministic=deterministic)
    logits_BLV = self.logits(h_BLD)
    return (logits_BLV, h_BLD) if return_hidden else logits_BLV


def hwfa_window(num_layers: int, train_length: int, alpha: float = 0.75) -> int:
  """Largest window w with (w-1)(L-1)+1 <= alpha N (kexue.fm/archives/9603).

  Su's constraint for HWFA window layers. For L=24, N=512 this gives 17; Su's own
  run used w=16 ((w-1)(L-1)+1 = 346 ~ 0.68 N), so pass the window explicitly to
  reproduce it.
  """
  if num_layers < 2:
    return train_length
  return max(1, int((alpha * train_length - 1) // (num_layers - 1)) + 1)


def hwfa_attention(num_layers: int, window: int, train_length: int, *,
                   final_rerope: bool = False, rerope_window: int | None = None,
                   full_logn: str = "train",
                   base: AttentionConfig = AttentionConfig()) -> tuple[AttentionConfig, ...]:
  """Per-layer configs for HWFA, hybrid window-full attention (kexue.fm/archives/9603).

  Layers 0..L-2: sliding-window attention (keys with 0 <= i-j < window) with RoPE.
  Layer L-1:     full attention without position encoding (NoPE) and log-n scaled
                 queries, q * log_{N} n with N = train_length, n = position + 1.
  Su's setting: L=24, N=512, w=16, so (w-1)(L-1)+1 = 346 <= 3/4 N (`hwfa_window`).

  final_rerope=True: the final full layer uses ReRoPE (window `rerope_window`,
  default train_length // 2) instead of NoPE -- the "HWFA + ReRoPE" variant
  (kexue.fm/archives/9731). For Su's HWFA2 proper (full RoPE layers in the middle,
  switched to ReRoPE at inference) see `hwfa2_attention`.
  All other fields come from `base`.
  """
  if num_layers < 1:
    raise ValueError(f"num_layers must be >= 1, got {num_layers}")
  if window < 1:
    raise ValueError(f"window must be >= 1, got {window}")
  win = dataclasses.replace(base, position="rope", window=window, logn="none")
  if final_rerope:
    full = dataclasses.replace(base, position="rerope", window=None, logn=full_logn,
                               logn_base_length=train_length,
                               rerope_window=rerope_window or max(1, train_length // 2))
  else:
    full = dataclasses.replace(base, position="none", window=None, logn=full_logn,
                               logn_base_length=train_length)
  return (win,) * (num_layers - 1) + (full,)


def hwfa2_attention(num_layers: int, window: int, train_length: int, *, num_full: int = 2,
                    rerope: bool = False, rerope_window: int | None = None,
                    full_logn: str = "train",
                    base: AttentionConfig = AttentionConfig()) -> tuple[AttentionConfig, ...]:
  """Per-layer configs for HWFA2 (kexue.fm/archives/9731).

  Window-RoPE layers (larger window, Su: ~2-4 N/L, best 64) plus `num_full` full
  attention layers with RoPE in the middle: one at L//2, two at L//3 and 2L//3.
  Train with rerope=False; evaluate long inputs with rerope=True, which switches
  only the full layers to ReRoPE (window `rerope_window`, default N // 2).
  Full layers use log-n scaling `full_logn` with base N = train_length.
  """
  if num_full not in (1, 2):
    raise ValueError(f"num_full must be 1 or 2, got {num_full}")
  full_idx = {num_layers // 2} if num_full == 1 else {num_layers // 3, 2 * num_layers // 3}
  win = dataclasses.replace(base, position="rope", window=window, logn="none")
  full = dataclasses.replace(
      base, position="rerope" if rerope else "rope", window=None, logn=full_logn,
      logn_base_length=train_length, rerope_window=rerope_window or max(1, train_length // 2))
  return tuple(full if i in full_idx else win for i in range(num_layers))
