"""Verdict rules of experiments/framework/claims.py on known cases, against literal float64 references."""
import numpy as np
import pytest
from scipy import stats

from experiments.framework import claims as C
from experiments.length_extrapolation import published as le_pub
from experiments.mlm_dropout import published as mlm_pub
from experiments.rdrop import published as rdrop_pub


def _holm_literal(p, alpha):
  """Holm's step-down procedure as printed: reject H_(1..k-1), k the first i with p_(i) > alpha / (m - i + 1)."""
  m = len(p)
  order = sorted(range(m), key=lambda i: p[i])
  reject = [False] * m
  for rank, i in enumerate(order):
    if p[i] > alpha / (m - rank):
      break
    reject[i] = True
  return reject


def test_holm_matches_the_textbook_procedure():
  p = [0.01, 0.04, 0.03, 0.005, 0.2]
  adj = C.holm(p)
  # By hand: sorted 0.005, 0.01, 0.03, 0.04, 0.2 -> x5, x4, x3, x2, x1 -> 0.025, 0.04, 0.09, 0.09 (monotone), 0.2.
  np.testing.assert_allclose(adj, [0.04, 0.09, 0.09, 0.025, 0.2])
  for alpha in (0.01, 0.03, 0.05, 0.1):
    assert list(adj <= alpha) == _holm_literal(p, alpha)
  rng = np.random.default_rng(0)
  for _ in range(50):
    q = list(rng.uniform(0, 0.1, size=rng.integers(2, 8)))
    assert list(C.holm(q) <= 0.05) == _holm_literal(q, 0.05)


def test_a_difference_with_p_near_0_3_is_inconclusive_with_a_seed_count():
  a = {0: 1.0, 1: 2.0, 2: 0.4}
  b = {0: 0.9, 1: 1.2, 2: 0.9}   # differences 0.1, 0.8, -0.5: mean 0.13, one-sided p ~ 0.37
  v = C.judge(C.Claim("x", "a > b", "paired", "a", "b"), {"a": a, "b": b})
  d = np.array([0.1, 0.8, -0.5])
  p_ref = stats.t.sf(d.mean() / (d.std(ddof=1) / np.sqrt(3)), 2)
  assert 0.2 < p_ref < 0.45 and v.p == pytest.approx(p_ref)
  assert v.verdict == C.INCONCLUSIVE and v.needs is not None and v.needs > 3
  assert "needs ~" in v.line() and "paired t" in v.line()
  # The seed count: at that n, (effect / (sd / sqrt n)) first reaches t_0.975 + t_0.8 (df n - 1): each one-sided
  # test at alpha / 2 = 0.025.
  n, sd = v.needs, d.std(ddof=1)
  crit = lambda k: d.mean() / (sd / np.sqrt(k)) - stats.t.ppf(0.975, k - 1) - stats.t.ppf(0.8, k - 1)
  assert crit(n) >= 0 > crit(n - 1)


def test_clear_effects_hold_or_do_not_hold_with_scipy_ci():
  rng = np.random.default_rng(1)
  a, b = rng.normal(1.0, 0.1, 8), rng.normal(0.0, 0.1, 8)
  up = C.judge(C.Claim("w", "a > b", "welch", "a", "b"), {"a": list(a), "b": list(b)})
  down = C.judge(C.Claim("w", "a < b", "welch", "a", "b", direction="<"), {"a": list(a), "b": list(b)})
  assert up.verdict == C.HOLDS and down.verdict == C.FAILS
  lo, hi = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
  assert up.ci == pytest.approx((lo, hi)) and up.effect == pytest.approx(a.mean() - b.mean())


