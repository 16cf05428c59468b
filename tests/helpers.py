"""Helpers shared by test files (fixtures live in the conftest.py files)."""
import importlib.util
import pathlib

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent


def load_config(path: str, arg: str | None = None):
  """Loads ``configs/...py`` the way ``--config path:arg`` does (get_config(arg))."""
  full = REPO / path
  spec = importlib.util.spec_from_file_location(f"cfg_{full.stem}", full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def float64():
  """``with float64(): ...`` computes in float64 (``jax_enable_x64``) inside the block.

  For tests that two programs are equal (remat vs none, sharded vs one device, accumulated vs one batch): in
  float32 their rounding differs by reduction order, so an equality check would need a tolerance unrelated to
  the values; in float64 the difference is ~1e-15 relative and ``assert_trees_close``'s default holds.
  """
  return jax.enable_x64(True)


def assert_trees_close(actual, desired, rtol=1e-10):
  """Leafwise ``|a - d| <= rtol * |d| + rtol * max|d|``: the absolute floor scales with each leaf's values, so
  elements near 0 are held to the precision of the whole tensor (never a fixed atol)."""
  def check(a, d):
    a, d = np.asarray(a, np.float64), np.asarray(d, np.float64)
    np.testing.assert_allclose(a, d, rtol=rtol, atol=rtol * float(np.max(np.abs(d), initial=0.0)))
  jax.tree.map(check, actual, desired)
