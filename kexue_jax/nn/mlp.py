"""A multilayer-perceptron classifier with dropout, for MNIST-1D-sized inputs (R-Drop, kexue.fm/archives/8496).

    h_0 = flatten(x)                                   x: [B, ...] -> [B, F]
    h_i = Dropout_p(act(W_i h_{i-1} + b_i))            i = 1..len(hidden_dims)
    logits_BK = W_out h_n + b_out                      (float32)

Dropout (drop probability p = `dropout_rate`, survivors scaled by 1/(1-p)) follows every hidden layer, as
in the reproduction plan (MLP 40 -> 256 -> 256 -> 10, p = 0.3; the MNIST-1D README's MLP reaches ~68%).

`__call__(x, train=False, dropout=None)`: dropout is on iff `dropout` (default: `train`). There is no
BatchNorm, so `train` only matters through `dropout`; the separate flag keeps the signature of models that
do have one (Monte-Carlo dropout at evaluation time = `train=False, dropout=True`).
Returns (logits_BK or None when num_classes is None, features_BD = h_n in float32).

Logical axes (layers.py): kernels alternate ('embed', 'mlp'), ('mlp', 'embed'), ... like a Transformer FFN,
so no kernel names the same mesh axis twice; the head is ('embed', 'vocab') or ('mlp', None).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from kexue_jax.nn import layers

Dtype = Any


class MLP(nn.Module):
  num_classes: int | None = 10
  hidden_dims: Sequence[int] = (256, 256)
  dropout_rate: float = 0.3
  activation: str = "relu"
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False, dropout: bool | None = None):
    dropout = train if dropout is None else dropout
    act = layers.get_activation(self.activation)
    h_BF = x.reshape(x.shape[0], -1).astype(self.dtype)
    names = ("embed", "mlp")
    for i, d in enumerate(self.hidden_dims):
      in_name, out_name = names[i % 2], names[(i + 1) % 2]
      h_BF = layers.dense(d, (in_name, out_name), use_bias=True, dtype=self.dtype,
                          param_dtype=self.param_dtype, name=f"fc{i}")(h_BF)
      h_BF = nn.Dropout(self.dropout_rate)(act(h_BF), deterministic=not dropout)
    features_BD = h_BF.astype(jnp.float32)
    if self.num_classes is None:
      return None, features_BD
    last = names[len(self.hidden_dims) % 2]
    head_names = (last, "vocab") if last == "embed" else (last, None)
    logits_BK = layers.dense(self.num_classes, head_names, use_bias=True, dtype=jnp.float32,
                             param_dtype=self.param_dtype, name="head")(features_BD)
    return logits_BK, features_BD
