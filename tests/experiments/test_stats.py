"""experiments/stats.py: mean ± sample sd cells against a literal float64 computation."""
import math

from experiments import stats


def test_cell_is_mean_and_sample_sd_of_the_finite_values_and_counts_the_rest():
  sample = {0: 0.61, 1: 0.64, 2: float("nan"), 3: 0.70}
  xs = [0.61, 0.64, 0.70]
  mean = sum(xs) / 3
  sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / 2)
  assert stats.cell(sample, 100.0, 2) == f"{100 * mean:.2f} ± {100 * sd:.2f} (1 not finite)"
  assert stats.cell({0: 0.5}) == "0.5" and stats.cell(None) == "—" and stats.cell({0: float("inf")}) == "— (1 not finite)"
