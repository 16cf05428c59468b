r"""Claims as data, verdicts computed by declared tests (scipy.stats), Holm within a family.

A :class:`Claim` says which sample(s) it reads, how they are compared and in which direction:

  test        "paired"      a_k - b_k over shared keys (seeds, windows, tasks): ``scipy.stats.ttest_rel``
              "welch"       independent runs, unequal variances: ``scipy.stats.ttest_ind(equal_var=False)``
              "one_sample"  a against a published number ``reference``: ``scipy.stats.ttest_1samp``
              "trend"       slope of y on x (a is a list of (x, y) pairs or a {x: y} map): ``scipy.stats.linregress``
  direction   ">"  effect > margin        "<"  effect < -margin
              "~"  equivalence |effect| < margin (TOST: two one-sided tests; the margin is declared with the claim,
                   before the run, never fitted to the data)

The effect is mean(a) - mean(b) (paired: the mean difference; one_sample: mean(a) - reference; trend: the
slope). Every verdict is one of three words, decided at two-sided alpha = 0.05: each one-sided test (the
claim's, its opposite, each side of TOST) at alpha / 2 = 0.025, so that before Holm a verdict can be read off the
printed 95% CI (holds: the CI lies on the claim's side of the margin; does not hold: on the other side):

  holds          the one-sided test of the claim (TOST for "~") rejects its null; within a ``family`` (claims
                 that share data) its p-value is Holm-adjusted first.
  does not hold  the opposite one-sided test rejects (the effect is significantly on the other side of the
                 margin; for "~": significantly outside the margin); within a family the opposite p-values are
                 Holm-adjusted too.
  inconclusive   neither, fewer than ``min_n`` units, or no spread (identical or grid-valued units): the line
                 says how many units (seeds, windows, ...) a test at the claim's (Holm) level with 80% power would
                 need if the observed effect and spread are the truth.

Holm's step-down adjustment is written here because scipy.stats offers only FDR control
(``false_discovery_control``), not family-wise Holm, and statsmodels is not a dependency.
Holm, *A simple sequentially rejective multiple test procedure*, Scand. J. Statist. 6 (1979) 65-70.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
TESTS = ("paired", "welch", "one_sample", "trend")
DIRECTIONS = (">", "<", "~")
SIGN = {">": 1.0, "<": -1.0}   # the side of zero a one-sided claim puts its effect on


@dataclasses.dataclass(frozen=True)
class Claim:
  """One falsifiable statement about named samples (see the module docstring)."""
  id: str
  text: str
  test: str
  a: str
  b: str | None = None
  direction: str = ">"
  margin: float = 0.0
  reference: float | None = None
  min_n: int = 3
  family: str | None = None
  unit: str = "seeds"
  scale: float = 1.0          # display only: effects are printed x scale (e.g. 100 for percent)
  digits: int = 2

  def __post_init__(self):
    if self.test not in TESTS:
      raise ValueError(f"claim {self.id}: test must be one of {TESTS}, got {self.test!r}.")
    if self.direction not in DIRECTIONS:
      raise ValueError(f"claim {self.id}: direction must be one of {DIRECTIONS}, got {self.direction!r}.")
    if self.direction == "~" and self.margin <= 0:
      raise ValueError(f"claim {self.id}: an equivalence claim needs a margin > 0 declared before the run.")
    if (self.test in ("paired", "welch")) != (self.b is not None):
      raise ValueError(f"claim {self.id}: tests paired/welch need b; one_sample/trend take only a.")
    if (self.test == "one_sample") != (self.reference is not None):
      raise ValueError(f"claim {self.id}: a reference number goes with test='one_sample' only.")


@dataclasses.dataclass(frozen=True)
class Verdict:
  """The outcome of one claim: the word, the estimate and the test behind it."""
  claim: Claim
  verdict: str
  n: int = 0
  effect: float = float("nan")
  ci: tuple[float, float] = (float("nan"), float("nan"))
  p: float = float("nan")            # one-sided p of the claim (TOST: the larger of the two)
  p_holm: float | None = None        # Holm-adjusted p when the claim is in a family of > 1
  test_name: str = ""
  needs: int | None = None           # units needed (inconclusive only); None: not from this effect
  note: str = ""
  p_opposite: float | None = None    # does not hold (or inconclusive on that side): the opposite one-sided p
  p_opposite_holm: float | None = None
  dropped: int = 0                   # units dropped as not finite (NaN / inf)

  def line(self) -> str:
    """"effect +1.23 (95% CI 0.40 to 2.06), paired t, n = 5 seeds, p = 0.012 (Holm 0.024)" (does not hold: also
    ", opposite side p = ..." that decided it)."""
    c = self.claim
    if not self.test_name:
      return self.note
    s, k = c.scale, c.digits
    out = (f"effect {self.effect * s:+.{k}f} (95% CI {self.ci[0] * s:.{k}f} to {self.ci[1] * s:.{k}f}), "
           f"{self.test_name}, n = {self.n} {c.unit}, p = {_fmt_p(self.p)}")
    if self.p_holm is not None:
      out += f" (Holm {_fmt_p(self.p_holm)})"
    if self.p_opposite is not None:
      out += f", opposite side p = {_fmt_p(self.p_opposite)}" + (
          f" (Holm {_fmt_p(self.p_opposite_holm)})" if self.p_opposite_holm is not None else "")
    if self.dropped:
      out += f"; {self.dropped} {c.unit} dropped (not finite)"
    if self.verdict == INCONCLUSIVE:
      out += "; " + (f"needs ~{self.needs} {c.unit} to decide" if self.needs else self.note or "")
    return out


def _fmt_p(p: float) -> str:
  return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _pairs(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
  """Aligns two samples by key ({seed: value}) or by position (equal-length sequences)."""
  if isinstance(a, Mapping) and isinstance(b, Mapping):
    keys = sorted(set(a) & set(b), key=str)
    return np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)
  if len(a) != len(b):
    raise ValueError(f"paired samples differ in length ({len(a)} vs {len(b)}); pass {{key: value}} maps.")
  return np.asarray(a, float), np.asarray(b, float)


def _values(x: Any) -> np.ndarray:
  v = np.asarray(list(x.values()) if isinstance(x, Mapping) else x, float)
  return v[np.isfinite(v)]


def _xy(x: Any) -> tuple[np.ndarray, np.ndarray]:
  pts = np.asarray(sorted(x.items()) if isinstance(x, Mapping) else x, float).reshape(-1, 2)
  pts = pts[np.isfinite(pts).all(axis=1)]
  return pts[:, 0], pts[:, 1]


@dataclasses.dataclass(frozen=True)
class _Estimate:
  effect: float
  se: float
  df: float
  n: int
  name: str
  shifted: Any     # shift -> alternative -> one-sided p of H1 "effect - shift is on that side of 0"
  dropped: int = 0     # units dropped as not finite
  flat: str = ""       # why a t test does not apply though n suffices (no spread), else ""


_T_TESTS = {  # test: the scipy.stats function, its name in a verdict line
    "paired": (stats.ttest_rel, "paired t"),
    "welch": (functools.partial(stats.ttest_ind, equal_var=False), "Welch t"),
    "one_sample": (stats.ttest_1samp, "one-sample t")}


def estimate(claim: Claim, samples: Mapping[str, Any]) -> _Estimate | None:
  """Effect, standard error, degrees of freedom and a one-sided p function; None when a sample is missing."""
  if claim.a not in samples or (claim.b is not None and claim.b not in samples):
    return None
  if claim.test == "trend":
    x, y = _xy(samples[claim.a])
    dropped = len(samples[claim.a]) - len(x)
    if len(x) < 3 or np.ptp(x) == 0:   # scipy's linregress raises on identical x values
      why = "all x values are identical: no slope to test" if len(x) >= 3 else ""
      return _Estimate(float("nan"), float("nan"), 0, len(x), "linregress slope", None, dropped, why)
    r = stats.linregress(x, y)
    p = lambda shift, alt: stats.linregress(x, y - shift * x, alternative=alt).pvalue
    flat = _NO_SPREAD if not r.stderr > 0 or _flat(y - r.slope * x, float(np.max(np.abs(y)))) else ""
    return _Estimate(float(r.slope), float(r.stderr), len(x) - 2, len(x), "linregress slope t", p, dropped, flat)
  test, name = _T_TESTS[claim.test]
  if claim.test == "paired":
    a, b = _pairs(samples[claim.a], samples[claim.b])
    ok = np.isfinite(a) & np.isfinite(b)
    a, b, n, dropped = a[ok], b[ok], int(ok.sum()), int((~ok).sum())
    arms = (a - b,)   # the test's sample is the differences
  elif claim.test == "welch":
    a, b = _values(samples[claim.a]), _values(samples[claim.b])
    n, arms = min(len(a), len(b)), (a, b)
    dropped = len(samples[claim.a]) + len(samples[claim.b]) - len(a) - len(b)
  else:   # one_sample: the reference takes b's place; a shifted null moves it (scipy's popmean)
    a, b, name = _values(samples[claim.a]), claim.reference, f"{name} vs {claim.reference * claim.scale:g}"
    n, dropped, arms = len(a), len(samples[claim.a]) - len(a), (a,)
  shifted = lambda shift, alt: (test(a, b + shift, alternative=alt) if claim.test == "one_sample" else
                                test(a - shift, b, alternative=alt)).pvalue
  if n < 2:
    return _Estimate(float("nan"), float("nan"), 0, n, name, None, dropped)
  full = test(a, b)
  lo, hi = full.confidence_interval(0.95)
  effect = (lo + hi) / 2 - (claim.reference or 0.0)
  se = (hi - lo) / (2 * stats.t.ppf(0.975, full.df)) if np.isfinite(hi - lo) else float("nan")
  size = float(np.max(np.abs(np.r_[a, b])))   # the data's magnitude: spread below 1e-12 of it is rounding
  if not se > 0 or any(len(v) > 1 and _flat(v, size) for v in arms):
    return _Estimate(float(np.mean(a) - np.mean(b)), 0.0, float(full.df), n, name, shifted, dropped, _NO_SPREAD)
  return _Estimate(float(effect), float(se), float(full.df), n, name, shifted, dropped)


_NO_SPREAD = "no spread (identical or grid-valued units): a t test does not apply"


def _flat(v: np.ndarray, size: float) -> bool:
  """All values equal up to float64 rounding of data of magnitude ``size`` (e.g. 1.25 - 1.0 vs 1.35 - 1.1)."""
  return bool(np.ptp(v) <= 1e-12 * size)


def _testable(claim: Claim, est: _Estimate | None) -> bool:
  """Whether the claim's test can run: its samples exist, n reaches its minimum, the spread is finite and > 0."""
  return (est is not None and est.n >= claim.min_n and est.shifted is not None and np.isfinite(est.se)
          and not est.flat)


