"""Blockwise (flash-style) attention with an online softmax, built for ReRoPE.

ReRoPE's logits (https://kexue.fm/archives/9708) are

    a_ij = (R_i q_i)^T (R_j k_j)    if |i - j| < w        (RoPE, "near")
         = (R_w q_i)^T k_j          if i - j >= w         (clamped, "past")
         = (R_-w q_i)^T k_j         if j - i >= w         (clamped, "future", bidirectional)

(Leaky: the clamped ones become (R_{(i-w)/k+w} q_i)^T (R_{j/k} k_j), etc.)
The two-matrix version evaluates both n x n score matrices. As Su notes in
kexue.fm/archives/9948, with tiled attention only the tiles that straddle
|i - j| = w need both; every other tile needs exactly one matmul, like plain
attention. Here each (query block, key block) tile is classified from the
min/max positions of the two blocks (over the whole batch) into

    skip (causal, all j > i; or entirely outside a sliding window / Lambda band)
    | near | past | future | mixed

and `lax.switch` runs only that branch; scores are merged with the online
softmax (running max m, normaliser l, accumulator), so memory is
O(B H block^2) per tile plus O(n d) for the rotated q/k copies, never O(n^2).
The same kernel serves plain RoPE and NoPE (every live tile is "near"), so
`AttentionConfig(impl="blockwise")` gives a memory-light path for those too,
and a sliding window then costs O(n w) instead of O(n^2).
The loop is a `lax.map` over query blocks with a `lax.fori_loop` over key
blocks: plain jnp/lax, so it runs on CPU/GPU/TPU; a Pallas kernel could
replace the tile body later.
"""
import jax
import jax.numpy as jnp

from kexue_jax.nn import attention_config as acfg

_NEG = -1e30


def _pad_to(x, axis, multiple, value=0):
  n = x.shape[axis]
  extra = (-n) % multiple
  if not extra:
    return x
  pad = [(0, 0)] * x.ndim
  pad[axis] = (0, extra)
  return jnp.pad(x, pad, constant_values=value)