def test_synthetic_equivalence_holds_and_a_shift_does_not():
  rng = np.random.default_rng(2)
  base = rng.normal(0.7, 0.02, 10)
  same = {i: x + rng.normal(0, 0.002) for i, x in enumerate(base)}
  shifted = {i: x + 0.05 + rng.normal(0, 0.002) for i, x in enumerate(base)}
  ref = dict(enumerate(base))
  claim = C.Claim("eq", "a ≈ b within ±0.01", "paired", "a", "b", direction="~", margin=0.01)
  assert C.judge(claim, {"a": same, "b": ref}).verdict == C.HOLDS
  assert C.judge(claim, {"a": shifted, "b": ref}).verdict == C.FAILS
  with pytest.raises(ValueError, match="margin"):
    C.Claim("eq", "no margin", "paired", "a", "b", direction="~")


def test_trend_matches_linregress_and_three_points_do_not_decide():
  x = np.arange(3.0)
  y = np.array([0.0, 0.3, 0.35])
  v = C.judge(C.Claim("t", "rising", "trend", "y"), {"y": list(zip(x, y))})
  r = stats.linregress(x, y)
  assert v.effect == pytest.approx(r.slope)
  assert v.ci[1] - v.effect == pytest.approx(stats.t.ppf(0.975, 1) * r.stderr)
  assert v.verdict == C.INCONCLUSIVE   # df = 1: a 2-SE slope is not significant


def test_too_few_units_and_missing_data_are_inconclusive():
  v = C.judge(C.Claim("x", "a > b", "paired", "a", "b", min_n=3), {"a": [1.0, 2.0], "b": [0.0, 0.5]})
  assert v.verdict == C.INCONCLUSIVE and "minimum 3" in v.line()
  v = C.judge(C.Claim("x", "a > b", "paired", "a", "b"), {"a": [1.0, 2.0, 3.0]})
  assert v.verdict == C.INCONCLUSIVE and "no data for b" in v.line()


def test_holm_family_is_applied_in_judge_all():
  samples = {"a": [1.0, 1.2, 0.9, 1.1], "b": [0.9, 1.0, 1.05, 0.95], "c": [2.0, 2.1, 1.9, 2.2]}
  cl = [C.Claim("1", "a > b", "welch", "a", "b", family="f"), C.Claim("2", "c > b", "welch", "c", "b", family="f")]
  vs = C.judge_all(cl, samples)
  raw = [C.judge(c, samples).p for c in cl]
  np.testing.assert_allclose([v.p_holm for v in vs], C.holm(raw))
  assert "Holm" in vs[0].line()
  with pytest.raises(ValueError, match="unique"):   # estimates and Holm are keyed by id
    C.judge_all(cl + [C.Claim("1", "c > a", "welch", "c", "a")], samples)


# ------------------------------------------------------------------- Su's own numbers pass his own claims.


def test_su_rdrop_supervised_gain_holds_across_his_tasks():
  base = {t: b for t, _, b, _ in rdrop_pub.SU_SUPERVISED}
  rdrop = {t: r for t, _, _, r in rdrop_pub.SU_SUPERVISED}
  v = C.judge(C.Claim("r", "R-Drop > baseline", "paired", "r", "b", unit="tasks"), {"r": rdrop, "b": base})
  d = np.array([r - b for _, _, b, r in rdrop_pub.SU_SUPERVISED])
  assert (d > 0).all() and v.p == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
  # Su's three tasks: one-sided p 0.029, which the two-sided 0.05 rule (each side at 0.025, the 95% CI covers
  # 0) does not accept; never "does not hold", and a fourth task of the same size would decide it.
  assert v.verdict == C.INCONCLUSIVE and v.needs == 4, v.line()


def test_su_logn_pretraining_helps_across_his_methods():
  pairs = [("Baseline", "Baseline-log n"), ("NTK-RoPE-fixed", "NTK-RoPE-log n-fixed"),
           ("NTK-RoPE-mixed", "NTK-RoPE-log n-mixed")] + [
               (f"ReRoPE-w{w}", f"ReRoPE-w{w}-log n") for w in (64, 128, 256, 384)]
  none = {a: le_pub.SU[a][2] for a, _ in pairs}
  logn = {a: le_pub.SU[b][2] for a, b in pairs}
  v = C.judge(C.Claim("4", "log n > none", "paired", "l", "n", unit="methods"), {"l": logn, "n": none})
  assert v.verdict == C.HOLDS, v.line()


