"""Helpers shared by test files (fixtures live in the conftest.py files)."""
import pathlib

import jax
import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent


def load_config(path: str, arg: str | None = None):
  """Loads ``configs/...py`` (relative to the repo) the way ``--config path:arg`` does (get_config(arg))."""
  from kexue_jax import config_lib  # pylint: disable=g-import-not-at-top
  full = REPO / path
  return config_lib.load_config(f"{full}:{arg}" if arg is not None else str(full))


def float64():
  """``with float64(): ...`` computes in float64 (``jax_enable_x64``) inside the block.

  For tests that two programs are equal (remat vs none, sharded vs one device, accumulated vs one batch): in
  float32 their rounding differs by reduction order, so an equality check would need a tolerance unrelated to
  the values; in float64 the difference is ~1e-15 relative and ``assert_trees_close``'s default holds.
  """
  return jax.enable_x64(True)


def assert_trees_close(actual, desired, rtol=1e-10, scale=None):
  """Leafwise ``|a - d| <= rtol * |d| + rtol * s`` with ``s = max|d|`` of each leaf (default) or of the whole
  tree (``scale="tree"``, for gradients, where a leaf that is 0 in exact arithmetic holds only rounding noise
  of the size of the other leaves' terms): elements near 0 are held to the precision of the values they come
  from, never to a fixed atol."""
  def max_abs(x):
    return float(np.max(np.abs(np.asarray(x, np.float64)), initial=0.0))
  tree_scale = max((max_abs(d) for d in jax.tree.leaves(desired)), default=0.0) if scale == "tree" else None

  def check(a, d):
    a, d = np.asarray(a, np.float64), np.asarray(d, np.float64)
    s = max_abs(d) if tree_scale is None else tree_scale
    np.testing.assert_allclose(a, d, rtol=rtol, atol=rtol * s)
  jax.tree.map(check, actual, desired)
