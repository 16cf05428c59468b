"""The bottom of the attention modules: `AttentionConfig` and the rotations its kernels share.

attention.py (the XLA paths and the module), rerope_blockwise.py (tiled online softmax),
pallas_rerope.py (the Pallas kernel) and fast_attention.py (kernel dispatch) all import this module and
none of them imports attention.py, so the four have no import cycle:

    attention_config <- rerope_blockwise <- pallas_rerope <- fast_attention <- attention

ReRoPE (https://kexue.fm/archives/9708): the logits are (R_i q_i)^T (R_j k_j) for |i - j| < w ("near")
and clamped outside; every path builds the same rotated copies with `rotated_copies`.
"""
import dataclasses
import functools

import jax.numpy as jnp

from kexue_jax.nn import positions as pos_lib

POSITIONS = ("rope", "none", "rerope", "leaky_rerope", "alibi", "xpos", "rope2d", "rope_tie")
TWO_D = ("rope2d", "rope_tie")
QK_NORMS = ("none", "kna", "qna", "cosa")
LOGN = ("none", "train", "retrofit")
REROPE_IMPLS = ("auto", "two_matrix", "relative", "blockwise")
IMPLS = ("dense", "blockwise")
KERNELS = ("xla", "auto", "splash", "cudnn", "pallas_rerope")


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
  """Hashable attention options (all defaulted).

  position: one of POSITIONS. "leaky_rerope" uses leaky_k (k < 1 is the
    training-time inverse-Leaky form, kexue.fm/archives/9728).
  scaling: positions.RopeScaling (PI / NTK-old/aware/fixed/mixed / dynamic / YaRN),
    applies to "rope", "rerope" and "leaky_rerope" (not to xPos / 2D / RoPE-Tie).
  logn: "none" | "train" (q * log_{L_train} n) | "retrofit" (q * max(1, log_{L_train} n));
    logn_base_length = L_train.
  qk_norm: "none" | "kna" | "qna" | "cosa"; CosA uses lambda = cosa_scale * log n with
    n = logn_base_length / 2 when logn == "none", else the per-row n (9859).
  window: sliding-window size w (query sees keys with 0 <= i-j < w); with
    lambda_first_tokens > 0 it also sees the first tokens (Lambda-mask).
  rerope_window, leaky_k: ReRoPE window w and leak k.
  rerope_impl: "auto" (relative form for one query, two matrices otherwise),
    "two_matrix", "relative" (one score matrix, keys re-rotated per query),
    "blockwise" (online softmax over tiles, rerope_blockwise.py).
  impl: "dense" (n x n scores) | "blockwise" (tiled online softmax, memory
    O(n block), skips causal / out-of-window tiles) for positions "rope",
    "none", "rerope", "leaky_rerope" with causal/bidirectional, key padding,
    sliding window and Lambda masks (no dropout, segment ids or extra mask).
    block_size: the tile size.
  kernel: "xla" (the paths above) | "auto" | "splash" | "cudnn" | "pallas_rerope":
    fast kernels where the config is expressible, else XLA with a one-line
    log (fast_attention.py; "auto" = XLA on CPU).
  """
  position: str = "rope"
  rope_base: float = 10000.0
  rotary_fraction: float = 1.0
  causal: bool = True
  window: int | None = None
  rope_convention: str = "rotate_half"
  scaling: pos_lib.RopeScaling | None = None
  logn: str = "none"
  logn_base_length: int = 512
  qk_norm: str = "none"
  cosa_scale: float = 4.0
  rerope_window: int = 512
  leaky_k: float = 16.0
  rerope_impl: str = "auto"
  impl: str = "dense"
  block_size: int = 256
  lambda_first_tokens: int = 0
  xpos_scale_base: float = 512.0
  kernel: str = "xla"

  def __post_init__(self):
    def check(name, value, allowed):
      if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}; use one of {allowed}.")
    check("position method", self.position, POSITIONS)
    check("qk_norm", self.qk_norm, QK_NORMS)
    check("logn mode", self.logn, LOGN)
    check("rerope_impl", self.rerope_impl, REROPE_IMPLS)
    check("impl", self.impl, IMPLS)
    check("kernel", self.kernel, KERNELS)
    check("rope_convention", self.rope_convention, pos_lib.CONVENTIONS)
    if self.window is not None and self.window < 1:
      raise ValueError(f"window must be >= 1 (or None for full attention), got {self.window}.")
    if self.lambda_first_tokens < 0:
      raise ValueError(f"lambda_first_tokens must be >= 0, got {self.lambda_first_tokens}.")
    if self.lambda_first_tokens and self.window is None:
      raise ValueError("lambda_first_tokens (Lambda-mask) needs a sliding window: set window.")
    if self.rerope_window < 1:
      raise ValueError(f"rerope_window must be >= 1, got {self.rerope_window}.")
    if not self.leaky_k > 0:
      raise ValueError(f"leaky_k must be > 0 (k > 1 Leaky ReRoPE, k < 1 inverse-Leaky), "
                       f"got {self.leaky_k}.")
    if self.logn != "none" and self.logn_base_length < 2:
      raise ValueError(f"logn_base_length (L_train) must be >= 2, got {self.logn_base_length}.")
    if self.qk_norm == "cosa" and self.logn == "retrofit":
      raise ValueError("qk_norm='cosa' sets its own log n temperature; use logn='none' "
                       "(fixed n = L_train/2) or 'train' (per-row n), not 'retrofit'.")
    if self.block_size < 1:
      raise ValueError(f"block_size must be >= 1, got {self.block_size}.")

  @property
  def is_rerope(self):
    return self.position in ("rerope", "leaky_rerope")


