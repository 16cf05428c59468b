"""positions.py against explicit rotation matrices (NumPy float64) and properties."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax.nn import positions as P
from tests import reference_np as ref

ATOL = RTOL = 1e-5


def _x(seed, B=2, L=5, H=3, D=8):
  return np.random.default_rng(seed).normal(size=(B, L, H, D)).astype(np.float32)


def _explicit_rope(x, pos, theta, convention):
  B, L, H, D = x.shape
  out = np.zeros(x.shape)
  for b in range(B):
    for i in range(L):
      R = ref.rope_matrix(float(pos[b, i]), D, theta, convention)
      for h in range(H):
        out[b, i, h] = R @ x[b, i, h].astype(np.float64)
  return out


@pytest.mark.parametrize("convention", P.CONVENTIONS)
@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_apply_rope_equals_explicit_rotation(convention, fraction):
  x = _x(0)
  pos = np.array([[0, 1, 2, 7, 30], [3.5, 4.25, 100, 101, 2000]], np.float32)  # float + gaps
  got = P.apply_rope(x, pos, base=500.0, rotary_fraction=fraction, convention=convention)
  rot = int(8 * fraction)
  want = _explicit_rope(x, pos, ref.frequencies(rot, 500.0), convention)
  np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=RTOL)  # angles up to 2000 rad
  assert got.dtype == x.dtype


def test_apply_rope_keeps_bf16_dtype():
  x = jnp.asarray(_x(1), jnp.bfloat16)
  assert P.apply_rope(x, np.arange(5)).dtype == jnp.bfloat16


SCALINGS = [
    P.RopeScaling("pi", 8.0), P.RopeScaling("ntk_old", 8.0), P.RopeScaling("ntk_aware", 8.0),
    P.RopeScaling("ntk_fixed", 8.0), P.RopeScaling("ntk_mixed", 8.0, mixed_b=0.625),
    P.RopeScaling("ntk_mixed", 12.0, mixed_b=0.75), P.RopeScaling("yarn", 8.0, train_length=64),
    P.RopeScaling("yarn", 4.0, train_length=512, yarn_alpha=2.0, yarn_beta=16.0),
    P.RopeScaling("dynamic_ntk", 1.0, train_length=128),
]


@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: f"{s.kind}-{s.factor}")
@pytest.mark.parametrize("d", [16, 64])
def test_frequencies_match_beta_base_formulas(scaling, d):
  got = np.asarray(P.rope_inv_freq(d, base=10000.0, scaling=scaling, length=1000))
  want = ref.frequencies(d, 10000.0, scaling, length=1000)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)


def test_frequency_scaling_identities():
  d = 32
  plain = ref.frequencies(d)
  f = lambda **kw: np.asarray(P.rope_inv_freq(d, scaling=P.RopeScaling(**kw), length=64))
  # Mixed radix: b = 1 is NTK-fixed, b = 0 is PI (kexue.fm/archives/9706).
  np.testing.assert_allclose(f(kind="ntk_mixed", factor=8.0, mixed_b=1.0),
                             f(kind="ntk_fixed", factor=8.0), rtol=1e-6)
  np.testing.assert_allclose(f(kind="ntk_mixed", factor=8.0, mixed_b=0.0), plain / 8, rtol=1e-6)
  # All NTK forms leave the highest frequency alone except fixed/mixed (theta_1 / lambda_1).
  assert f(kind="ntk_old", factor=8.0)[0] == 1.0 and f(kind="ntk_aware", factor=8.0)[0] == 1.0
  # bloc97's form makes the lowest frequency exactly the PI one.
  np.testing.assert_allclose(f(kind="ntk_aware", factor=8.0)[-1], plain[-1] / 8, rtol=1e-5)
  # NTK-fixed / mixed also interpolate the lowest frequency by exactly k.
  np.testing.assert_allclose(f(kind="ntk_fixed", factor=8.0)[-1], plain[-1] / 8, rtol=1e-5)
  np.testing.assert_allclose(f(kind="ntk_mixed", factor=8.0)[-1], plain[-1] / 8, rtol=1e-5)
  # Factor 1 is the identity for every kind; dynamic NTK is the identity for L <= L_train.
  for kind in ("pi", "ntk_old", "ntk_aware", "ntk_fixed", "ntk_mixed", "yarn"):
    np.testing.assert_allclose(f(kind=kind, factor=1.0, train_length=64), plain, rtol=1e-6)
  np.testing.assert_allclose(f(kind="dynamic_ntk", factor=4.0, train_length=64), plain, rtol=1e-6)
  # YaRN: fast dims (r > beta) untouched, slow dims (r < alpha) fully interpolated.
  y = f(kind="yarn", factor=8.0, train_length=64)
  r = 64 * plain / (2 * math.pi)
  np.testing.assert_allclose(y[r > 32], plain[r > 32], rtol=1e-6)
  np.testing.assert_allclose(y[r < 1], plain[r < 1] / 8, rtol=1e-6)


def test_yarn_attention_factor():
  s = P.RopeScaling("yarn", 8.0, train_length=64)
  assert P.yarn_attention_factor(s) == pytest.approx((0.1 * math.log(8.0) + 1) ** 2)
  assert P.yarn_attention_factor(P.RopeScaling("ntk_old", 8.0)) == 1.0
  assert P.yarn_attention_factor(None) == 1.0


@pytest.mark.parametrize("convention", P.CONVENTIONS)
def test_rope_scores_depend_only_on_offset(convention):
  """<R_m q, R_n k> = q^T R_{n-m} k: shifting both positions changes nothing."""
  x = _x(2, B=1, L=2, H=1, D=16)
  q, k = x[:, :1], x[:, 1:]
  def score(m, n):
    qm = P.apply_rope(q, np.array([[m]], np.float32), convention=convention)
    kn = P.apply_rope(k, np.array([[n]], np.float32), convention=convention)
    return float(jnp.sum(qm * kn))
  base_score = score(3.0, 1.0)
  for c in (1.0, 17.0, 250.0, 1000.0):
    assert score(3.0 + c, 1.0 + c) == pytest.approx(base_score, abs=1e-3)
  theta = ref.frequencies(16)
  want = q[0, 0, 0] @ ref.rope_matrix(1.0 - 3.0, 16, theta, convention) @ k[0, 0, 0]
  assert base_score == pytest.approx(want, abs=1e-5)


def test_rope_is_orthogonal_and_identity_at_zero():
  x = _x(3)
  np.testing.assert_allclose(np.asarray(P.apply_rope(x, np.zeros((2, 5)))), x, atol=1e-7)
  rotated = np.asarray(P.apply_rope(x, np.arange(5) * 13.0))
  np.testing.assert_allclose(np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1),
                             rtol=1e-5)


def test_convention_bridge_permutation():
  """interleaved(P^-1 x) = P^-1 rotate_half(x) with NeoX j -> Su 2j, d/2+j -> 2j+1."""
  d = 8
  x = _x(4, D=d)
  perm = np.empty(d, int)          # su_index[neox_index]
  perm[: d // 2] = 2 * np.arange(d // 2)
  perm[d // 2:] = 2 * np.arange(d // 2) + 1
  x_su = np.zeros_like(x)
  x_su[..., perm] = x
  pos = np.arange(5)
  half = np.asarray(P.apply_rope(x, pos, convention="rotate_half"))
  inter = np.asarray(P.apply_rope(x_su, pos, convention="interleaved"))
  np.testing.assert_allclose(inter[..., perm], half, atol=1e-6)


def test_rope_2d_matches_explicit_block_matrix_and_is_relative():
  x = _x(5, B=1, L=4, H=2, D=8)
  ys = np.array([[0, 1, 2, 5]], np.float32)
  xs = np.array([[3, 0, 4, 1]], np.float32)
  got = np.asarray(P.apply_rope_2d(x, ys, xs))
  for i in range(4):
    R = ref.rope2d_matrix(ys[0, i], xs[0, i], 8)
    np.testing.assert_allclose(got[0, i], x[0, i] @ R.T, atol=1e-5)
  # Scores depend only on (dy, dx); swapping the roles of x and y changes them.
  q, k = x[:, :1], x[:, 1:2]
  def score(yq, xq, yk, xk):
    a = P.apply_rope_2d(q, np.array([[yq]]), np.array([[xq]]))
    b = P.apply_rope_2d(k, np.array([[yk]]), np.array([[xk]]))
    return np.asarray(jnp.sum(a * b, -1))
  s0 = score(2, 5, 1, 1)
  np.testing.assert_allclose(score(12, 5, 11, 1), s0, atol=1e-4)     # shift y only
  np.testing.assert_allclose(score(2, 35, 1, 31), s0, atol=1e-4)     # shift x only
  assert not np.allclose(score(5, 2, 1, 1), s0, atol=1e-3)          # (dy, dx) matters, not dy+dx


def test_rope_2d_needs_head_dim_divisible_by_4():
  with pytest.raises(ValueError, match="divisible by 4"):
    P.apply_rope_2d(_x(0, D=6), np.zeros((2, 5)), np.zeros((2, 5)))


def test_rope_tie_text_is_exactly_rope_1d():
  x = _x(6, D=16)
  n = np.arange(5, dtype=np.float32) + 3.0
  tie = P.apply_rope_tie(x, np.stack([n, n], -1))
  np.testing.assert_array_equal(np.asarray(tie), np.asarray(P.apply_rope(x, n)))


def test_rope_tie_matches_explicit_matrix():
  x = _x(7, B=1, L=3, H=1, D=8)
  pos = np.array([[[1, 4], [7, 6], [2, 9]]], np.float32)
  got = np.asarray(P.apply_rope_tie(x, pos, convention="interleaved"))
  for i in range(3):
    R = ref.rope_tie_matrix(pos[0, i, 0], pos[0, i, 1], 8, convention="interleaved")
    np.testing.assert_allclose(got[0, i, 0], R @ x[0, i, 0], atol=1e-5)


def test_rope_tie_positions_worked_example():
  """kexue.fm/archives/10040 with L = 3, a 2-row x 3-column image, then text."""
  pos = P.rope_tie_positions([("text", 3), ("image", 2, 3), ("text", 1)], start=1)
  np.testing.assert_array_equal(pos[:3], [[1, 1], [2, 2], [3, 3]])
  np.testing.assert_array_equal(pos[3:9], [[7, 6], [7, 9], [7, 12], [11, 6], [11, 9], [11, 12]])
  np.testing.assert_array_equal(pos[9], [15, 15])
  # Symmetry: gap before == gap after == (w + 1, h + 1) for random shapes.
  rng = np.random.default_rng(0)
  for _ in range(5):
    L, h, w = (int(v) for v in rng.integers(1, 6, size=3))
    p = P.rope_tie_positions([("text", L), ("image", h, w), ("text", 1)])
    before = p[L] - p[L - 1]
    after = p[-1] - p[-2]
    np.testing.assert_array_equal(before, [w + 1, h + 1])
    np.testing.assert_array_equal(after, [w + 1, h + 1])


def test_xpos_scores_depend_only_on_offset():
  x = _x(8, B=1, L=2, H=1, D=8)
  def score(m, n):
    a = P.apply_xpos(x[:, :1], np.array([[m]], np.float32), scale_base=64.0)
    b = P.apply_xpos(x[:, 1:], np.array([[n]], np.float32), scale_base=64.0, inverse=True)
    return float(jnp.sum(a * b))
  s = score(9.0, 2.0)
  assert score(39.0, 32.0) == pytest.approx(s, rel=1e-4)
  theta = ref.frequencies(8)
  q = ref.xpos_vector_scale(9.0, 8, 64.0) * (ref.rope_matrix(9.0, 8, theta) @ x[0, 0, 0])
  k = ref.xpos_vector_scale(-2.0, 8, 64.0) * (ref.rope_matrix(2.0, 8, theta) @ x[0, 1, 0])
  assert s == pytest.approx(q @ k, rel=1e-5)


def test_alibi_slopes():
  np.testing.assert_allclose(P.alibi_slopes(8), [2.0 ** -i for i in range(1, 9)], rtol=1e-6)
  np.testing.assert_allclose(P.alibi_slopes(4), ref.alibi_slopes(4), rtol=1e-6)
  s6 = P.alibi_slopes(6)    # 4 slopes of H=4 then every other slope of H=8
  np.testing.assert_allclose(s6, [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3], rtol=1e-6)


@pytest.mark.parametrize("k", [None, 16.0, 1.0, 0.25])
def test_rerope_relative_position(k):
  r = np.arange(-20, 21)
  got = np.asarray(P.rerope_relative_position(r, 6, k))
  want = np.array([ref.rerope_relative(int(v), 6, k) for v in r])
  np.testing.assert_allclose(got, want, rtol=1e-6)
  if k == 1.0:
    np.testing.assert_array_equal(got, r)


def test_logn_factor():
  n = np.array([1.0, 4.0, 16.0, 64.0])
  np.testing.assert_allclose(np.asarray(P.logn_factor(n, mode="train", base_length=16)),
                             [0.0, 0.5, 1.0, 1.5], atol=1e-6)
  np.testing.assert_allclose(np.asarray(P.logn_factor(n, mode="retrofit", base_length=16)),
                             [1.0, 1.0, 1.0, 1.5], atol=1e-6)
  np.testing.assert_array_equal(np.asarray(P.logn_factor(n, mode="none", base_length=16)), 1.0)


@pytest.mark.parametrize("fn, match", [
    (lambda: P.apply_rope(_x(0, D=7), np.arange(5)), "even number"),
    (lambda: P.apply_rope(_x(0), np.arange(5), rotary_fraction=0.0), "rotary_fraction"),
    (lambda: P.apply_rope(_x(0), np.arange(5), convention="neox"), "Unknown RoPE convention"),
    (lambda: P.RopeScaling("linear", 2.0), "Unknown RoPE scaling"),
    (lambda: P.RopeScaling("pi", 0.5), "factor must be >= 1"),
    (lambda: P.RopeScaling("yarn", 4.0), "needs train_length"),
    (lambda: P.logn_factor(3.0, mode="sometimes", base_length=8), "Unknown logn"),
    (lambda: P.rope_tie_positions([("video", 2)]), "layout items"),
])
def test_errors(fn, match):
  with pytest.raises(ValueError, match=match):
    fn()
