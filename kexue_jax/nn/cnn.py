"""A small 1-D CNN for MNIST-1D (https://github.com/greydanus/mnist1d).

Input x_BL: [B, 40] float signals (or [B, L, C]). Each stage is

    h <- relu(BN(conv1d_k(h)))          (stride s, 'SAME' padding, no conv bias)

followed by global average pooling over length:  features_BC = mean_l h_BLC,
and a linear classifier logits = W features + b. `features` is what SimSiam /
kNN / linear probes consume.

BatchNorm uses batch statistics and updates the 'batch_stats' collection when
`train=True` (apply with `mutable=['batch_stats']`), running averages otherwise.

Dropout (R-Drop, kexue.fm/archives/8496): with `dropout_rate` p > 0, each stage's
output is h <- Dropout_p(h) (elementwise; survivors scaled by 1/(1-p)). It is on
iff `dropout` (default: `train`), so Monte-Carlo dropout at evaluation time is
`train=False, dropout=True` (BatchNorm keeps its running averages). p = 0 (the
default) leaves the module exactly as before.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kexue_jax.nn import layers

Dtype = Any


def conv_kernel_init(ndim: int):
  """He-normal (fan_in) conv kernel with logical names (None,)*ndim + ('conv_in', 'conv_out')."""
  return nn.with_logical_partitioning(
      nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal"),
      (None,) * ndim + ("conv_in", "conv_out"))


def batch_norm(train: bool, *, dtype: Dtype = jnp.float32, param_dtype: Dtype = jnp.float32,
               momentum: float = 0.9, scale_init=nn.initializers.ones, name: str | None = None):
  """`nn.BatchNorm` with 'norm'-named scale/bias; batch statistics iff train."""
  return nn.BatchNorm(
      use_running_average=not train, momentum=momentum, epsilon=1e-5, dtype=dtype,
      param_dtype=param_dtype,
      scale_init=nn.with_logical_partitioning(scale_init, ("norm",)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)), name=name)


class CNN1D(nn.Module):
  """Conv-BN-ReLU stages + global average pool + linear head.

  Attributes:
    num_classes: output classes; None -> logits is None (feature extractor only).
    channels / strides: one entry per conv stage.
    kernel_size: conv width.
    dropout_rate: dropout after each stage (0 = none).
  Returns:
    (logits_BK float32 or None, features_BC float32)
  """
  num_classes: int | None = 10
  channels: Sequence[int] = (32, 64, 128)
  strides: Sequence[int] = (1, 2, 2)
  kernel_size: int = 5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  dropout_rate: float = 0.0

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout: bool | None = None):
    dropout = train if dropout is None else dropout
    if len(self.channels) != len(self.strides):
      raise ValueError(f"channels {self.channels} and strides {self.strides} differ in length")
    h_BLC = x[..., None] if x.ndim == 2 else x
    if h_BLC.ndim != 3:
      raise ValueError(f"expected [B, L] or [B, L, C] input, got shape {x.shape}")
    h_BLC = h_BLC.astype(self.dtype)
    for i, (c, s) in enumerate(zip(self.channels, self.strides)):
      h_BLC = nn.Conv(c, (self.kernel_size,), strides=(s,), padding="SAME", use_bias=False,
                      dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=conv_kernel_init(1), name=f"conv{i}")(h_BLC)
      h_BLC = batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype,
                         name=f"bn{i}")(h_BLC)
      h_BLC = nn.relu(h_BLC)
      if self.dropout_rate:
        h_BLC = nn.Dropout(self.dropout_rate)(h_BLC, deterministic=not dropout)
    features_BC = jnp.mean(h_BLC.astype(jnp.float32), axis=1)
    if self.num_classes is None:
      return None, features_BC
    logits_BK = layers.dense(self.num_classes, ("embed", "vocab"), use_bias=True,
                             dtype=jnp.float32, param_dtype=self.param_dtype,
                             name="head")(features_BC)
    return logits_BK, features_BC
