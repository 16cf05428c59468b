"""GatedAttentionUnit against a NumPy float64 transcription of its equations."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax.nn.attention import AttentionConfig
from kexue_jax.nn.gau import GatedAttentionUnit
from tests.nn.test_transformer import _np, _perturb, np_gau, np_softmax_rows, np_swish, rope_matrix

D, E, S, L = 8, 12, 4, 20   # L > 16 so the max(n, 16) clamp of softmax_plus matters


def _run(model, x, **kw):
  params = _perturb(model.init(jax.random.key(0), x)["params"], scale=0.2)
  return params, model.apply({"params": params}, x, **kw)


def _x(B=2, seed=1):
  return jax.random.normal(jax.random.key(seed), (B, L, D))


@pytest.mark.parametrize("normalization", ["softmax_plus", "squared_relu", "softmax"])
def test_gau_causal_matches_numpy(normalization):
  model = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization=normalization)
  x = _x()
  params, got = _run(model, x)
  p = _np(params)
  pos = np.arange(L)
  ref = np.stack([np_gau(p, np.asarray(xb, np.float64), pos, normalization=normalization)
                  for xb in x])
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


def test_gau_with_biases_matches_numpy_including_dense_biases():
  """use_bias adds Dense biases too; transcribe them explicitly."""
  model = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="softmax_plus",
                             use_bias=True, config=AttentionConfig(causal=False))
  x = _x()
  params, got = _run(model, x)
  p = _np(params)
  pos = np.arange(L)
  outs = []
  for xb in np.asarray(x, np.float64):
    u = np_swish(xb @ p["wu"]["kernel"] + p["wu"]["bias"])
    v = np_swish(xb @ p["wv"]["kernel"] + p["wv"]["bias"])
    z = np_swish(xb @ p["wz"]["kernel"] + p["wz"]["bias"])
    q = z * p["q_scale"] + p["q_offset"]
    k = z * p["k_scale"] + p["k_offset"]
    rq = np.stack([rope_matrix(i, S) @ q[i] for i in pos])
    rk = np.stack([rope_matrix(i, S) @ k[i] for i in pos])
    a = rq @ rk.T / math.sqrt(S) * math.log(max(L, 16)) / math.log(512)
    A = np_softmax_rows(a, np.ones((L, L), bool))
    outs.append((u * (A @ v)) @ p["wo"]["kernel"] + p["wo"]["bias"])
  np.testing.assert_allclose(got, np.stack(outs), rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("normalization", ["softmax_plus", "squared_relu"])
def test_gau_bidirectional_padding_matches_numpy(normalization):
  """n = number of valid keys; padded keys get zero weight."""
  model = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization=normalization,
                             config=AttentionConfig(causal=False))
  x = _x()
  valid = np.ones((2, L), bool)
  valid[0, 17:] = False
  valid[1, [2, 5, 11]] = False
  params, got = _run(model, x, padding_mask_BL=jnp.asarray(valid))
  p = _np(params)
  pos = np.arange(L)
  ref = np.stack([np_gau(p, np.asarray(x[b], np.float64), pos, normalization=normalization,
                         causal=False, valid_L=valid[b]) for b in range(2)])
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-5)


def test_softmax_plus_equals_plain_softmax_at_512():
  """softmax_plus scale log(max(n,16))/log(512) is 1 at n = 512: compare with base = n."""
  x = _x()
  cfg = AttentionConfig(causal=False)
  plus = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="softmax_plus",
                            softmax_plus_base=L, config=cfg)
  plain = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="softmax", config=cfg)
  variables = plus.init(jax.random.key(0), x)
  np.testing.assert_allclose(plus.apply(variables, x), plain.apply(variables, x),
                             rtol=1e-5, atol=1e-6)


def test_gau_softmax_uses_attention_config_logn():
  """normalization='softmax' + logn='train': a_ij * log_N(i+1) (causal), N = logn_base_length."""
  model = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="softmax",
                             config=AttentionConfig(logn="train", logn_base_length=8))
  x = _x(B=1)
  params, got = _run(model, x)
  p = _np(params)
  xb = np.asarray(x[0], np.float64)
  u, v, z = (np_swish(xb @ p[n]["kernel"]) for n in ("wu", "wv", "wz"))
  q, k = z * p["q_scale"], z * p["k_scale"]
  rq = np.stack([rope_matrix(i, S) @ q[i] for i in range(L)])
  rk = np.stack([rope_matrix(i, S) @ k[i] for i in range(L)])
  a = rq @ rk.T / math.sqrt(S) * (np.log(np.arange(1, L + 1)) / np.log(8))[:, None]
  A = np_softmax_rows(a, np.tril(np.ones((L, L), bool)))
  np.testing.assert_allclose(got[0], (u * (A @ v)) @ p["wo"]["kernel"], rtol=2e-4, atol=2e-5)


def test_gau_parameter_shapes():
  model = GatedAttentionUnit(expansion_dim=E, key_dim=S)
  shapes = jax.tree.map(lambda a: a.shape, nn.unbox(model.init(jax.random.key(0), _x())["params"]))
  assert shapes == {"wu": {"kernel": (D, E)}, "wv": {"kernel": (D, E)},
                    "wz": {"kernel": (D, S)}, "wo": {"kernel": (E, D)},
                    "q_scale": (S,), "k_scale": (S,)}
  total = sum(math.prod(s) for s in jax.tree.leaves(shapes, is_leaf=lambda t: isinstance(t, tuple)))
  assert total == 3 * D * E + D * S + 2 * S


@pytest.mark.slow
def test_gau_decode_squared_relu_equals_full():
  x = _x(B=2)[:, :6]
  full = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="squared_relu")
  params = full.init(jax.random.key(0), x)["params"]
  want = full.apply({"params": params}, x)
  dec = GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="squared_relu",
                           decode=True)
  cache = dec.init(jax.random.key(0), x)["cache"]
  got = []
  for t in range(6):
    y, upd = dec.apply({"params": params, "cache": cache}, x[:, t:t + 1],
                       positions_BL=jnp.full((2, 1), t), mutable=["cache"])
    cache = upd["cache"]
    got.append(y)
  np.testing.assert_allclose(jnp.concatenate(got, 1), want, rtol=1e-4, atol=1e-5)


def test_gau_bad_inputs():
  x = _x()
  with pytest.raises(ValueError, match="normalization"):
    GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="sigmoid").init(
        jax.random.key(0), x)
  with pytest.raises(ValueError, match="log n"):
    GatedAttentionUnit(expansion_dim=E, key_dim=S,
                       config=AttentionConfig(logn="train")).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="squared_relu"):
    GatedAttentionUnit(expansion_dim=E, key_dim=S, normalization="squared_relu",
                       config=AttentionConfig(position="rerope")).init(jax.random.key(0), x)
