"""Hyper-parameter recipes for sign optimizers, from their public derivations.

Su's Amos-derived recipe for Lion (https://kexue.fm/archives/9473; Amos is
Tian & Parikh 2022, arXiv 2210.11693): for a parameter initialised with
standard deviation σ, the learning rate and the per-step decay follow
    α_t ≈ α0·σ / (κt + 1),     ρ_t ≈ α0² / (2(κt + 1)),
and Lion's decoupled decay is θ -= α_t·λ·θ, so λ = ρ_t/α_t is constant:
    λ = α0 / (2σ),             peak lr η = α0·σ.
His worked example, BERT-base (σ ≈ 0.036, α0 = 1.11e-3): η ≈ 4e-5, λ ≈ 0.015.
"""
import math


def amos_lion_hparams(alpha0: float, init_std: float) -> dict[str, float]:
  """{"learning_rate": α0·σ, "weight_decay": α0/(2σ)} (module docstring).

  `init_std` is σ, the parameters' init standard deviation (e.g. 1/sqrt(d)
  for a d-wide layer with LeCun-normal init); `alpha0` is Amos' global step
  scale. Feed both keys to `lion(...)` or the optimizer config.
  """
  for name, v in (("alpha0", alpha0), ("init_std", init_std)):
    if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
      raise ValueError(f"{name}={v!r} must be a finite number > 0.")
  return {"learning_rate": alpha0 * init_std,
          "weight_decay": alpha0 / (2.0 * init_std)}
