"""Fixtures shared by the nn/ tests."""
import numpy as np
import pytest


def make_qkv(seed, B=2, L=7, S=None, H=2, D=8, dtype=np.float32):
  """Standard-normal query ``(B, L, H, D)`` and key/value ``(B, S, H, D)`` arrays (S defaults to L)."""
  rng = np.random.default_rng(seed)
  S = L if S is None else S
  return (rng.normal(size=(B, L, H, D)).astype(dtype),
          rng.normal(size=(B, S, H, D)).astype(dtype),
          rng.normal(size=(B, S, H, D)).astype(dtype))


@pytest.fixture
def qkv():
  """``qkv(seed, B=2, L=7, S=None, H=2, D=8, dtype=float32) -> (q, k, v)`` as NumPy arrays."""
  return make_qkv
