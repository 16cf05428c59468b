"""Embedding-row statistics for the Lion/Tiger embedding anomaly.

Su (https://kexue.fm/archives/9736): under a sign update with decoupled decay
λ, the row of a rarely seen token keeps stepping on its stale momentum until
the decay balances it, so its entries approach ±1/λ while the loss looks
normal. The symptom to monitor is therefore, per token v of a table E [V, D],

    r_v = max_j |E[v, j]|          (→ 1/λ for stale rows; O(init std) otherwise)

compared between rare and frequent tokens.
"""
from typing import Any

import jax
import jax.numpy as jnp

from kexue_jax.optim import masks


def embedding_row_max_abs(params: Any,
                          embedding_pattern: str = masks.DEFAULT_EMBEDDING_PATTERN
                          ) -> dict[str, jax.Array]:
  """{"/"-joined path: r [V]} for every leaf with ndim >= 2 whose path matches
  `embedding_pattern` (rows = axis 0, max over the other axes)."""
  out = {}
  for path, x in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = masks.path_str(path)
    if getattr(x, "ndim", 0) >= 2 and masks.is_embedding(name, embedding_pattern):
      out[name] = jnp.max(jnp.abs(x), axis=tuple(range(1, x.ndim)))
  return out
