"""Token dropping with kept positions (MAE's sampling; Su's DropToken, https://kexue.fm/archives/8770).

Of a sequence of L tokens the first ``num_fixed`` ([CLS]) are always kept and K - num_fixed of the others are
kept uniformly at random (argsort of uniform noise, He et al., arXiv 2111.06377); the kept tokens are gathered
to [B, K] with their original position ids. Dropping a token this way equals masking its attention column in
every layer (tests/tasks/test_mlm.py checks it against a NumPy float64 transcription).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from kexue_jax import vocab


def num_kept(length: int, drop_rate: float, num_fixed: int = 1) -> int:
  """K = num_fixed + round((1 - drop_rate)(length - num_fixed)): tokens left after dropping (>= num_fixed)."""
  if not 0.0 <= drop_rate < 1.0:
    raise ValueError(f"drop rate must be in [0, 1), got {drop_rate}.")
  k = num_fixed + int(round((1.0 - drop_rate) * (length - num_fixed)))
  if drop_rate > 0 and k == length:
    raise ValueError(f"drop rate {drop_rate} drops no token of a sequence of {length} (round((1 - rate) * "
                     f"{length - num_fixed}) = {length - num_fixed}); raise the rate or the sequence length.")
  return k


def keep_drop_indices(rng, tokens_BL, num_keep: int, *, num_fixed: int = 1, pad_id: int = vocab.PAD_ID):
  """(keep_BK, drop_BM): sorted positions kept / dropped, K = num_keep, M = L - K, per example.

  The first `num_fixed` positions ([CLS]) are always kept; among the others a uniformly random subset is kept
  (argsort of uniform noise, as MAE); [PAD] positions are dropped before any real token.
  """
  B, L = tokens_BL.shape
  if not num_fixed <= num_keep <= L:
    raise ValueError(f"num_keep={num_keep} must be in [{num_fixed}, {L}].")
  noise_BL = jax.random.uniform(rng, (B, L))
  noise_BL = jnp.where(tokens_BL == pad_id, 2.0, noise_BL)
  noise_BL = jnp.where(jnp.arange(L) < num_fixed, -1.0, noise_BL)
  order_BL = jnp.argsort(noise_BL, axis=1)
  return jnp.sort(order_BL[:, :num_keep], axis=1), jnp.sort(order_BL[:, num_keep:], axis=1)


def gather_BK(x_BL, idx_BK):
  """x[b, idx[b, k]] for x of shape [B, L] or [B, L, ...]."""
  idx = idx_BK.reshape(idx_BK.shape + (1,) * (x_BL.ndim - 2))
  return jnp.take_along_axis(x_BL, idx, axis=1)
