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
  # The seed count: at that n, (effect / (sd / sqrt n)) first reaches t_0.95 + t_0.8 (df n - 1).
  n, sd = v.needs, d.std(ddof=1)
  crit = lambda k: d.mean() / (sd / np.sqrt(k)) - stats.t.ppf(0.95, k - 1) - stats.t.ppf(0.8, k - 1)
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


# ------------------------------------------------------------------- Su's own numbers pass his own claims.


def test_su_rdrop_supervised_gain_holds_across_his_tasks():
  base = {t: b for t, _, b, _ in rdrop_pub.SU_SUPERVISED}
  rdrop = {t: r for t, _, _, r in rdrop_pub.SU_SUPERVISED}
  v = C.judge(C.Claim("r", "R-Drop > baseline", "paired", "r", "b", unit="tasks"), {"r": rdrop, "b": base})
  assert v.verdict == C.HOLDS, v.line()


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


def test_former_rule_is_reproduced_for_marking_changed_verdicts():
  """The discarded max-sd rule: a 'difference' beyond max(sd) with 3 seeds, which the t test does not accept."""
  samples = {"a": {0: 1.0, 1: 2.0, 2: 3.0}, "b": {0: 0.0, 1: 0.5, 2: 1.0}}
  claim = C.Claim("x", "a > b", "paired", "a", "b")
  assert C.former_verdict(claim, samples) == C.HOLDS   # d = 1.5 > max sd 1.0
  assert C.former_verdict(C.Claim("y", "a ≥ b - 2", "welch", "a", "b", margin=-2.0),
                          {"a": [1.0, 1.1], "b": [1.05, 1.0]}) == C.HOLDS   # inside the spread: non-inferior
  assert C.former_verdict(C.Claim("t", "rising", "trend", "a"), samples) is None