def test_su_droptoken_small_rates_are_not_a_consistent_gain():
  """Su: 'mixed, clearly useful only on IFLYTEK' -- the 0.1 ratio is not decided across his six tasks."""
  zero = dict(enumerate(mlm_pub.SU_DROPTOKEN[0.0]))
  v = C.judge(C.Claim("d", "DropToken 0.1 > none", "paired", "d", "z", unit="tasks"),
              {"d": dict(enumerate(mlm_pub.SU_DROPTOKEN[0.1])), "z": zero})
  assert v.verdict == C.INCONCLUSIVE


def test_su_rerope_window_robustness_passes_claim_6a():
  """LE claim 6a used to demand 'all windows within 3 points', which Su's own T5b (spread 3.29) fails; now the best
  and worst windows must be equivalent within a quarter of Su's smallest ReRoPE gain (a margin fixed before the run)."""
  from experiments.length_extrapolation import claims as le_claims
  su = [le_pub.SU[f"ReRoPE-w{w}"][2] for w in (64, 128, 256, 384)]
  margin = le_claims.ROBUST_SPREAD * le_claims.SU_SPREAD_GAIN
  assert max(su) - min(su) > 3.0 and max(su) - min(su) < margin
  assert le_claims.SU_SPREAD_GAIN == pytest.approx(45.19 - 23.16)
  # Su's best and worst windows measured on 64 windows with 1 point of per-window noise: the claim holds.
  rng = np.random.default_rng(0)
  base = rng.normal(0, 1, 64)
  S = {"hi": dict(enumerate(max(su) + base)), "lo": dict(enumerate(min(su) + base + rng.normal(0, 1, 64)))}
  assert C.judge(C.Claim("6a", "", "paired", "hi", "lo", direction="~", margin=margin), S).verdict == C.HOLDS


# ------------------------------------------------- Review of #14: CI/verdict consistency, Holm, edge cases.


def test_verdict_reads_off_the_95_ci_before_holm():
  """One-sided p 0.035 (< 0.05, > 0.025; the reviewer's case): the 95% CI covers 0, so the claim is
  inconclusive, not 'holds'."""
  d = np.array([0.5, 0.2, 0.9, -0.1, 0.6])
  v = C.judge(C.Claim("x", "a > b", "paired", "a", "b"), {"a": dict(enumerate(d)), "b": dict.fromkeys(range(5), 0.0)})
  p_ref = stats.ttest_1samp(d, 0.0, alternative="greater").pvalue
  lo, hi = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
  assert 0.025 < p_ref < 0.05 and v.p == pytest.approx(p_ref) and lo < 0 < hi
  assert v.ci == pytest.approx((lo, hi)) and v.verdict == C.INCONCLUSIVE
  # Both directions agree with the CI on random samples, for every test and margin (no Holm).
  rng = np.random.default_rng(3)
  for _ in range(40):
    a, b = rng.normal(rng.uniform(-1, 1), 1, 6), rng.normal(0, 1, 6)
    for claim in (C.Claim("p", "", "paired", "a", "b", margin=0.2), C.Claim("w", "", "welch", "a", "b", direction="<"),
                  C.Claim("o", "", "one_sample", "a", reference=0.1, margin=-0.3),
                  C.Claim("e", "", "paired", "a", "b", direction="~", margin=0.5)):
      v = C.judge(claim, {"a": dict(enumerate(a)), "b": dict(enumerate(b))})
      lo, hi = v.ci
      m = claim.margin
      side = {">": (lo > m, hi < m), "<": (hi < -m, lo > -m), "~": (-m < lo and hi < m, lo > m or hi < -m)}
      holds, fails = side[claim.direction]
      assert (v.verdict == C.HOLDS) == holds and (v.verdict == C.FAILS) == fails, (claim.id, v.line())


