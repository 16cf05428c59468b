"""Heads on top of backbone features.

ProjectionMLP / PredictionMLP follow SimSiam (Chen & He, arXiv 2011.10566; official
facebookresearch/simsiam builder.py; Su's reading: kexue.fm/archives/7980):

    projector g: [Dense(no bias) - BN - ReLU] x (num_layers - 1) - Dense(no bias) - BN(no affine)
    predictor h: Dense(no bias) - BN - ReLU - Dense(bias)          (bottleneck hidden = d/4)

BatchNorm uses batch statistics and updates 'batch_stats' when train=True. The BN placement is switchable
(hidden_bn / out_bn) for the paper's Table 3 ablation (no BN; hidden-only; default; also on the predictor output).

ClassifierHead pools encoder hidden states h_BLD (first token, or the mean over
tokens where padding_mask_BL is True) and applies dropout + Dense -> float32 logits.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from kexue_jax.nn import layers
from kexue_jax.nn.cnn import batch_norm

Dtype = Any
POOLINGS = ("first", "mean")


class ProjectionMLP(nn.Module):
  """hidden_bn / out_bn: BatchNorm after the hidden / output layers (SimSiam Table 3 ablates both); a Dense layer
  without a following BN gets a bias."""
  hidden_dim: int
  out_dim: int
  num_layers: int = 2
  hidden_bn: bool = True
  out_bn: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BD, *, train: bool = False):
    if self.num_layers < 1:
      raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
    x = x_BD.astype(self.dtype)
    for i in range(self.num_layers - 1):
      x = layers.dense(self.hidden_dim, ("embed", "mlp"), use_bias=not self.hidden_bn, dtype=self.dtype,
                       param_dtype=self.param_dtype, name=f"fc{i}")(x)
      if self.hidden_bn:
        x = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype, name=f"bn{i}")(x)
      x = nn.relu(x)
    x = layers.dense(self.out_dim, ("mlp", "embed"), use_bias=not self.out_bn, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="fc_out")(x)
    if self.out_bn:
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, use_scale=False,
                       use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name="bn_out")(x)
    return x.astype(jnp.float32)


class PredictionMLP(nn.Module):
  """hidden_bn: BatchNorm after the hidden layer (default); out_bn: also after the output layer (SimSiam
  Table 3d: 'unstable'). A Dense layer without a following BN gets a bias."""
  hidden_dim: int
  out_dim: int
  hidden_bn: bool = True
  out_bn: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z_BD, *, train: bool = False):
    x = layers.dense(self.hidden_dim, ("embed", "mlp"), use_bias=not self.hidden_bn, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="fc0")(z_BD.astype(self.dtype))
    if self.hidden_bn:
      x = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype, name="bn0")(x)
    x = layers.dense(self.out_dim, ("mlp", "embed"), use_bias=not self.out_bn, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="fc_out")(nn.relu(x))
    if self.out_bn:
      x = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype, name="bn_out")(x)
    return x.astype(jnp.float32)


def pool_tokens(h_BLD, padding_mask_BL=None, pool: str = "mean"):
  """'first': h[:, 0]; 'mean': sum_l m_l h_l / sum_l m_l (m = padding mask, all ones if None)."""
  if pool == "first":
    return h_BLD[:, 0]
  if pool == "mean":
    if padding_mask_BL is None:
      return jnp.mean(h_BLD, axis=1)
    m = padding_mask_BL.astype(h_BLD.dtype)[..., None]
    return jnp.sum(h_BLD * m, axis=1) / jnp.maximum(jnp.sum(m, axis=1), 1.0)
  raise ValueError(f"unknown pooling {pool!r}; expected one of {POOLINGS}")


class ClassifierHead(nn.Module):
  num_classes: int
  pool: str = "first"
  dropout_rate: float = 0.0
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, h_BLD, *, padding_mask_BL=None, deterministic: bool = True):
    x_BD = pool_tokens(h_BLD.astype(jnp.float32), padding_mask_BL, self.pool)
    x_BD = nn.Dropout(self.dropout_rate)(x_BD, deterministic=deterministic)
    return layers.dense(self.num_classes, ("embed", "vocab"), use_bias=True, dtype=jnp.float32,
                        param_dtype=self.param_dtype, name="out")(x_BD)