def _untestable_note(claim: Claim, est: _Estimate) -> str:
  if est.n < claim.min_n:
    return f"n = {est.n} {claim.unit}, below the minimum {claim.min_n}: needs >= {claim.min_n}"
  return est.flat or f"n = {est.n} {claim.unit}: no finite spread, a t test does not apply"


def _side_p(claim: Claim, est: _Estimate) -> tuple[float, float]:
  """(p of the claim, p of its opposite), both one-sided."""
  m, f = claim.margin, est.shifted
  if claim.direction == "~":
    return max(f(-m, "greater"), f(m, "less")), min(f(m, "greater"), f(-m, "less"))
  shift, side, opposite = (m, "greater", "less") if claim.direction == ">" else (-m, "less", "greater")
  return f(shift, side), f(shift, opposite)


def _distance(claim: Claim, est: _Estimate) -> float:
  """How far the observed effect lies past the margin, on the claim's side (<= 0: on the other side)."""
  return (claim.margin - abs(est.effect) if claim.direction == "~" else
          SIGN[claim.direction] * est.effect - claim.margin)


def units_needed(claim: Claim, est: _Estimate, alpha: float, limit: int = 10_000) -> int | None:
  """Smallest n above the current one at which the observed effect would be detected with POWER by a one-sided
  t test at level ``alpha`` (the claim's: ALPHA / 2, divided by its Holm step factor in a family) if it and the
  observed spread were the truth: distance / (se·sqrt(n0/n)) >= t_{1-alpha} + t_{POWER} (df scaled with n).
  None when the observed effect lies on the wrong side of the margin (no n helps) or past ``limit``."""
  distance = _distance(claim, est)
  if not (distance > 0 and est.se > 0 and est.df > 0):
    return None
  offset = est.n - est.df   # paired/one-sample 1, trend 2; Welch: about n - 2n + 2
  for n in range(max(est.n + 1, 2), limit + 1):
    df = max(n - offset, 1.0) if claim.test != "welch" else est.df * n / est.n
    se = est.se * np.sqrt(est.n / n)
    if distance / se >= stats.t.ppf(1 - alpha, df) + stats.t.ppf(POWER, df):
      return n
  return None


