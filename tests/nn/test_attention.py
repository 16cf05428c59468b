"""attention.py against the literal NumPy float64 reference, plus properties."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax.nn import attention as A
from kexue_jax.nn.positions import RopeScaling
from tests import reference_np as ref

ATOL = RTOL = 1e-5
C = A.AttentionConfig
_jit_attend = jax.jit(A.attend, static_argnames=("config",))


# Every position method / scaling / mask / norm, each checked against ref.attention.
CASES = {
    "rope": C(),
    "rope_interleaved": C(rope_convention="interleaved"),
    "rope_partial": C(rotary_fraction=0.5, rope_base=100.0),
    "rope_bidirectional": C(causal=False),
    "none": C(position="none"),
    "alibi": C(position="alibi"),
    "alibi_bidirectional": C(position="alibi", causal=False),
    "xpos": C(position="xpos", xpos_scale_base=8.0),
    "rerope": C(position="rerope", rerope_window=3),
    "rerope_interleaved_partial": C(position="rerope", rerope_window=2,
                                    rope_convention="interleaved", rotary_fraction=0.5),
    "rerope_bidirectional": C(position="rerope", rerope_window=2, causal=False),
    "leaky_rerope": C(position="leaky_rerope", rerope_window=3, leaky_k=4.0),
    "leaky_bidirectional": C(position="leaky_rerope", rerope_window=2, leaky_k=3.0,
                             causal=False),
    "inverse_leaky": C(position="leaky_rerope", rerope_window=2, leaky_k=0.25),
    "pi": C(scaling=RopeScaling("pi", 4.0)),
    "ntk_old": C(scaling=RopeScaling("ntk_old", 8.0)),
    "ntk_aware": C(scaling=RopeScaling("ntk_aware", 8.0)),
    "ntk_fixed": C(scaling=RopeScaling("ntk_fixed", 8.0)),
    "ntk_mixed": C(scaling=RopeScaling("ntk_mixed", 8.0, mixed_b=0.625)),
    "dynamic_ntk": C(scaling=RopeScaling("dynamic_ntk", 2.0, train_length=4)),
    "yarn": C(scaling=RopeScaling("yarn", 8.0, train_length=16)),
    "rerope_ntk_mixed": C(position="rerope", rerope_window=3,
                          scaling=RopeScaling("ntk_mixed", 4.0, mixed_b=0.75)),
    "logn_train": C(logn="train", logn_base_length=4),
    "logn_retrofit": C(logn="retrofit", logn_base_length=3),
    "logn_bidirectional": C(logn="train", logn_base_length=4, causal=False),
    "rerope_logn": C(position="rerope", rerope_window=3, logn="retrofit", logn_base_length=4),
    "hwfa_full_layer": C(position="none", logn="train", logn_base_length=4),
    "kna": C(qk_norm="kna"),
    "qna": C(qk_norm="qna"),
    "cosa": C(qk_norm="cosa", logn_base_length=8),
    "cosa_logn": C(qk_norm="cosa", logn="train", logn_base_length=8),
    "window": C(window=3),
    "window_bidirectional": C(window=2, causal=False),
    "lambda_mask": C(window=2, lambda_first_tokens=2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_attend_matches_reference(name, qkv):
  cfg = CASES[name]
  q, k, v = qkv(hash(name) % 1000)
  B, L = q.shape[:2]
  # Gapped, per-row positions (as after dropping tokens) and key padding.
  rng = np.random.default_rng(1)
  pos = np.cumsum(rng.integers(1, 3, size=(B, L)), axis=1).astype(np.float32) - 1.0
  valid = np.ones((B, L), bool)
  valid[1, -2:] = False
  got = A.attend(q, k, v, config=cfg, q_positions_BL=pos, k_positions_BS=pos, k_valid_BS=valid)
  want = ref.attention(q, k, v, cfg, pos, pos, k_valid=valid)
  np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("position", ["rope2d", "rope_tie"])
def test_attend_2d_matches_reference(position, qkv):
  cfg = C(position=position, causal=False)
  q, k, v = qkv(3, L=6)
  grid = np.array([(y, x) for y in range(2) for x in range(3)], np.float32)  # 2x3 image
  pos = np.stack([grid, grid + 5.0])
  got = A.attend(q, k, v, config=cfg, q_positions_BL=pos, k_positions_BS=pos)
  want = ref.attention(q, k, v, cfg, pos, pos)
  np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=RTOL)


def test_fully_masked_query_returns_zeros(qkv):
  q, k, v = qkv(0, B=1, L=3)
  valid = np.array([[False, True, True]])
  out = A.attend(q, k, v, config=C(), k_valid_BS=valid)   # query 0 sees only key 0
  np.testing.assert_array_equal(np.asarray(out[0, 0]), 0.0)
  assert np.all(np.isfinite(np.asarray(out)))


# ----------------------------------------------------------------------------
# Reductions to plain RoPE / full attention.

@pytest.mark.parametrize("cfg", [
    C(position="rerope", rerope_window=7),
    C(position="rerope", rerope_window=100, causal=False),
    C(position="leaky_rerope", rerope_window=2, leaky_k=1.0),
    C(position="leaky_rerope", rerope_window=2, leaky_k=1.0, causal=False),
    C(scaling=RopeScaling("pi", 1.0)),
    C(scaling=RopeScaling("ntk_old", 1.0)),
    C(scaling=RopeScaling("ntk_aware", 1.0)),
    C(scaling=RopeScaling("ntk_fixed", 1.0)),
    C(scaling=RopeScaling("ntk_mixed", 1.0)),
    C(scaling=RopeScaling("yarn", 1.0, train_length=16)),
    C(scaling=RopeScaling("dynamic_ntk", 4.0, train_length=64)),   # L <= L_train
    C(window=7),
    C(window=3, lambda_first_tokens=7),
    C(logn="retrofit", logn_base_length=64),                       # n <= L_train
], ids=lambda c: repr(c)[16:90])
def test_reduces_to_plain_rope(cfg, qkv):
  q, k, v = qkv(5)
  plain = A.attend(q, k, v, config=C(causal=cfg.causal))
  got = A.attend(q, k, v, config=cfg)
  np.testing.assert_allclose(np.asarray(got), np.asarray(plain), atol=ATOL, rtol=RTOL)


def test_rerope_relative_form_equals_two_matrix(qkv):
  q, k, v = qkv(7, L=9)
  for base in (C(position="rerope", rerope_window=3),
               C(position="leaky_rerope", rerope_window=3, leaky_k=4.0, causal=False),
               C(position="leaky_rerope", rerope_window=2, leaky_k=0.5,
                 rope_convention="interleaved")):
    two = _jit_attend(q, k, v, config=dataclasses.replace(base, rerope_impl="two_matrix"))
    rel = _jit_attend(q, k, v, config=dataclasses.replace(base, rerope_impl="relative"))
    np.testing.assert_allclose(np.asarray(rel), np.asarray(two), atol=ATOL, rtol=RTOL)


def test_dropped_tokens_equal_masked_columns(qkv):
  """Removing tokens but keeping their positions == masking their key columns."""
  q, k, v = qkv(11, B=1, L=8)
  keep = np.array([0, 1, 3, 4, 6, 7])
  pos = np.arange(8, dtype=np.float32)[None]
  for cfg in (C(), C(position="rerope", rerope_window=2), C(window=3),
              C(position="alibi"), C(logn="train", logn_base_length=4)):
    valid = np.isin(np.arange(8), keep)[None]
    masked = _jit_attend(q, k, v, config=cfg, q_positions_BL=pos, k_positions_BS=pos,
                         k_valid_BS=valid)
    dropped = _jit_attend(q[:, keep], k[:, keep], v[:, keep], config=cfg,
                          q_positions_BL=pos[:, keep], k_positions_BS=pos[:, keep])
    np.testing.assert_allclose(np.asarray(dropped), np.asarray(masked)[:, keep],
                               atol=ATOL, rtol=RTOL)


def test_dropout_on_probabilities(qkv):
  q, k, v = qkv(2)
  v1 = np.ones_like(v)
  full = A.attend(q, k, v1, config=C())
  np.testing.assert_allclose(np.asarray(full), 1.0, atol=1e-6)   # rows of P sum to 1
  drop = np.asarray(A.attend(q, k, v1, config=C(), dropout_rng=jax.random.key(0),
                             dropout_rate=0.5))
  assert not np.allclose(drop, 1.0)
  # Inverted dropout on P: each row sum is (sum of kept p) / (1 - rate) >= 0.
  assert np.all(drop >= 0.0) and np.all(np.isfinite(drop))
  same = A.attend(q, k, v, config=C(), dropout_rng=jax.random.key(0), dropout_rate=0.0)
  np.testing.assert_allclose(np.asarray(same), np.asarray(A.attend(q, k, v, config=C())))


# ----------------------------------------------------------------------------
# Module: params, logical axes, cached decoding.

def test_module_params_and_logical_axes():
  m = A.MultiHeadAttention(num_heads=2, head_dim=4, use_bias=True)
  variables = m.init(jax.random.key(0), jnp.ones((1, 3, 6)))
  params = variables["params"]
  assert params["query"]["kernel"].names == ("embed", "heads", "kv")
  assert params["key"]["kernel"].value.shape == (6, 2, 4)
  assert params["out"]["kernel"].names == ("heads", "kv", "embed")
  assert params["query"]["bias"].names == ("heads", "kv")


DECODE_CASES = [
    C(), C(rope_convention="interleaved", rotary_fraction=0.5), C(position="none"),
    C(position="alibi"), C(position="xpos"),
    C(position="rerope", rerope_window=3), C(position="leaky_rerope", rerope_window=2, leaky_k=4.0),
    C(position="leaky_rerope", rerope_window=2, leaky_k=0.25),
    C(scaling=RopeScaling("ntk_mixed", 4.0)), C(scaling=RopeScaling("yarn", 4.0, train_length=8)),
    C(scaling=RopeScaling("dynamic_ntk", 2.0, train_length=4)),
    C(logn="retrofit", logn_base_length=3), C(qk_norm="kna"), C(qk_norm="cosa", logn="train"),
    C(window=3), C(window=2, lambda_first_tokens=1),
]


@pytest.fixture(scope="module")
def decode_setup():
  B, L, Dm = 2, 7, 12
  x = jax.random.normal(jax.random.key(3), (B, L, Dm))
  params = jax.jit(A.MultiHeadAttention(num_heads=2, head_dim=8).init)(
      jax.random.key(0), x)["params"]       # parameter shapes do not depend on the config
  return x, params


def _decode_all(cfg, params, x, **per_token):
  """Decode x token by token through the cache (jitted step); returns (B, L, D)."""
  dec = A.MultiHeadAttention(num_heads=params["query"]["kernel"].value.shape[1],
                             head_dim=params["query"]["kernel"].value.shape[2],
                             config=cfg, decode=True)
  first = {k: v for k, v in per_token.items()}
  cache = jax.jit(lambda x: dec.apply({"params": params}, x, mutable=["cache"],
                                      **first)[1]["cache"])(x)
  step = jax.jit(lambda cache, x_t, kw: dec.apply(
      {"params": params, "cache": cache}, x_t, mutable=["cache"], **kw))
  outs = []
  for t in range(x.shape[1]):
    y, mut = step(cache, x[:, t:t + 1], {k: v[:, t:t + 1] for k, v in per_token.items()})
    cache = mut["cache"]
    outs.append(y)
  return jnp.concatenate(outs, axis=1)


@pytest.mark.parametrize("cfg", DECODE_CASES, ids=lambda c: repr(c)[16:90])
def test_decode_equals_prefill(cfg, decode_setup):
  """Token-by-token cached decoding == one parallel pass, batch 2, ragged rows."""
  x, params = decode_setup
  valid = np.ones(x.shape[:2], bool)
  valid[1, 4:] = False                                  # row 1 has 4 real tokens
  model = A.MultiHeadAttention(num_heads=2, head_dim=8, config=cfg)
  prefill = jax.jit(model.apply)({"params": params}, x, padding_mask_BL=valid)
  decoded = _decode_all(cfg, params, x, padding_mask_BL=valid)
  np.testing.assert_allclose(np.asarray(decoded)[valid], np.asarray(prefill)[valid],
                             atol=ATOL, rtol=RTOL)


def test_decode_chunked_prefill_then_steps(decode_setup):
  """A 4-token chunk written into the cache at once, then single steps."""
  x, params = decode_setup
  cfg = C(position="rerope", rerope_window=2)
  full = jax.jit(A.MultiHeadAttention(2, 8, cfg).apply)({"params": params}, x)
  dec = A.MultiHeadAttention(2, 8, cfg, decode=True)
  apply = jax.jit(lambda c, x: dec.apply({"params": params, "cache": c}, x, mutable=["cache"]))
  cache = jax.jit(lambda x: dec.apply({"params": params}, x, mutable=["cache"])[1]["cache"])(x)
  y1, mut = apply(cache, x[:, :4])
  y2, _ = apply(mut["cache"], x[:, 4:5])
  np.testing.assert_allclose(np.asarray(y1), np.asarray(full[:, :4]), atol=ATOL, rtol=RTOL)
  np.testing.assert_allclose(np.asarray(y2), np.asarray(full[:, 4:5]), atol=ATOL, rtol=RTOL)


# ----------------------------------------------------------------------------
# Errors.

@pytest.mark.parametrize("kwargs, match", [
    (dict(position="sinusoid"), "Unknown position method"),
    (dict(window=0), "window must be >= 1"),
    (dict(lambda_first_tokens=4), "needs a sliding window"),
    (dict(qk_norm="layernorm"), "Unknown qk_norm"),
    (dict(logn="always"), "Unknown logn"),
    (dict(leaky_k=0.0), "leaky_k must be > 0"),
    (dict(rope_convention="neox"), "Unknown rope_convention"),
    (dict(impl="flash"), "Unknown impl"),
])
def test_config_errors(kwargs, match):
  with pytest.raises(ValueError, match=match):
    C(**kwargs)


def test_odd_head_dim_error(qkv):
  q, k, v = qkv(0, D=5)
  with pytest.raises(ValueError, match="even number"):
    A.attend(q, k, v, config=C())


def test_2d_needs_positions(qkv):
  with pytest.raises(ValueError, match=r"\(B, L, 2\)"):
    A.attend(*qkv(0), config=C(position="rope2d"))


# ----------------------------------------------------------------------------
# Blockwise ReRoPE == two-matrix ReRoPE.

BLOCKWISE_CASES = [
    # (B, L, H, D, window, block, causal, position, leaky_k, logn)
    (2, 37, 2, 8, 5, 8, True, "rerope", 16.0, "none"),
    (1, 50, 3, 16, 7, 16, False, "leaky_rerope", 4.0, "none"),
    pytest.param((2, 64, 1, 8, 64, 16, True, "rerope", 16.0, "retrofit"),   # w >= n
                 marks=pytest.mark.slow),
    pytest.param((2, 33, 2, 8, 3, 4, False, "rerope", 16.0, "train"), marks=pytest.mark.slow),
    (1, 40, 2, 8, 6, 8, True, "leaky_rerope", 0.25, "none"),     # inverse-Leaky
    pytest.param((3, 29, 2, 12, 9, 32, True, "rerope", 16.0, "none"),       # one block > n
                 marks=pytest.mark.slow),
]


@pytest.mark.parametrize("case", BLOCKWISE_CASES, ids=str)
def test_blockwise_equals_two_matrix(case, qkv):
  B, L, H, D, w, blk, causal, position, leak, logn = case
  q, k, v = qkv(L, B=B, L=L, H=H, D=D)
  rng = np.random.default_rng(L)
  valid = rng.random((B, L)) > 0.2
  valid[:, 0] = True
  pos = np.cumsum(rng.integers(1, 3, size=(B, L)), axis=1).astype(np.float32)  # gapped
  cfg = C(position=position, rerope_window=w, leaky_k=leak, causal=causal, block_size=blk,
          logn=logn, logn_base_length=8)
  kw = dict(q_positions_BL=pos, k_positions_BS=pos, k_valid_BS=valid)
  two = _jit_attend(q, k, v, config=dataclasses.replace(cfg, rerope_impl="two_matrix"), **kw)
  blockwise = _jit_attend(q, k, v, config=dataclasses.replace(cfg, rerope_impl="blockwise"), **kw)
  np.testing.assert_allclose(np.asarray(blockwise), np.asarray(two), atol=1e-5, rtol=1e-5)
  if L < 30:   # the two-matrix form itself is checked against ref.attention above
    want = ref.attention(q, k, v, cfg, pos, pos, k_valid=valid)
    np.testing.assert_allclose(np.asarray(blockwise), want, atol=ATOL, rtol=RTOL)


def test_blockwise_rejects_unsupported_inputs(qkv):
  cfg = C(position="rerope", rerope_window=2, rerope_impl="blockwise")
  with pytest.raises(ValueError, match="blockwise"):
    A.attend(*qkv(0), config=cfg, mask_BLS=np.ones((2, 7, 7), bool))
  with pytest.raises(ValueError, match="blockwise"):
    A.attend(*qkv(0), config=C(position="alibi", impl="blockwise"))


@pytest.mark.parametrize("position", ["rope2d", "rope_tie"])
def test_decode_equals_prefill_2d_positions(position):
  """Mixed text + image sequence (RoPE-Tie layout), decoded token by token."""
  from kexue_jax.nn.positions import rope_tie_positions
  cfg = C(position=position)
  pos = rope_tie_positions([("text", 2), ("image", 2, 2), ("text", 2)])     # (8, 2)
  pos_B = np.stack([pos, pos + 3.0])
  x = jax.random.normal(jax.random.key(8), (2, 8, 8))
  model = A.MultiHeadAttention(num_heads=1, head_dim=8, config=cfg)
  params = jax.jit(model.init)(jax.random.key(0), x, positions_BL=pos_B)["params"]
  prefill = jax.jit(model.apply)({"params": params}, x, positions_BL=pos_B)
  decoded = _decode_all(cfg, params, x, positions_BL=pos_B)
  np.testing.assert_allclose(np.asarray(decoded), np.asarray(prefill), atol=ATOL, rtol=RTOL)


def test_segment_ids_equal_separate_sequences():
  """Packing two documents with restarted positions == running them apart."""
  x = jax.random.normal(jax.random.key(9), (1, 8, 8))
  seg = np.array([[0, 0, 0, 0, 1, 1, 1, 1]])
  pos = np.array([[0, 1, 2, 3, 0, 1, 2, 3]])
  params = jax.jit(A.MultiHeadAttention(2, 4).init)(jax.random.key(0), x)
  for cfg in (C(), C(position="rerope", rerope_window=2), C(logn="train", logn_base_length=4)):
    apply = jax.jit(A.MultiHeadAttention(2, 4, cfg).apply)
    packed = apply(params, x, positions_BL=pos, segment_ids_BL=seg)
    first = apply(params, x[:, :4])
    second = apply(params, x[:, 4:])
    np.testing.assert_allclose(np.asarray(packed),
                               np.asarray(jnp.concatenate([first, second], 1)),
                               atol=ATOL, rtol=RTOL)


def test_module_blockwise_equals_two_matrix():
  x = jax.random.normal(jax.random.key(10), (2, 21, 8))
  base = C(position="leaky_rerope", rerope_window=4, leaky_k=8.0, block_size=8)
  m = A.MultiHeadAttention(2, 4, base)
  params = jax.jit(m.init)(jax.random.key(0), x)
  two = jax.jit(m.apply)(params, x)
  blockwise = A.MultiHeadAttention(2, 4, dataclasses.replace(base, rerope_impl="blockwise"),
                                   dropout_rate=0.1)   # deterministic: dropout is off
  np.testing.assert_allclose(np.asarray(jax.jit(blockwise.apply)(params, x)), np.asarray(two),
                             atol=ATOL, rtol=RTOL)


@pytest.mark.slow
def test_blockwise_gradients_equal_two_matrix(qkv):
  """Training with inverse-Leaky ReRoPE (k = 1/16) can use the blockwise path."""
  q, k, v = (jnp.asarray(a) for a in qkv(12, L=37))
  cfg = C(position="leaky_rerope", rerope_window=5, leaky_k=1 / 16, block_size=8)
  def grads(impl):
    loss = lambda q, k, v: jnp.sum(jnp.sin(A.attend(
        q, k, v, config=dataclasses.replace(cfg, rerope_impl=impl))))
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(grads("two_matrix"), grads("blockwise")):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg", [
    pytest.param(C(causal=False), marks=pytest.mark.slow),
    pytest.param(C(position="none", logn="train", logn_base_length=8), marks=pytest.mark.slow),
    C(window=6, lambda_first_tokens=3),
    C(position="leaky_rerope", rerope_window=3, leaky_k=4.0, window=9, causal=False),
], ids=lambda c: repr(c)[16:90])
def test_impl_blockwise_equals_dense(cfg, qkv):
  """The tiled path (skipping causal and out-of-window tiles) == dense attention."""
  q, k, v = qkv(13, L=45)
  rng = np.random.default_rng(13)
  valid = rng.random((2, 45)) > 0.2
  valid[:, 0] = True
  pos = np.cumsum(rng.integers(1, 3, size=(2, 45)), axis=1).astype(np.float32)
  kw = dict(q_positions_BL=pos, k_positions_BS=pos, k_valid_BS=valid)
  cfg = dataclasses.replace(cfg, block_size=8)
  dense = _jit_attend(q, k, v, config=cfg, **kw)
  tiled = _jit_attend(q, k, v, config=dataclasses.replace(cfg, impl="blockwise"), **kw)
  np.testing.assert_allclose(np.asarray(tiled), np.asarray(dense), atol=1e-5, rtol=1e-5)
