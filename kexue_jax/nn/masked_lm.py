"""Pre-training models of "MLM and MAE seen as dropout" (https://kexue.fm/archives/8770).

``MaskedLM``: BERT-style, the encoder sees the corrupted sequence and predicts every position.
``MAEModel``: MAE-style (He et al., arXiv 2111.06377), the encoder sees only the kept tokens (original
positions), a light decoder predicts the dropped ones. The objectives and masking are in tasks/mlm.py.
Token ids: kexue_jax.vocab ([PAD] never attended to; outputs over the full byte + special vocabulary).
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from kexue_jax import vocab
from kexue_jax.nn import layers
from kexue_jax.nn import token_drop
from kexue_jax.nn import transformer


class MaskedLM(nn.Module):
  """BERT-style MLM: the encoder sees the corrupted sequence; logits_BLV at every position."""
  encoder: transformer.TransformerEncoder

  def __call__(self, tokens_BL, *, deterministic: bool = True, return_hidden: bool = False):
    return self.encoder(tokens_BL, padding_mask_BL=tokens_BL != vocab.PAD_ID, deterministic=deterministic,
                        return_hidden=return_hidden)


class MAEModel(nn.Module):
  """MAE-style: encoder on kept tokens (original positions), light decoder with a mask vector.

  __call__(tokens_BL, keep_BK, drop_BM) -> logits_BMV at the dropped positions. The decoder input is
  Dense(encoder output) scattered to the kept positions and the learned `mask_embedding` elsewhere; its
  blocks attend over all L positions (RoPE with positions 0..L-1, [PAD] keys masked).
  """
  encoder: transformer.TransformerEncoder
  decoder_layers: int = 1
  decoder_mlp_dim: int | None = None

  @nn.compact
  def __call__(self, tokens_BL, keep_BK, drop_BM, *, deterministic: bool = True):
    enc = self.encoder
    kept_BK = token_drop.gather_BK(tokens_BL, keep_BK)
    h_BKD = enc.hidden(kept_BK, positions_BL=keep_BK, padding_mask_BL=kept_BK != vocab.PAD_ID,
                       deterministic=deterministic)
    D = h_BKD.shape[-1]
    h_BKD = layers.dense(D, ("embed", "mlp"), dtype=enc.dtype, param_dtype=enc.param_dtype,
                         name="enc_to_dec")(h_BKD)
    mask_D = self.param("mask_embedding", nn.with_logical_partitioning(nn.initializers.normal(0.02), ("embed",)),
                        (D,), enc.param_dtype)
    B, L = tokens_BL.shape
    x_BLD = jnp.broadcast_to(mask_D.astype(h_BKD.dtype), (B, L, D))
    x_BLD = x_BLD.at[jnp.arange(B)[:, None], keep_BK].set(h_BKD)
    positions_BL = jnp.broadcast_to(jnp.arange(L), (B, L))
    attn = dataclasses.replace(transformer.per_layer_configs(enc.attention, enc.num_layers)[-1], causal=False)
    for i in range(self.decoder_layers):
      x_BLD = transformer.Block(num_heads=enc.num_heads, head_dim=enc.head_dim,
                                mlp_dim=self.decoder_mlp_dim or enc.mlp_dim, attention=attn, norm="pre",
                                norm_type=enc.norm_type, dropout_rate=enc.dropout_rate, dtype=enc.dtype,
                                param_dtype=enc.param_dtype, name=f"dec_block{i}")(
                                    x_BLD, positions_BL, tokens_BL != vocab.PAD_ID, deterministic)
    x_BLD = layers.make_norm(enc.norm_type, dtype=enc.dtype, param_dtype=enc.param_dtype,
                             module_name="dec_norm")(x_BLD)
    x_BMD = token_drop.gather_BK(x_BLD, drop_BM)
    return layers.dense(vocab.VOCAB_SIZE, ("embed", "vocab"), dtype=jnp.float32, param_dtype=enc.param_dtype,
                        name="dec_head")(x_BMD.astype(jnp.float32))
