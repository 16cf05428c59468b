"""Seed statistics shared by the study reports (mean ± sample std over seeds)."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import scipy.stats


@dataclasses.dataclass
class Stat:
  """The values of one metric over seeds."""
  values: list[float]

  @classmethod
  def of(cls, sample: Mapping[Any, float] | None) -> Stat:
    """The values of a sample {unit: value} (None: none)."""
    return cls(list((sample or {}).values()))

  @property
  def n(self) -> int:
    return len(self.values)

  @property
  def mean(self) -> float:
    return float(np.mean(self.values)) if self.values else float("nan")

  @property
  def std(self) -> float:
    """Sample standard deviation (ddof = 1); 0 for a single value."""
    return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

  def fmt(self, scale: float = 1.0, digits: int = 1) -> str:
    """"mean ± std" (×scale); the mean alone for one value; "—" for none."""
    if not self.values:
      return "—"
    if self.n == 1:
      return f"{self.mean * scale:.{digits}f}"
    return f"{self.mean * scale:.{digits}f} ± {self.std * scale:.{digits}f}"


def cell(sample: Mapping[Any, float] | None, scale: float = 1.0, digits: int = 1) -> str:
  """A table cell: ``Stat.fmt`` of the finite values of a sample {unit: value} (None: no values), with a count of
  the values left out ("(1 not finite)") so a mean over fewer units says so."""
  values = list((sample or {}).values())
  finite = [v for v in values if np.isfinite(v)]
  dropped = len(values) - len(finite)
  return Stat(finite).fmt(scale, digits) + (f" ({dropped} not finite)" if dropped else "")


def diff(a: Mapping[Any, float], b: Mapping[Any, float]) -> dict:
  """The paired sample a − b: {unit: a[unit] − b[unit]} over the units of a that b has too."""
  return {u: v - b[u] for u, v in a.items() if u in b}


def slopes(points: Mapping[Any, Mapping[float, float]]) -> dict:
  """{unit: least-squares slope of y on x} from {unit: {x: y}}, for the units with >= 3 values of x
  (``scipy.stats.linregress``). A trend over seeds is tested on these (one-sample t of the slopes against 0): one
  slope per seed keeps the seed blocking that a single fit over every (seed, x) point drops."""
  return {u: float(scipy.stats.linregress(list(p), list(p.values())).slope) for u, p in points.items() if len(p) >= 3}