def test_does_not_hold_uses_the_holm_adjusted_opposite_p():
  """Two claims whose opposite one-sided p's are ~0.02 and ~0.015 (each < 0.025 alone): Holm over the family
  (x2, x1 in step-down order: 0.03, 0.03 after monotonicity) keeps both inconclusive; alone each does not hold."""
  rng = np.random.default_rng(4)
  base = rng.normal(0, 1, 8)

  def opposite(shift):   # paired differences with a chosen t statistic, negative side
    d = base - base.mean()
    d = d / d.std(ddof=1)
    return -shift / np.sqrt(8) + d   # mean -shift/sqrt(8), sd 1: t = -shift
  d1, d2 = opposite(2.4), opposite(2.6)
  zero = dict.fromkeys(range(8), 0.0)
  S = {"d1": dict(enumerate(d1)), "d2": dict(enumerate(d2)), "z": zero}
  cl = [C.Claim("1", "", "paired", "d1", "z", family="f"), C.Claim("2", "", "paired", "d2", "z", family="f")]
  po = [stats.ttest_1samp(d, 0.0, alternative="less").pvalue for d in (d1, d2)]
  assert all(p < 0.025 for p in po) and all(2 * min(po) > 0.025 for _ in po)
  alone = [C.judge(c, S) for c in cl]
  fam = C.judge_all(cl, S)
  assert [v.verdict for v in alone] == [C.FAILS, C.FAILS]
  assert [v.verdict for v in fam] == [C.INCONCLUSIVE, C.INCONCLUSIVE]
  # A 'does not hold' line prints the opposite-side p that decided it.
  assert alone[0].p_opposite == pytest.approx(po[0]) and f"opposite side p = {po[0]:.2g}" in alone[0].line()
  far = {"d3": dict(enumerate(opposite(8.0)))}
  v = C.judge_all(cl + [C.Claim("3", "", "paired", "d3", "z", family="f")], {**S, **far})[2]
  p3 = stats.ttest_1samp(opposite(8.0), 0.0, alternative="less").pvalue
  assert v.verdict == C.FAILS and v.p_opposite_holm == pytest.approx(C.holm(po + [p3])[2]) and "(Holm" in v.line()


def test_zero_spread_is_inconclusive_never_p_zero():
  S = {"a": [0.25, 0.25, 0.25], "b": [1.0, 1.1, 0.9], "c": [0.0, 0.0, 0.0], "y": [(0, 1.0), (1, 1.0), (2, 1.0)],
       "b+": [1.25, 1.35, 1.15], "r": [0.0, 0.0, 1.2e-16]}   # r: zero up to the rounding of b's magnitude
  for claim in (C.Claim("o", "", "one_sample", "a", reference=0.0), C.Claim("w", "", "welch", "a", "b"),
                C.Claim("w0", "", "welch", "a", "c"), C.Claim("p", "", "paired", "a", "c"),
                C.Claim("pb", "", "paired", "b+", "b"), C.Claim("t", "", "trend", "y"),
                C.Claim("wr", "", "welch", "b", "r")):
    v = C.judge(claim, S)
    assert v.verdict == C.INCONCLUSIVE and "no spread" in v.line(), (claim.id, v.line())


def test_lion_grid_edge_veto_makes_a_claim_inconclusive_and_leaves_its_family():
  S = {"a": [1.0, 1.2, 1.1, 0.9], "b": [0.0, 0.1, 0.05, -0.05]}
  cl = [C.Claim("1", "", "welch", "a", "b", family="f"), C.Claim("2", "", "welch", "a", "b", family="f")]
  v = C.judge_all(cl, S, vetoes={"1": "best at the grid edge: extend the grid"})
  assert v[0].verdict == C.INCONCLUSIVE and "grid edge" in v[0].line() and v[1].p_holm is None
  assert v[1].verdict == C.HOLDS


