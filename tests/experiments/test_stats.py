"""experiments/stats.py: mean ± sample sd cells against a literal float64 computation."""
import math

import numpy as np

from experiments import stats


def test_cell_is_mean_and_sample_sd_of_the_finite_values_and_counts_the_rest():
  sample = {0: 0.61, 1: 0.64, 2: float("nan"), 3: 0.70}
  xs = [0.61, 0.64, 0.70]
  mean = sum(xs) / 3
  sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / 2)
  assert stats.cell(sample, 100.0, 2) == f"{100 * mean:.2f} ± {100 * sd:.2f} (1 not finite)"
  assert stats.cell({0: 0.5}) == "0.5" and stats.cell(None) == "—" and stats.cell({0: float("inf")}) == "— (1 not finite)"


def test_slopes_fit_each_unit_alone_against_numpy_polyfit():
  rng = np.random.default_rng(0)
  points = {s: {x: 0.5 * s - 0.2 * x + rng.normal() * 0.01 for x in (0.0, 0.5, 1.0, 2.0, 4.0)} for s in range(4)}
  points[9] = {0.0: 1.0, 4.0: 0.0}   # two values of x: no slope
  got = stats.slopes(points)
  assert set(got) == {0, 1, 2, 3}
  for s, p in points.items():
    if s in got:
      want = np.polyfit(np.array(list(p), np.float64), np.array(list(p.values()), np.float64), 1)[0]
      assert abs(got[s] - want) <= 1e-12 * max(1.0, abs(want))
