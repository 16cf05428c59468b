"""TransformerLM / TransformerEncoder against a NumPy float64 transcription, plus properties."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax.nn.attention import AttentionConfig
from kexue_jax.nn import transformer as tfm
from tests.helpers import assert_trees_close, float64

V, D, H, DH, F = 13, 8, 2, 4, 16


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), nn.unbox(tree))


def _perturb(params, seed=7, scale=0.3):
  """Make norm scales/biases non-trivial so the reference really checks them."""
  leaves, tdef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(
      tdef, [l + scale * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)])


# ---------------------------------------------------------------- NumPy float64 reference

def np_layernorm(x, scale, bias, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * scale + bias


def np_rmsnorm(x, scale=None, eps=1e-6):
  y = x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps)
  return y if scale is None else y * scale


def np_norm(kind, p, x):
  if kind == "layernorm":
    return np_layernorm(x, p["scale"], p["bias"])
  if kind == "rmsnorm":
    return np_rmsnorm(x, p["scale"])
  return np_rmsnorm(x)


def np_gelu(x):  # flax nn.gelu default: tanh approximation
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def np_swish(x):
  return x / (1 + np.exp(-x))


def rope_matrix(n, d, base=10000.0):
  """Explicit d x d RoPE rotation, rotate-half pairing (p, p + d/2), theta_p = base^(-2p/d)."""
  r = np.zeros((d, d))
  for p in range(d // 2):
    a = n * base ** (-2.0 * p / d)
    i, j = p, p + d // 2
    r[i, i], r[i, j], r[j, i], r[j, j] = np.cos(a), -np.sin(a), np.sin(a), np.cos(a)
  return r


def np_softmax_rows(a, mask):
  a = np.where(mask, a, -np.inf)
  a = a - a.max(-1, keepdims=True)
  e = np.exp(a) * mask
  return e / e.sum(-1, keepdims=True)


def np_mha(p, x_LD, pos_L, causal=True, valid_L=None):
  """Multi-head attention with RoPE by explicit rotation matrices; one sequence."""
  L = x_LD.shape[0]
  q = np.einsum("ld,dhk->lhk", x_LD, p["query"]["kernel"])
  k = np.einsum("ld,dhk->lhk", x_LD, p["key"]["kernel"])
  v = np.einsum("ld,dhk->lhk", x_LD, p["value"]["kernel"])
  dh = q.shape[-1]
  rq = np.stack([np.einsum("ij,hj->hi", rope_matrix(pos_L[i], dh), q[i]) for i in range(L)])
  rk = np.stack([np.einsum("ij,hj->hi", rope_matrix(pos_L[i], dh), k[i]) for i in range(L)])
  out = np.zeros_like(q)
  for h in range(q.shape[1]):
    a = rq[:, h] @ rk[:, h].T / np.sqrt(dh)
    mask = np.ones((L, L), bool)
    if causal:
      mask &= pos_L[:, None] >= pos_L[None, :]
    if valid_L is not None:
      mask &= valid_L[None, :]
    out[:, h] = np_softmax_rows(a, mask) @ v[:, h]
  return np.einsum("lhk,hkd->ld", out, p["out"]["kernel"])


def np_gau(p, x_LD, pos_L, *, normalization="softmax_plus", causal=True, valid_L=None,
           use_bias=False):
  """GAU-α literally: U,V,Z = swish(x W); Q,K = Z*gamma(+beta); RoPE; normalised A; (U*AV) W_o."""
  L = x_LD.shape[0]
  u = np_swish(x_LD @ p["wu"]["kernel"])
  v = np_swish(x_LD @ p["wv"]["kernel"])
  z = np_swish(x_LD @ p["wz"]["kernel"])
  q, k = z * p["q_scale"], z * p["k_scale"]
  if use_bias:
    q, k = q + p["q_offset"], k + p["k_offset"]
  s = q.shape[-1]
  rq = np.stack([rope_matrix(pos_L[i], s) @ q[i] for i in range(L)])
  rk = np.stack([rope_matrix(pos_L[i], s) @ k[i] for i in range(L)])
  a = rq @ rk.T / np.sqrt(s)
  mask = np.ones((L, L), bool)
  if causal:
    mask &= pos_L[:, None] >= pos_L[None, :]
  if valid_L is not None:
    mask &= valid_L[None, :]
  if causal:
    n = pos_L.astype(np.float64) + 1
  else:
    n = np.full(L, mask[0].sum() if valid_L is not None else L, np.float64)
  if normalization == "softmax_plus":
    A = np_softmax_rows(a * (np.log(np.maximum(n, 16)) / np.log(512))[:, None], mask)
  elif normalization == "softmax":
    A = np_softmax_rows(a, mask)
  else:
    A = np.where(mask, np.maximum(a, 0) ** 2, 0) / n[:, None]
  return (u * (A @ v)) @ p["wo"]["kernel"]


def np_lm_one_layer(params, tokens_BL, *, norm, norm_type, block="mha", causal=True):
  """1-layer LM/encoder forward, tied output embedding."""
  E = params["embed"]["embedding"]
  b = params["block0"]
  outs = []
  for tok in tokens_BL:
    pos = np.arange(len(tok))
    x = E[tok]
    if block == "mha":
      attn = lambda h: np_mha(b["attn"], h, pos, causal=causal)
      mlp = lambda h: np_gelu(h @ b["mlp"]["wi"]["kernel"]) @ b["mlp"]["wo"]["kernel"]
      subs = [(attn, "norm_attn"), (mlp, "norm_mlp")]
    else:
      subs = [(lambda h: np_gau(b["gau"], h, pos, causal=causal), "norm_gau")]
    if norm == "pre":
      for f, nm in subs:
        x = x + f(np_norm(norm_type, b.get(nm), x))
      x = np_norm(norm_type, params.get("final_norm"), x)
    else:
      x = np_norm(norm_type, params.get("embed_norm"), x)
      for f, nm in subs:
        x = np_norm(norm_type, b.get(nm), x + f(x))
    outs.append(x @ E.T)
  return np.stack(outs)


def _lm(**kw):
  base = dict(vocab_size=V, num_layers=1, embed_dim=D, num_heads=H, head_dim=DH, mlp_dim=F)
  base.update(kw)
  return tfm.TransformerLM(**base)


def _tokens(B=2, L=6, seed=0):
  return jax.random.randint(jax.random.key(seed), (B, L), 0, V)


# ---------------------------------------------------------------- forward vs reference

@pytest.mark.parametrize("norm,norm_type,block", [
    ("pre", "layernorm", "mha"), ("post", "rmsnorm", "mha"),
    ("post", "rmsnorm_noscale", "gau"), ("pre", "rmsnorm", "gau")])
def test_one_layer_lm_matches_numpy(norm, norm_type, block):
  model = _lm(norm=norm, norm_type=norm_type, block=block)
  tok = _tokens()
  params = _perturb(model.init(jax.random.key(0), tok)["params"])
  got = model.apply({"params": params}, tok)
  assert got.dtype == jnp.float32 and got.shape == (2, 6, V)
  ref = np_lm_one_layer(_np(params), np.asarray(tok), norm=norm, norm_type=norm_type,
                        block=block)
  np.testing.assert_allclose(got, ref, rtol=2e-4, atol=2e-4)


def test_one_layer_encoder_matches_numpy_and_returns_hidden():
  model = tfm.TransformerEncoder(vocab_size=V, num_layers=1, embed_dim=D, num_heads=H,
                                 head_dim=DH, mlp_dim=F, norm="post", norm_type="rmsnorm")
  tok = _tokens()
  params = _perturb(model.init(jax.random.key(0), tok)["params"])
  logits, hidden = model.apply({"params": params}, tok, return_hidden=True)
  ref = np_lm_one_layer(_np(params), np.asarray(tok), norm="post", norm_type="rmsnorm",
                        causal=False)
  np.testing.assert_allclose(logits, ref, rtol=2e-4, atol=2e-4)
  assert hidden.shape == (2, 6, D)
  np.testing.assert_allclose(hidden @ nn.unbox(params)["embed"]["embedding"].T, logits,
                             rtol=1e-5, atol=1e-5)


def test_untied_head():
  model = _lm(tie_embedding=False)
  tok = _tokens()
  variables = model.init(jax.random.key(0), tok)
  assert nn.unbox(variables["params"])["head"]["kernel"].shape == (D, V)
  h = model.apply(variables, tok, method=model.hidden)
  W = nn.unbox(variables["params"])["head"]["kernel"]
  np.testing.assert_allclose(model.apply(variables, tok), h @ W, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- properties

@pytest.mark.parametrize("block", ["mha", pytest.param("gau", marks=pytest.mark.slow)])
def test_causality(block):
  model = _lm(num_layers=2, block=block)
  tok = _tokens(L=8)
  variables = model.init(jax.random.key(0), tok)
  base = model.apply(variables, tok)
  t = 5
  tok2 = tok.at[:, t].set((tok[:, t] + 1) % V)
  new = model.apply(variables, tok2)
  np.testing.assert_allclose(new[:, :t], base[:, :t], rtol=1e-6, atol=1e-6)
  assert not np.allclose(new[:, t:], base[:, t:], atol=1e-4)


@pytest.mark.parametrize("block,norm", [("mha", "pre"), ("gau", "post")])
def test_decode_equals_full_forward(block, norm):
  L = 7
  tok = _tokens(L=L)
  full = _lm(num_layers=2, block=block, norm=norm)
  params = full.init(jax.random.key(0), tok)["params"]
  want = full.apply({"params": params}, tok)
  dec = _lm(num_layers=2, block=block, norm=norm, decode=True)
  cache = dec.init(jax.random.key(0), tok)["cache"]
  step = jax.jit(lambda c, t, p: dec.apply({"params": params, "cache": c}, t,
                                           positions_BL=p, mutable=["cache"]))
  got = []
  for i in range(L):
    logits, upd = step(cache, tok[:, i:i + 1], jnp.full((2, 1), i))
    cache = upd["cache"]
    got.append(logits)
  np.testing.assert_allclose(jnp.concatenate(got, axis=1), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block,dets", [
    ("mha", (False,)),
    pytest.param("gau", (True,), marks=pytest.mark.slow),
    pytest.param("mha", (True,), marks=pytest.mark.slow),
    pytest.param("gau", (False,), marks=pytest.mark.slow)])
def test_remat_matches_no_remat(block, dets):
  """Remat recomputes the same float64 program (in float32 the recomputation may round differently)."""
  with float64():
    tok = _tokens()
    f64 = dict(num_layers=2, block=block, dropout_rate=0.1, dtype=jnp.float64, param_dtype=jnp.float64)
    plain, remat = _lm(**f64), _lm(**f64, remat=True)
    params = plain.init(jax.random.key(0), tok)["params"]
    assert jax.tree.structure(params) == jax.tree.structure(
        remat.init(jax.random.key(0), tok)["params"])

    def loss(p, m, det):
      logits = m.apply({"params": p}, tok, deterministic=det, rngs={"dropout": jax.random.key(3)})
      return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    for det in dets:
      l1, g1 = jax.value_and_grad(loss)(params, plain, det)
      l2, g2 = jax.value_and_grad(loss)(params, remat, det)
      assert all(g.dtype == jnp.float64 for g in jax.tree.leaves(g1))
      assert_trees_close(l2, l1)
      assert_trees_close(g2, g1, scale="tree")  # a gradient that is 0 in exact arithmetic is rounding noise


def test_dropout_active_only_when_not_deterministic():
  model = _lm(dropout_rate=0.5)
  tok = _tokens()
  variables = model.init(jax.random.key(0), tok)
  det = model.apply(variables, tok)
  np.testing.assert_array_equal(det, model.apply(variables, tok, deterministic=True))
  drop = model.apply(variables, tok, deterministic=False, rngs={"dropout": jax.random.key(1)})
  assert not np.allclose(drop, det, atol=1e-3)


def test_bfloat16_compute_gives_float32_logits():
  tok = _tokens()
  f32 = _lm(num_layers=2)
  bf16 = _lm(num_layers=2, dtype=jnp.bfloat16)
  params = f32.init(jax.random.key(0), tok)["params"]
  a = f32.apply({"params": params}, tok)
  b = bf16.apply({"params": params}, tok)
  assert b.dtype == jnp.float32
  np.testing.assert_allclose(b, a, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("cls,block,norm", [
    (tfm.TransformerEncoder, "mha", "pre"), (tfm.TransformerEncoder, "gau", "post"),
    pytest.param(tfm.TransformerLM, "mha", "post", marks=pytest.mark.slow),
    pytest.param(tfm.TransformerLM, "gau", "pre", marks=pytest.mark.slow)])
def test_dropping_tokens_equals_masking_them(cls, block, norm):
  """Gather kept tokens with their positions == all tokens with padding_mask False at dropped."""
  B, L, keep_n = 2, 8, 5
  model = cls(vocab_size=V, num_layers=2, embed_dim=D, num_heads=H, head_dim=DH, mlp_dim=F,
              block=block, norm=norm)
  tok = _tokens(B=B, L=L)
  variables = model.init(jax.random.key(0), tok)
  keep_idx = np.stack([np.sort(np.random.RandomState(i).choice(L, keep_n, replace=False))
                       for i in range(B)])
  keep = np.zeros((B, L), bool)
  keep[np.arange(B)[:, None], keep_idx] = True
  masked = model.apply(variables, tok, padding_mask_BL=jnp.asarray(keep))
  dropped = model.apply(variables, jnp.take_along_axis(tok, jnp.asarray(keep_idx), 1),
                        positions_BL=jnp.asarray(keep_idx))
  np.testing.assert_allclose(
      dropped, np.take_along_axis(np.asarray(masked), keep_idx[..., None], 1),
      rtol=1e-5, atol=1e-5)


def test_per_layer_attention_and_bad_inputs():
  tok = _tokens()
  cfgs = (AttentionConfig(), AttentionConfig(position="none"))
  model = _lm(num_layers=2, attention=cfgs)
  out = model.apply(model.init(jax.random.key(0), tok), tok)
  assert out.shape == (2, 6, V)
  with pytest.raises(ValueError, match="per-layer attention"):
    _lm(num_layers=3, attention=cfgs).init(jax.random.key(0), tok)
  with pytest.raises(ValueError, match="norm placement"):
    _lm(norm="sandwich").init(jax.random.key(0), tok)
  with pytest.raises(ValueError, match="block"):
    _lm(block="rnn").init(jax.random.key(0), tok)
  with pytest.raises(ValueError, match="norm_type"):
    _lm(norm_type="batchnorm").init(jax.random.key(0), tok)


@pytest.mark.slow
def test_per_layer_attention_changes_only_that_layer():
  """Layer 1 set to NoPE: equals a model whose second layer ignores positions (shift test)."""
  tok = _tokens(L=6)
  nope_all = _lm(num_layers=2, attention=AttentionConfig(position="none"))
  params = nope_all.init(jax.random.key(0), tok)["params"]
  shifted = jnp.broadcast_to(jnp.arange(6) + 3, (2, 6))
  # NoPE everywhere: absolute positions do not matter at all.
  np.testing.assert_allclose(nope_all.apply({"params": params}, tok),
                             nope_all.apply({"params": params}, tok, positions_BL=shifted),
                             rtol=1e-5, atol=1e-5)
  # RoPE in layer 0 only: relative, so a uniform shift still changes nothing,
  # but a non-uniform re-spacing does.
  mixed = _lm(num_layers=2, attention=(AttentionConfig(), AttentionConfig(position="none")))
  base = mixed.apply({"params": params}, tok)
  np.testing.assert_allclose(mixed.apply({"params": params}, tok, positions_BL=shifted), base,
                             rtol=1e-4, atol=1e-4)
  spread = jnp.broadcast_to(jnp.arange(6) * 2, (2, 6))
  assert not np.allclose(mixed.apply({"params": params}, tok, positions_BL=spread), base,
                         atol=1e-4)


def test_hwfa_configs():
  cfgs = tfm.hwfa_attention(4, window=3, train_length=16)
  assert len(cfgs) == 4
  for c in cfgs[:3]:
    assert (c.position, c.window, c.logn) == ("rope", 3, "none")
  last = cfgs[-1]
  assert (last.position, last.window, last.logn, last.logn_base_length) == (
      "none", None, "train", 16)
  rr = tfm.hwfa_attention(4, window=3, train_length=16, final_rerope=True)[-1]
  assert (rr.position, rr.window, rr.rerope_window, rr.logn) == ("rerope", None, 8, "train")
  h2 = tfm.hwfa2_attention(6, window=4, train_length=16, num_full=2, rerope=True)
  assert [c.position for c in h2] == ["rope", "rope", "rerope", "rope", "rerope", "rope"]
  assert [c.window for c in h2] == [4, 4, None, 4, None, 4]
  # Su's rule (w-1)(L-1)+1 <= 3/4 N, checked by brute force.
  for L_, N in [(24, 512), (4, 16), (12, 128)]:
    w = tfm.hwfa_window(L_, N)
    assert (w - 1) * (L_ - 1) + 1 <= 0.75 * N < w * (L_ - 1) + 1
  model = _lm(num_layers=4, attention=cfgs, norm="post", block="gau",
              norm_type="rmsnorm_noscale", gau_normalization="softmax")
  tok = _tokens(L=10)
  assert model.apply(model.init(jax.random.key(0), tok), tok).shape == (2, 10, V)


def _assert_all_partitioned(params):
  leaves = jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  for leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), f"unannotated parameter {leaf.shape}"
    assert len(leaf.names) == leaf.value.ndim


def test_every_parameter_has_logical_axis_names():
  tok = _tokens()
  for kw in (dict(block="mha", tie_embedding=False, norm_type="layernorm"),
             dict(block="gau", norm="post", norm_type="rmsnorm")):
    shapes = jax.eval_shape(lambda: _lm(**kw).init(jax.random.key(0), tok))
    _assert_all_partitioned(shapes["params"])


@pytest.mark.slow
@pytest.mark.parametrize("block,final_rerope", [("mha", True), ("gau", False)])
def test_hwfa_decode_equals_full_forward(block, final_rerope):
  """Window layers, a NoPE/log-n or ReRoPE full layer: cached decoding == parallel pass."""
  L = 10
  tok = _tokens(L=L)
  kw = dict(num_layers=3, block=block, gau_normalization="softmax",
            attention=tfm.hwfa_attention(3, 3, 8, final_rerope=final_rerope, rerope_window=4))
  full = _lm(**kw)
  params = full.init(jax.random.key(0), tok)["params"]
  want = full.apply({"params": params}, tok)
  dec = _lm(decode=True, **kw)
  cache = dec.init(jax.random.key(0), tok)["cache"]
  got = []
  for i in range(L):
    logits, upd = dec.apply({"params": params, "cache": cache}, tok[:, i:i + 1],
                            positions_BL=jnp.full((2, 1), i), mutable=["cache"])
    cache = upd["cache"]
    got.append(logits)
  np.testing.assert_allclose(jnp.concatenate(got, axis=1), want, rtol=1e-4, atol=1e-4)


def test_initialiser_statistics():
  """True std of the truncated-normal initialisers is gain / sqrt(fan) (truncation corrected)."""
  from kexue_jax.nn import layers
  gain = layers.depth_gain(24, 3)
  assert gain == pytest.approx(24 ** (-1 / 3))
  w = np.asarray(layers.kernel_init(gain)(jax.random.key(0), (256, 512)))
  np.testing.assert_allclose(w.std(), gain / 16.0, rtol=0.02)
  e = np.asarray(layers.embed_init(64, gain)(jax.random.key(1), (1000, 64)))
  np.testing.assert_allclose(e.std(), gain / 8.0, rtol=0.02)
  assert np.abs(e).max() <= 2 * gain / 8.0 / 0.8796 + 1e-6   # truncated at 2 sigma


def test_depth_gain_reaches_the_attention_projections():
  """With init_order set, q/k/v/out kernels get true std gain/sqrt(fan_in), fan_in = the contracted dims
  (embed for q/k/v, heads*kv for out), like the MLP; gain 1 (the default) is LeCun."""
  from kexue_jax.nn import layers
  def kernels(init_order):
    model = tfm.TransformerLM(vocab_size=64, num_layers=8, embed_dim=256, num_heads=4, head_dim=64,
                              mlp_dim=512, init_order=init_order)
    params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
    attn = nn.unbox(params)["block0"]["attn"]
    return {k: np.asarray(attn[k]["kernel"]) for k in ("query", "key", "value", "out")}
  for order in (None, 2):
    gain = layers.depth_gain(8, order)
    for name, w in kernels(order).items():
      fan_in = 256 if name != "out" else 4 * 64
      np.testing.assert_allclose(w.std(), gain / np.sqrt(fan_in), rtol=0.03, err_msg=f"{name} {order}")
  assert layers.depth_gain(8, 2) == pytest.approx(8 ** -0.5)