def holm(pvalues: Sequence[float]) -> np.ndarray:
  """Holm-adjusted p-values: p_(i) -> max_{j<=i} min(1, (m - j + 1) p_(j)) over ascending p (Holm 1979)."""
  p = np.asarray(pvalues, float)
  order = np.argsort(p)
  m = len(p)
  adjusted = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
  out = np.empty(m)
  out[order] = adjusted
  return out


def _verdict(claim: Claim, samples: Mapping[str, Any], est: _Estimate | None, sides: tuple[float, float] | None,
             holm_p: tuple[float, float, int] | None, alpha: float, veto: str | None) -> Verdict:
  """The verdict at two-sided ``alpha`` (each one-sided test at alpha / 2) from the claim's estimate, its one-sided
  p values ``sides`` (the claim's, its opposite's; None: not testable) and, in a Holm family, ``holm_p``: both
  adjusted and the claim's Holm step (the divisor of alpha / 2 for the units a decision needs). ``veto``: a reason
  the data cannot decide the claim (e.g. a best value at a grid edge): inconclusive."""
  missing = [s for s in (claim.a, claim.b) if s is not None and s not in samples]
  if missing:
    return Verdict(claim, INCONCLUSIVE, note=f"not measured: no data for {', '.join(missing)}")
  if sides is None:
    return Verdict(claim, INCONCLUSIVE, n=est.n, effect=est.effect, dropped=est.dropped,
                   note=_untestable_note(claim, est) + (f"; {veto}" if veto else ""))
  (p, p_opposite), (p_adjusted, p_opposite_adjusted, step) = sides, holm_p or (None, None, 1)
  p_dec = p if p_adjusted is None else p_adjusted
  p_opp_dec = p_opposite if p_opposite_adjusted is None else p_opposite_adjusted
  verdict = (INCONCLUSIVE if veto else HOLDS if p_dec < alpha / 2 else FAILS if p_opp_dec < alpha / 2 else
             INCONCLUSIVE)
  needs = units_needed(claim, est, alpha / 2 / step) if verdict == INCONCLUSIVE and not veto else None
  note = veto or ("" if needs else "the observed effect lies on the other side of the margin: more units would "
                  "not help it" if _distance(claim, est) <= 0 else "more units than the search limit would be needed")
  fails = verdict == FAILS or (verdict == INCONCLUSIVE and _distance(claim, est) <= 0)   # show the other side
  half = stats.t.ppf(1 - alpha / 2, est.df) * est.se
  return Verdict(claim, verdict, est.n, est.effect, (est.effect - half, est.effect + half), float(p), p_adjusted,
                 est.name + _margin_text(claim), needs, note if verdict == INCONCLUSIVE else "",
                 float(p_opposite) if fails else None, p_opposite_adjusted if fails else None, est.dropped)


