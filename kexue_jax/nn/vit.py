"""Vision Transformer with Su's 2D RoPE (https://kexue.fm/archives/8397).

    patches:   x_BHWC -> Conv(p x p, stride p) -> tokens x_BND, N = (H/p)(W/p), row-major
    positions: token (r, c) of the patch grid gets (y, x) = (r, c)
    blocks:    pre-norm Transformer blocks (transformer.Block) whose attention is
               bidirectional `AttentionConfig(position="rope2d")`: q, k of every head are
               split in two halves rotated by R_y and R_x, so
               <R_{y1,x1} q, R_{y2,x2} k> = <q, R_{y2-y1, x2-x1} k>
               and scores depend only on (dy, dx). No absolute position embedding.
    pooling:   "gap" (default): mean over tokens after the final LayerNorm.
               "cls": a learned class token is prepended. RoPE needs a position for it;
               it sits at the grid centre ((gh-1)/2, (gw-1)/2) (real-valued positions are
               fine for RoPE), so its relation to the patches is symmetric and invariant
               to translating the grid only if positions_BN2 is also translated (tested
               for "gap").
    head:      Dense(num_classes) on the pooled features; logits float32.

`__call__(images, train=False, positions_BN2=None, keep_idx_BK=None)`:
positions_BN2 overrides the patch positions; keep_idx_BK keeps only the given patch
indices (with their original positions), as MAE-style token dropping.
Returns (logits_BK or None, features_BD).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from kexue_jax.nn import layers
from kexue_jax.nn.attention import AttentionConfig
from kexue_jax.nn.cnn import conv_kernel_init
from kexue_jax.nn.transformer import Block

Dtype = Any
POOLS = ("gap", "cls")


def patch_grid_positions(grid_h: int, grid_w: int) -> jax.Array:
  """(N, 2) float32 (y, x) = (row, column) of each patch in row-major order."""
  y, x = jnp.meshgrid(jnp.arange(grid_h), jnp.arange(grid_w), indexing="ij")
  return jnp.stack([y.reshape(-1), x.reshape(-1)], axis=-1).astype(jnp.float32)


class ViT(nn.Module):
  num_classes: int | None = 10
  patch_size: int = 4
  num_layers: int = 6
  embed_dim: int = 192
  num_heads: int = 3
  head_dim: int = 64
  mlp_dim: int = 768
  dropout_rate: float = 0.0
  pool: str = "gap"
  rope_base: float = 10000.0
  norm_type: str = "layernorm"
  remat: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images_BHWC, *, train: bool = False, positions_BN2=None, keep_idx_BK=None):
    if self.pool not in POOLS:
      raise ValueError(f"unknown pool {self.pool!r}; expected one of {POOLS}")
    if images_BHWC.ndim != 4:
      raise ValueError(f"expected [B, H, W, C] images, got shape {images_BHWC.shape}")
    B, Hi, Wi, _ = images_BHWC.shape
    p = self.patch_size
    if Hi % p or Wi % p:
      raise ValueError(f"image size {(Hi, Wi)} is not divisible by patch_size {p}")
    gh, gw = Hi // p, Wi // p
    x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                param_dtype=self.param_dtype, kernel_init=conv_kernel_init(2),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("conv_out",)),
                name="patch_embed")(images_BHWC.astype(self.dtype))
    x_BND = x.reshape(B, gh * gw, self.embed_dim)
    pos_BN2 = (jnp.broadcast_to(patch_grid_positions(gh, gw), (B, gh * gw, 2))
               if positions_BN2 is None else jnp.asarray(positions_BN2, jnp.float32))
    if keep_idx_BK is not None:
      x_BND = jnp.take_along_axis(x_BND, keep_idx_BK[..., None], axis=1)
      pos_BN2 = jnp.take_along_axis(pos_BN2, keep_idx_BK[..., None], axis=1)
    if self.pool == "cls":
      cls = self.param("cls", nn.with_logical_partitioning(nn.initializers.zeros, (None, "embed")),
                       (1, self.embed_dim), self.param_dtype)
      x_BND = jnp.concatenate(
          [jnp.broadcast_to(cls.astype(self.dtype), (B, 1, self.embed_dim)), x_BND], axis=1)
      centre = jnp.asarray([(gh - 1) / 2.0, (gw - 1) / 2.0], jnp.float32)
      pos_BN2 = jnp.concatenate([jnp.broadcast_to(centre, (B, 1, 2)), pos_BN2], axis=1)
    x_BND = nn.Dropout(self.dropout_rate)(x_BND, deterministic=not train)

    attn = AttentionConfig(position="rope2d", causal=False, rope_base=self.rope_base)
    block_cls = nn.remat(Block, static_argnums=(4,)) if self.remat else Block
    for i in range(self.num_layers):
      x_BND = block_cls(num_heads=self.num_heads, head_dim=self.head_dim, mlp_dim=self.mlp_dim,
                        attention=attn, norm="pre", block="mha", norm_type=self.norm_type,
                        dropout_rate=self.dropout_rate, dtype=self.dtype,
                        param_dtype=self.param_dtype, name=f"block{i}")(
                            x_BND, pos_BN2, None, not train)
    x_BND = layers.make_norm(self.norm_type, dtype=self.dtype, param_dtype=self.param_dtype,
                             module_name="final_norm")(x_BND)
    features_BD = (x_BND[:, 0] if self.pool == "cls" else jnp.mean(x_BND, axis=1))
    features_BD = features_BD.astype(jnp.float32)
    if self.num_classes is None:
      return None, features_BD
    logits = layers.dense(self.num_classes, ("embed", "vocab"), use_bias=True,
                          dtype=jnp.float32, param_dtype=self.param_dtype,
                          name="head")(features_BD)
    return logits, features_BD
