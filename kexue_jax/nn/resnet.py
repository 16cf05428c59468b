"""CIFAR ResNet-18 (He et al. 2016, the common CIFAR variant: 3x3 stem, no max-pool).

    stem:    conv3x3(3 -> 64) - BN - ReLU                  (stride 1, 32x32 stays 32x32)
    stages:  [64, 128, 256, 512] x 2 BasicBlocks, stride 1, 2, 2, 2
    block:   y = relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x)),
             shortcut = BN(conv1x1_s(x)) when stride != 1 or channels change, else x
    head:    global average pool -> features [B, 512] -> Dense -> logits

For 10 classes this is the standard 11,173,962 trainable parameters (convs without
bias, BN scale+bias, linear with bias). BatchNorm running statistics live in the
'batch_stats' collection; `train=True` uses batch statistics and updates them
(apply with `mutable=['batch_stats']`).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kexue_jax.nn import layers
from kexue_jax.nn.cnn import batch_norm, conv_kernel_init

Dtype = Any


class BasicBlock(nn.Module):
  features: int
  strides: int = 1
  zero_init_last_bn: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool):
    conv = lambda f, k, s, name: nn.Conv(
        f, (k, k), strides=(s, s), padding="SAME" if k > 1 else "VALID", use_bias=False,
        dtype=self.dtype, param_dtype=self.param_dtype, kernel_init=conv_kernel_init(2),
        name=name)
    bn = lambda name, **kw: batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype,
                                       name=name, **kw)
    y = conv(self.features, 3, self.strides, "conv1")(x_BHWC)
    y = nn.relu(bn("bn1")(y))
    y = conv(self.features, 3, 1, "conv2")(y)
    last_init = nn.initializers.zeros if self.zero_init_last_bn else nn.initializers.ones
    y = bn("bn2", scale_init=last_init)(y)
    if self.strides != 1 or x_BHWC.shape[-1] != self.features:
      x_BHWC = bn("bn_proj")(conv(self.features, 1, self.strides, "conv_proj")(x_BHWC))
    return nn.relu(y + x_BHWC)


class ResNet(nn.Module):
  """CIFAR-style ResNet. Returns (logits_BK float32 or None, features_BC float32)."""
  num_classes: int | None = 10
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 512)
  zero_init_last_bn: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BHWC, *, train: bool = False):
    if len(self.stage_sizes) != len(self.widths):
      raise ValueError(f"stage_sizes {self.stage_sizes} and widths {self.widths} differ in length")
    if x_BHWC.ndim != 4:
      raise ValueError(f"expected [B, H, W, C] images, got shape {x_BHWC.shape}")
    h = x_BHWC.astype(self.dtype)
    h = nn.Conv(self.widths[0], (3, 3), padding="SAME", use_bias=False, dtype=self.dtype,
                param_dtype=self.param_dtype, kernel_init=conv_kernel_init(2),
                name="stem_conv")(h)
    h = nn.relu(batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype,
                           name="stem_bn")(h))
    for i, (n, w) in enumerate(zip(self.stage_sizes, self.widths)):
      for j in range(n):
        h = BasicBlock(w, strides=2 if (i > 0 and j == 0) else 1,
                       zero_init_last_bn=self.zero_init_last_bn, dtype=self.dtype,
                       param_dtype=self.param_dtype, name=f"stage{i}_block{j}")(h, train=train)
    features_BC = jnp.mean(h.astype(jnp.float32), axis=(1, 2))
    if self.num_classes is None:
      return None, features_BC
    logits_BK = layers.dense(self.num_classes, ("embed", "vocab"), use_bias=True,
                             dtype=jnp.float32, param_dtype=self.param_dtype,
                             name="head")(features_BC)
    return logits_BK, features_BC


def ResNet18(num_classes: int | None = 10, **kw) -> ResNet:
  return ResNet(num_classes=num_classes, stage_sizes=(2, 2, 2, 2), **kw)