def test_units_needed_at_the_holm_step_level():
  """Three claims in a family: the largest raw p sits at Holm step 1 (alpha/2), the smallest at step 3 ((alpha/2)/3)."""
  d = {"x": [0.3, -0.1, 0.5, 0.2, -0.2], "y": [0.4, 0.1, 0.6, 0.3, 0.0], "z": [5.0, 5.1, 4.9, 5.2, 5.0]}
  zero = dict.fromkeys(range(5), 0.0)
  S = {k: dict(enumerate(v)) for k, v in d.items()} | {"0": zero}
  cl = [C.Claim(k, "", "paired", k, "0", family="f") for k in d]
  vs = C.judge_all(cl, S)
  raw = [stats.ttest_1samp(d[k], 0.0, alternative="greater").pvalue for k in d]
  step = {k: 3 - r for k, r in zip(d, np.argsort(np.argsort(raw)))}

  def needed(vals, level):   # literal search: effect / (sd / sqrt k) >= t_{1-level} + t_{0.8}, k - 1 df
    v = np.array(vals)
    return next(k for k in range(6, 10_000) if v.mean() / (v.std(ddof=1) / np.sqrt(k)) >=
                stats.t.ppf(1 - level, k - 1) + stats.t.ppf(0.8, k - 1))
  for k, v in zip(d, vs):
    if v.verdict == C.INCONCLUSIVE:
      assert v.needs == needed(d[k], 0.025 / step[k]), (k, v.line())
  assert vs[0].verdict == vs[1].verdict == C.INCONCLUSIVE and step["y"] == 2 and step["x"] == 1


def test_non_inferiority_label_and_notes():
  lower = C.judge(C.Claim("ni", "", "paired", "a", "b", direction="<", margin=-0.02, digits=3),
                  {"a": [1.0, 1.1, 1.2], "b": [1.05, 1.0, 1.2]})
  stricter = C.judge(C.Claim("st", "", "paired", "a", "b", direction="<", margin=0.02, digits=3),
                     {"a": [1.0, 1.1, 1.2], "b": [1.05, 1.0, 1.2]})
  assert "non-inferiority margin 0.02" in lower.line() and "non-inferiority" not in stricter.line()
  one = C.judge(C.Claim("n1", "", "one_sample", "a", reference=0.0, min_n=1), {"a": [1.0]})
  assert "below the minimum" not in one.line() and one.verdict == C.INCONCLUSIVE


def test_nan_units_are_counted_and_identical_x_does_not_crash():
  nan = float("nan")
  S = {"a": {0: 1.0, 1: 1.2, 2: nan, 3: 1.1}, "b": {0: 0.0, 1: 0.1, 2: 0.0, 3: 0.05}, "c": [1.0, nan, 1.2, 0.9],
       "x": [(1.0, 0.1), (1.0, 0.3), (1.0, 0.2)], "tr": [(0, 1.0), (1, nan), (2, 2.1), (3, 2.9), (4, 4.2)]}
  assert "1 seeds dropped" in C.judge(C.Claim("p", "", "paired", "a", "b"), S).line()
  assert "2 seeds dropped" in C.judge(C.Claim("w", "", "welch", "a", "c"), S).line()
  v = C.judge(C.Claim("t", "", "trend", "x"), S)
  assert v.verdict == C.INCONCLUSIVE and "identical" in v.line()
  t = C.judge(C.Claim("tr", "", "trend", "tr"), S)
  r = stats.linregress([0, 2, 3, 4], [1.0, 2.1, 2.9, 4.2])
  assert t.effect == pytest.approx(r.slope) and "1 seeds dropped" in t.line()
  # A NaN p is not counted in Holm's m: the family of one testable claim is not adjusted.
  fam = C.judge_all([C.Claim("1", "", "trend", "x", family="f"), C.Claim("2", "", "paired", "a", "b", family="f")], S)
  assert fam[1].p_holm is None
