"""Small shared layers: initialisers, norm factory, token embedding, MLP.

Every parameter carries logical axis names through `nn.with_logical_partitioning`
(modules never see a mesh). Names used here:

  'vocab', 'embed', 'mlp'   dense / embedding axes
  'norm'                     1-D scale / offset vectors of LayerNorm, RMSNorm, BatchNorm
  'conv_in', 'conv_out'      input / output channels of convolution kernels
                             (spatial kernel axes are left unnamed: None)

Initialisation (https://kexue.fm/archives/8620, https://kexue.fm/archives/8978 and GAU-α,
https://kexue.fm/archives/9052 with its code github.com/ZhuiyiTechnology/GAU-alpha): every matrix is drawn
from a truncated normal whose *true* standard deviation is

    std = gain / sqrt(fan_in),      gain = num_layers ** (-1 / order)

(`jax.nn.initializers.variance_scaling(gain**2, "fan_in", "truncated_normal")`
already corrects for the truncation at ±2σ, i.e. it is bert4keras's 1.13684723
factor). GAU-α uses order=3 over its GAU layers; RoFormerV2 uses order=2.
Embedding tables follow the same rule with fan = embed_dim (bert4keras uses
shape[1] for tables with more than 10000 rows).
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
Initializer = Callable[..., jax.Array]

NORMS = ("layernorm", "rmsnorm", "rmsnorm_noscale")


def depth_gain(num_layers: int, order: float | None) -> float:
  """DeepNet / GAU-α style depth gain `num_layers ** (-1/order)` (1 if order is None)."""
  if order is None:
    return 1.0
  return float(num_layers) ** (-1.0 / order)


def kernel_init(gain: float = 1.0) -> Initializer:
  """Truncated normal with true std `gain / sqrt(fan_in)` (fan_in = all but the last axis)."""
  return nn.initializers.variance_scaling(gain ** 2, "fan_in", "truncated_normal")


def embed_init(embed_dim: int, gain: float = 1.0) -> Initializer:
  """Truncated normal with true std `gain / sqrt(embed_dim)` for a [vocab, embed] table."""
  std = gain / embed_dim ** 0.5
  base = nn.initializers.truncated_normal(stddev=std / 0.87962566103423978)

  def init(key, shape, dtype=jnp.float32):
    return base(key, shape, dtype)

  return init


def make_norm(name: str, *, epsilon: float = 1e-6, dtype: Dtype = jnp.float32,
              param_dtype: Dtype = jnp.float32, module_name: str | None = None) -> nn.Module:
  """Norm factory.

  'layernorm':       (x - mean) / sqrt(var + eps) * g + b
  'rmsnorm':         x / sqrt(mean(x^2) + eps) * g
  'rmsnorm_noscale': x / sqrt(mean(x^2) + eps)      (GAU-α / RoFormerV2: no learnable parameters)
  """
  scale_init = nn.with_logical_partitioning(nn.initializers.ones, ("norm",))
  bias_init = nn.with_logical_partitioning(nn.initializers.zeros, ("norm",))
  if name == "layernorm":
    return nn.LayerNorm(epsilon=epsilon, dtype=dtype, param_dtype=param_dtype,
                        scale_init=scale_init, bias_init=bias_init, name=module_name)
  if name == "rmsnorm":
    return nn.RMSNorm(epsilon=epsilon, dtype=dtype, param_dtype=param_dtype,
                      scale_init=scale_init, name=module_name)
  if name == "rmsnorm_noscale":
    return nn.RMSNorm(epsilon=epsilon, dtype=dtype, param_dtype=param_dtype,
                      use_scale=False, name=module_name)
  raise ValueError(f"unknown norm {name!r}; expected one of {NORMS}")


ACTIVATIONS = {
    "gelu": nn.gelu,
    "relu": nn.relu,
    "swish": nn.swish,
    "silu": nn.swish,
    "squared_relu": lambda x: jnp.square(nn.relu(x)),
}


def get_activation(name: str) -> Callable[[jax.Array], jax.Array]:
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; expected one of {tuple(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def dense(features: int, names: tuple[str | None, ...], *, gain: float = 1.0,
          use_bias: bool = False, dtype: Dtype = jnp.float32,
          param_dtype: Dtype = jnp.float32, name: str | None = None) -> nn.Dense:
  """`nn.Dense` with logically partitioned kernel (names = (in, out)) and bias ((out,))."""
  return nn.Dense(
      features, use_bias=use_bias, dtype=dtype, param_dtype=param_dtype,
      kernel_init=nn.with_logical_partitioning(kernel_init(gain), names),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[-1:]),
      name=name)


class Embed(nn.Module):
  """Token embedding table [vocab, embed]; `attend` gives tied output logits x @ E^T."""
  vocab_size: int
  embed_dim: int
  gain: float = 1.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    self.embedding = self.param(
        "embedding",
        nn.with_logical_partitioning(embed_init(self.embed_dim, self.gain), ("vocab", "embed")),
        (self.vocab_size, self.embed_dim), self.param_dtype)

  def __call__(self, tokens_BL: jax.Array) -> jax.Array:
    table_VD = jnp.asarray(self.embedding, self.dtype)
    return jnp.take(table_VD, tokens_BL, axis=0)

  def attend(self, x_BLD: jax.Array) -> jax.Array:
    """Tied output logits (computed in float32): logits = x E^T."""
    table_VD = jnp.asarray(self.embedding, jnp.float32)
    return jnp.einsum("bld,vd->blv", x_BLD.astype(jnp.float32), table_VD)


class Mlp(nn.Module):
  """Position-wise FFN: y = W_2 act(W_1 x) (or W_2 (act(W_g x) * W_1 x) when gated), dropout on y."""
  mlp_dim: int
  activation: str = "gelu"
  gated: bool = False
  use_bias: bool = False
  dropout_rate: float = 0.0
  gain: float = 1.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x_BLD: jax.Array, deterministic: bool = True) -> jax.Array:
    act = get_activation(self.activation)
    d = x_BLD.shape[-1]
    kw = dict(gain=self.gain, use_bias=self.use_bias, dtype=self.dtype,
              param_dtype=self.param_dtype)
    h_BLF = dense(self.mlp_dim, ("embed", "mlp"), name="wi", **kw)(x_BLD)
    if self.gated:
      g_BLF = dense(self.mlp_dim, ("embed", "mlp"), name="wg", **kw)(x_BLD)
      h_BLF = act(g_BLF) * h_BLF
    else:
      h_BLF = act(h_BLF)
    h_BLF = nn.with_logical_constraint(h_BLF, ("batch", "length", "mlp"))
    y_BLD = dense(d, ("mlp", "embed"), name="wo", **kw)(h_BLF)
    return nn.Dropout(self.dropout_rate)(y_BLD, deterministic=deterministic)