# ----------------------------------------------------------------------------
# Rotations shared by the ReRoPE paths.

def rope_kwargs(c, length):
  return dict(base=c.rope_base, rotary_fraction=c.rotary_fraction,
              convention=c.rope_convention, scaling=c.scaling, length=length)


def leak(c):
  return c.leaky_k if c.position == "leaky_rerope" else None


def rerope_far_rotations(q_BLHD, k_BSHD, q_pos_BL, k_pos_BS, c, length):
  """The rotated tensors behind the 'far' ReRoPE score matrices (9708).

  past (i - j >= w):   (R^{w} q)^T k                      ReRoPE
                       (R^{(i-w)/k + w} q)^T R^{j/k} k     Leaky  -> rel (i-j-w)/k + w
  future (j - i >= w): (R^{-w} q)^T k, or (R^{(i+w)/k - w} q)^T R^{j/k} k.
  Returns (q_past, q_future, k_far).
  """
  rope = functools.partial(pos_lib.apply_rope, **rope_kwargs(c, length))
  w, kk = float(c.rerope_window), leak(c)
  if kk is None:
    return (rope(q_BLHD, jnp.full_like(q_pos_BL, w)),
            rope(q_BLHD, jnp.full_like(q_pos_BL, -w)), k_BSHD)
  return (rope(q_BLHD, (q_pos_BL - w) / kk + w), rope(q_BLHD, (q_pos_BL + w) / kk - w),
          rope(k_BSHD, k_pos_BS / kk))


def rotated_copies(q_BLHD, k_BSHD, q_pos_BL, k_pos_BS, c, length):
  """(q_near, q_past, q_future, k_near, k_far) for the tiled paths (blockwise XLA, Pallas).

  NoPE: all un-rotated; RoPE: near = RoPE and the far copies equal the near ones (every tile is near);
  ReRoPE / Leaky ReRoPE: far copies from `rerope_far_rotations`. Causal: q_future = q_past (never read).
  """
  if c.position == "none":
    q_near = q_past = q_fut = q_BLHD
    k_near = k_far = k_BSHD
  else:
    rope = functools.partial(pos_lib.apply_rope, **rope_kwargs(c, length))
    q_near, k_near = rope(q_BLHD, q_pos_BL), rope(k_BSHD, k_pos_BS)
    if c.is_rerope:
      q_past, q_fut, k_far = rerope_far_rotations(q_BLHD, k_BSHD, q_pos_BL, k_pos_BS, c, length)
    else:
      q_past = q_fut = q_near
      k_far = k_near
  if c.causal:
    q_fut = q_past
  return q_near, q_past, q_fut, k_near, k_far