def _blocks(x, block):
  """(B, N, ...) -> (N / block, B, block, ...)."""
  B, N = x.shape[:2]
  return jnp.moveaxis(x.reshape((B, N // block, block) + x.shape[2:]), 1, 0)


BLOCKWISE_POSITIONS = ("rope", "none", "rerope", "leaky_rerope")


def blockwise_attention(q_BLHD, k_BSHD, v_BSHD, *, q_positions_BL, k_positions_BS,
                        config, k_valid_BS=None, length=None, block_size=None):
  """Tiled attention with online softmax; q already carries its logit scale.

  Position methods: "rope", "none" (every live tile is "near": one matmul) and
  "rerope" / "leaky_rerope" (near / past / future / mixed tiles, see above).
  Masks: causal (by positions), sliding window and Lambda-mask (tiles entirely
  outside the band are skipped), key padding. Returns (B, L, H, Dv) in v's
  dtype; equals the dense path (attention.attend) to float32 rounding.
  """
  c = config
  if c.position not in BLOCKWISE_POSITIONS:
    raise ValueError(f"blockwise attention supports positions {BLOCKWISE_POSITIONS}, "
                     f"got {c.position!r}; use the dense path.")
  B, L, H, D = q_BLHD.shape
  S = k_BSHD.shape[1]
  blk = block_size or c.block_size
  bq, bk = min(blk, L), min(blk, S)
  # A ReRoPE window beyond every distance makes every tile "near" (plain RoPE).
  w = float(c.rerope_window) if c.is_rerope else float("inf")
  win = float(c.window) if c.window is not None else float("inf")
  first = float(c.lambda_first_tokens)
  q_pos = jnp.asarray(q_positions_BL, jnp.float32)
  k_pos = jnp.asarray(k_positions_BS, jnp.float32)
  k_valid = jnp.ones((B, S), bool) if k_valid_BS is None else jnp.asarray(k_valid_BS, bool)

  q_near, q_past, q_fut, k_near, k_far = acfg.rotated_copies(q_BLHD, k_BSHD, q_pos, k_pos, c, length)

  # Pad to whole blocks: padded queries repeat the last position (dropped at
  # the end); padded keys repeat the last position and are invalid.
  def pad_pos(p, block):
    padded = _pad_to(p, 1, block)
    last = p[:, -1:]
    idx = jnp.arange(padded.shape[1])[None]
    return jnp.where(idx < p.shape[1], padded, last)
  qp, kp = pad_pos(q_pos, bq), pad_pos(k_pos, bk)
  Q = [_blocks(_pad_to(t, 1, bq), bq) for t in (q_near, q_past, q_fut)]
  K = [_blocks(_pad_to(t, 1, bk), bk) for t in (k_near, k_far, v_BSHD)]
  qp_b, kp_b = _blocks(qp, bq), _blocks(kp, bk)
  kv_b = _blocks(_pad_to(k_valid, 1, bk, False), bk)
  nq, nk = qp_b.shape[0], kp_b.shape[0]
  # Tile classification from per-block position ranges (over the batch).
  q_min, q_max = qp_b.min(axis=(1, 2)), qp_b.max(axis=(1, 2))
  k_min, k_max = kp_b.min(axis=(1, 2)), kp_b.max(axis=(1, 2))
  Dv = v_BSHD.shape[-1]
  dot = lambda a, b: jnp.einsum("bqhd,bkhd->bhqk", a, b, preferred_element_type=jnp.float32)

  def one_q_block(args):
    qn, qpa, qf, qpos, qmin, qmax = args

    def body(j, carry):
      kn, kf, vb = K[0][j], K[1][j], K[2][j]
      near = lambda r: dot(qn, kn)
      past = lambda r: dot(qpa, kf)
      fut = lambda r: dot(qf, kf)
      def mixed(r):
        s = jnp.where(r >= w, past(r), near(r))
        if not c.causal:
          s = jnp.where(r <= -w, fut(r), s)
        return s

      def update(score_fn):
        def f(carry):
          # Everything per tile lives inside the branch, so skipped tiles cost nothing.
          m, l, acc = carry
          r = qpos[:, None, :, None] - kp_b[j][:, None, None, :]     # (B, 1, bq, bk)
          mask = kv_b[j][:, None, None, :]
          if c.causal:
            mask = mask & (r >= 0)
          if c.window is not None:
            band = (r < win) if c.causal else (jnp.abs(r) < win)
            if first:
              band = band | (kp_b[j] < first)[:, None, None, :]
            mask = mask & band
          s = jnp.where(mask, score_fn(r), _NEG)
          m_new = jnp.maximum(m, s.max(-1))
          corr = jnp.exp(m - m_new)
          p = jnp.exp(s - m_new[..., None]) * mask
          l = l * corr + p.sum(-1)
          pv = jnp.einsum("bhqk,bkhd->bhqd", p.astype(vb.dtype), vb,
                          preferred_element_type=jnp.float32)
          return m_new, l, acc * corr[..., None] + pv
        return f

      rmin, rmax = qmin - k_max[j], qmax - k_min[j]
      cat = jnp.where(rmin >= w, 2,                                    # past only
            jnp.where((rmin > -w) & (rmax < w), 1,                     # near only
            jnp.where(rmax <= -w, 3, 4)))                              # future / mixed
      dead = (rmax < 0) if c.causal else jnp.array(False)              # all j after i
      if c.window is not None:                                         # all outside the band
        outside = (rmin >= win) if c.causal else ((rmin >= win) | (rmax <= -win))
        if first:
          outside = outside & (k_min[j] >= first)
        dead = dead | outside
      cat = jnp.where(dead, 0, cat)                                    # fully masked: skip
      branches = [lambda cr: cr, update(near), update(past), update(fut), update(mixed)]
      return jax.lax.switch(cat, branches, carry)

    init = (jnp.full((B, H, bq), _NEG, jnp.float32), jnp.zeros((B, H, bq), jnp.float32),
            jnp.zeros((B, H, bq, Dv), jnp.float32))
    m, l, acc = jax.lax.fori_loop(0, nk, body, init)
    out = acc / jnp.where(l > 0, l, 1.0)[..., None]
    return jnp.moveaxis(out, 1, 2)                                     # (B, bq, H, Dv)

  out = jax.lax.map(one_q_block, (Q[0], Q[1], Q[2], qp_b, q_min, q_max))  # (nq, B, bq, H, Dv)
  out = jnp.moveaxis(out, 0, 1).reshape(B, nq * bq, H, Dv)[:, :L]
  return out.astype(v_BSHD.dtype)