def judge(claim: Claim, samples: Mapping[str, Any], alpha: float = ALPHA) -> Verdict:
  """The verdict of one claim on its own (no Holm family)."""
  return judge_all([claim], samples, alpha)[0]


def _margin_text(claim: Claim) -> str:
  m = claim.margin * claim.scale
  if claim.direction == "~":
    return f" (equivalence margin ±{m:g})"
  if claim.margin < 0:   # ">": effect > -|m|, "<": effect < |m|: both allow a bounded loss
    return f" (non-inferiority margin {abs(m):g})"
  return f" (margin {abs(m):g})" if claim.margin else ""


def judge_all(claims: Sequence[Claim], samples: Mapping[str, Any], alpha: float = ALPHA,
              vetoes: Mapping[str, str] | None = None) -> list[Verdict]:
  """Verdicts of all claims; within each ``family`` of more than one tested claim, the p of each claim and of
  its opposite side are Holm-adjusted (NaN p not counted). ``vetoes``: {claim id: why the data cannot decide it}
  (inconclusive, left out of the family)."""
  vetoes = vetoes or {}
  ids = [c.id for c in claims]
  if len(set(ids)) < len(ids):
    raise ValueError(f"claim ids must be unique (Holm and the verdicts are keyed by id): {sorted(ids)}")
  estimates = {c.id: estimate(c, samples) for c in claims}
  sides = {c.id: _side_p(c, estimates[c.id]) for c in claims if _testable(c, estimates[c.id])}
  adjusted: dict[str, tuple[float, float, int]] = {}
  for fam in {c.family for c in claims if c.family}:
    ids = [c.id for c in claims if c.family == fam and c.id in sides and c.id not in vetoes
           and np.isfinite(sides[c.id]).all()]
    if len(ids) > 1:
      raw = np.array([sides[i] for i in ids])
      steps = len(ids) - np.argsort(np.argsort(raw[:, 0], kind="stable"), kind="stable")   # m - rank
      adjusted.update(zip(ids, zip(holm(raw[:, 0]), holm(raw[:, 1]), steps.tolist())))
  return [_verdict(c, samples, estimates[c.id], sides.get(c.id), adjusted.get(c.id), alpha, vetoes.get(c.id))
          for c in claims]


def summary(verdicts: Sequence[Verdict]) -> str:
  """"5 hold, 1 does not hold, 2 inconclusive"."""
  n = {v: sum(x.verdict == v for x in verdicts) for v in (HOLDS, FAILS, INCONCLUSIVE)}
  return f"{n[HOLDS]} hold, {n[FAILS]} do not hold, {n[INCONCLUSIVE]} inconclusive"

