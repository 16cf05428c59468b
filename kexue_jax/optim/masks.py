"""Per-parameter classification: which leaves get weight decay, which lr rule Tiger uses.

A parameter's *path* is its pytree key path joined with "/", e.g.
`"params/Embed_0/embedding"` or `"params/block_3/mlp/Dense_0/bias"`.

The usual rule (optax issue #25, GPT-2/ViT practice): matrices and kernels
(`ndim >= 2`) are decayed; biases and norm scales/offsets (`ndim < 2`) are not.
Embedding tables are matrices, so they are decayed unless excluded by name.

For Lion and Tiger keep decaying embeddings (the default) unless you know you
need otherwise: under a sign update a rarely-seen token's row keeps moving by
±lr per step on stale momentum, and only the decay bounds it, at |θ| <= 1/λ
(Su, https://kexue.fm/archives/9736; Chen et al. arXiv 2310.05898).
"""
import re
from typing import Any

import jax

# Matches Flax `nn.Embed` ("embedding"), "Embed_0", "tok_embed", "pos_embedding",
# GPT-2's "wte"/"wpe". Case-insensitive, searched anywhere in the path.
DEFAULT_EMBEDDING_PATTERN = r"embed|(^|/)(wte|wpe)(/|$)"
# Norm gains that start at 1: Flax LayerNorm/RMSNorm "scale", Keras "gamma".
DEFAULT_NORM_SCALE_PATTERN = r"(^|/)(scale|gamma)$"


def path_str(path) -> str:
  """Key path -> "a/b/c" (dict keys, attribute names, sequence indices)."""
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.DictKey):
      parts.append(str(k.key))
    elif isinstance(k, jax.tree_util.GetAttrKey):
      parts.append(k.name)
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    elif isinstance(k, jax.tree_util.FlattenedIndexKey):
      parts.append(str(k.key))
    else:
      parts.append(str(k))
  return "/".join(parts)


def _compile(pattern):
  if pattern is None:
    return None
  try:
    return re.compile(pattern, re.IGNORECASE)
  except re.error as e:
    raise ValueError(f"invalid regular expression {pattern!r}: {e}") from e


def is_embedding(path: str, pattern: str | None = DEFAULT_EMBEDDING_PATTERN) -> bool:
  rx = _compile(pattern)
  return rx is not None and rx.search(path) is not None


def decay_mask(params: Any, *, decay_embeddings: bool = True,
               embedding_pattern: str = DEFAULT_EMBEDDING_PATTERN,
               exclude_pattern: str | None = None) -> Any:
  """Boolean tree: True where weight decay applies.

  Rule: decay iff `ndim >= 2`, and not (`decay_embeddings=False` and the path
  matches `embedding_pattern`), and the path does not match `exclude_pattern`.
  Patterns are case-insensitive regexes searched in the "/"-joined key path.

  Usable directly as an optax/`lion`/`tiger` mask, since optax calls a callable
  mask with the params:
    lion(3e-4, mask=decay_mask)
    lion(3e-4, mask=functools.partial(decay_mask, decay_embeddings=False))
  """
  emb = _compile(embedding_pattern)
  excl = _compile(exclude_pattern)

  def leaf(path, x):
    name = path_str(path)
    if getattr(x, "ndim", 0) < 2:
      return False
    if not decay_embeddings and emb is not None and emb.search(name):
      return False
    if excl is not None and excl.search(name):
      return False
    return True

  return jax.tree_util.tree_map_with_path(leaf, params)


def param_kinds(params: Any,
                embedding_pattern: str = DEFAULT_EMBEDDING_PATTERN) -> Any:
  """Tree of "vector" (ndim < 2: biases, norm scales), "embedding" (ndim >= 2
  and the path matches `embedding_pattern`) or "matrix" (other ndim >= 2).
  Used by Tiger's parameter-RMS learning-rate rule."""
  emb = _compile(embedding_pattern)

  def leaf(path, x):
    if getattr(x, "ndim", 0) < 2:
      return "vector"
    if emb is not None and emb.search(path_str(path)):
      return "embedding"
    return "matrix"

  return jax.tree_util.tree_map_with_path(leaf, params)


def init_centres(params: Any,
                 norm_scale_pattern: str = DEFAULT_NORM_SCALE_PATTERN) -> Any:
  """Tree of floats: the value each leaf is initialised around, 1.0 for norm
  gains (ndim < 2 and the path matches `norm_scale_pattern`), 0.0 otherwise.
  Su's Tiger shrinks a variable toward it on a NaN gradient (gamma -> 1)."""
  rx = _compile(norm_scale_pattern)

  def leaf(path, x):
    is_gain = (getattr(x, "ndim", 0) < 2 and rx is not None
               and rx.search(path_str(path)) is not None)
    return 1.0 if is_gain else 0.0

  return jax.tree_util.tree_map_with_path(leaf, params)
