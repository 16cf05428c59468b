"""Literal NumPy float64 references for positions and attention (tests only).

Nothing here calls kexue_jax code. Every rotation is an explicit d x d
matrix R_n, every relative-position map an explicit matrix P_ij, every score
a Python loop over (b, h, i, j). Slow on purpose; keep shapes tiny.
The config object is only read for its fields (plain data).
"""
import math

import numpy as np


# ----------------------------------------------------------------------------
# Frequencies, written in Su's "beta-base" form (kexue.fm/archives/9675, 9706).

def frequencies(d, base=10000.0, scaling=None, length=None):
  """theta_m for m = 1..d/2 (index m-1), float64."""
  half = d // 2
  beta = base ** (2.0 / d)
  plain = np.array([beta ** -(m - 1) for m in range(1, half + 1)])
  kind = "none" if scaling is None else scaling.kind
  if kind == "none":
    return plain
  k = scaling.factor
  if kind == "pi":
    return np.array([t / k for t in plain])
  if kind == "ntk_old":            # base -> base * k, i.e. beta -> beta * k^(2/d)
    lam = k ** (2.0 / d)
    return np.array([(beta * lam) ** -(m - 1) for m in range(1, half + 1)])
  if kind == "ntk_aware":          # bloc97: lambda = k^(2/(d-2))
    lam = k ** (2.0 / (d - 2))
    return np.array([(beta * lam) ** -(m - 1) for m in range(1, half + 1)])
  if kind == "ntk_fixed":          # n / (lambda (beta lambda)^(m-1))
    lam = k ** (2.0 / d)
    return np.array([1.0 / (lam * (beta * lam) ** (m - 1)) for m in range(1, half + 1)])
  if kind == "ntk_mixed":          # mixed radix: lambda_1 ... lambda_m = exp(a m^b)
    b = scaling.mixed_b
    a = math.log(k) / half ** b
    lams = [math.exp(a * (m ** b - (m - 1) ** b)) for m in range(1, half + 1)]
    out, prod = [], 1.0
    for m in range(1, half + 1):
      prod *= lams[m - 1]
      out.append(1.0 / (beta ** (m - 1) * prod))
    return np.array(out)
  if kind == "yarn":
    out = []
    for t in plain:
      r = scaling.train_length * t / (2 * math.pi)
      if r > scaling.yarn_beta:
        g = 1.0
      elif r < scaling.yarn_alpha:
        g = 0.0
      else:
        g = (r - scaling.yarn_alpha) / (scaling.yarn_beta - scaling.yarn_alpha)
      out.append((g + (1 - g) / k) * t)
    return np.array(out)
  if kind == "dynamic_ntk":
    ell = scaling.dynamic_length or length
    new_base = base
    if k * ell / scaling.train_length - (k - 1) > 1:
      new_base = base * (k * ell / scaling.train_length - (k - 1)) ** (d / (d - 2))
    return np.array([new_base ** (-2.0 * (m - 1) / d) for m in range(1, half + 1)])
  raise ValueError(kind)


def pair_indices(d, convention):
  """The (a, b) dim indices of each rotated pair."""
  if convention == "interleaved":
    return [(2 * p, 2 * p + 1) for p in range(d // 2)]
  return [(p, p + d // 2) for p in range(d // 2)]


def rotation_matrix(angles, d_total, convention="rotate_half"):
  """Explicit d_total x d_total matrix rotating pair p by angles[p]; the dims
  beyond 2 * len(angles) are left alone (partial rotary)."""
  rot = 2 * len(angles)
  R = np.eye(d_total)
  for (a, b), ang in zip(pair_indices(rot, convention), angles):
    R[a, a], R[a, b] = math.cos(ang), -math.sin(ang)
    R[b, a], R[b, b] = math.sin(ang), math.cos(ang)
  return R


def rope_matrix(n, d_total, theta, convention="rotate_half"):
  """R_n for 1D RoPE with frequencies theta (len rot/2)."""
  return rotation_matrix([n * t for t in theta], d_total, convention)


def rope2d_matrix(y, x, d, base=10000.0, convention="rotate_half"):
  """diag(R_y, R_x): each half is 1D RoPE over d/2 dims (kexue.fm/archives/8397)."""
  half = d // 2
  theta = frequencies(half, base)
  R = np.zeros((d, d))
  R[:half, :half] = rope_matrix(y, half, theta, convention)
  R[half:, half:] = rope_matrix(x, half, theta, convention)
  return R


def rope_tie_matrix(px, py, d, base=10000.0, convention="rotate_half"):
  """RoPE-Tie: pair p keeps theta_p and uses axis x if p even, y if p odd."""
  theta = frequencies(d, base)
  return rotation_matrix([(px if p % 2 == 0 else py) * t for p, t in enumerate(theta)], d,
                         convention)


def xpos_vector_scale(n, d, scale_base, convention="rotate_half"):
  """Diagonal of the xPos scale zeta_p^(n/scale_base) per dim."""
  s = np.ones(d)
  for p, (a, b) in enumerate(pair_indices(d, convention)):
    zeta = (2 * p + 0.4 * d) / (1.4 * d)
    s[a] = s[b] = zeta ** (n / scale_base)
  return s


def alibi_slopes(h):
  """Press et al.: for H a power of two, slope_h = 2^(-8 h / H), h = 1..H."""
  assert (h & (h - 1)) == 0, "reference only covers powers of two"
  return np.array([2.0 ** (-8.0 * i / h) for i in range(1, h + 1)])


def rerope_relative(r, w, k=None):
  """Leaky ReRoPE map written case by case (kexue.fm/archives/9708)."""
  if abs(r) < w:
    return float(r)
  sign = 1.0 if r > 0 else -1.0
  if k is None:
    return sign * w
  return sign * (w + (abs(r) - w) / k)


# ----------------------------------------------------------------------------
# Attention.

def attention(q, k, v, cfg, q_pos=None, k_pos=None, k_valid=None, q_order=None,
              k_order=None):
  """Literal attention: q (B, L, H, D), k/v (B, S, H, D) as float64.

  cfg: an object with the AttentionConfig fields. Positions (B, L) or
  (B, L, 2) for 2D methods; orders default to positions (1D) / token index (2D).
  """
  q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
  B, L, H, D = q.shape
  S = k.shape[1]
  two_d = cfg.position in ("rope2d", "rope_tie")
  if q_pos is None:
    q_pos = np.tile(np.arange(L, dtype=np.float64), (B, 1))
  if k_pos is None:
    k_pos = np.tile(np.arange(S, dtype=np.float64), (B, 1))
  q_pos, k_pos = np.asarray(q_pos, np.float64), np.asarray(k_pos, np.float64)
  if q_order is None:
    q_order = np.tile(np.arange(S - L, S), (B, 1)) if two_d else q_pos
  if k_order is None:
    k_order = np.tile(np.arange(S), (B, 1)) if two_d else k_pos

  rot = int(round(D * cfg.rotary_fraction))
  length = max(S, k_pos.max() + 1) if not two_d else S
  theta = frequencies(rot, cfg.rope_base, cfg.scaling, length)
  conv = cfg.rope_convention
  yarn = 1.0
  if cfg.scaling is not None and cfg.scaling.kind == "yarn":
    yarn = (cfg.scaling.yarn_mscale * math.log(cfg.scaling.factor) + 1) ** 2
  w = cfg.rerope_window
  leak = cfg.leaky_k if cfg.position == "leaky_rerope" else None

  out = np.zeros((B, L, H, v.shape[-1]))
  for b in range(B):
    # Explicit mask and relative-position matrices.
    allowed = np.zeros((L, S), bool)
    for i in range(L):
      for j in range(S):
        r = q_order[b, i] - k_order[b, j]
        ok = True
        if cfg.causal and r < 0:
          ok = False
        if cfg.window is not None:
          inside = (0 <= r < cfg.window) if cfg.causal else (abs(r) < cfg.window)
          if cfg.lambda_first_tokens and k_order[b, j] < cfg.lambda_first_tokens:
            inside = True
          ok = ok and inside
        if k_valid is not None and not k_valid[b, j]:
          ok = False
        allowed[i, j] = ok
    for h in range(H):
      scores = np.full((L, S), -np.inf)
      for i in range(L):
        # Per-query multiplier.
        n = q_order[b, i] + 1 if cfg.causal else allowed[i].sum()
        qi = q[b, i, h].copy()
        if cfg.qk_norm in ("qna", "cosa"):
          qi = qi / np.linalg.norm(qi)
        if cfg.qk_norm == "cosa":
          nn_ = n if cfg.logn == "train" else cfg.logn_base_length / 2
          c = cfg.cosa_scale * math.log(max(nn_, 1))
        else:
          c = 1.0
          if cfg.logn == "train":
            c = math.log(max(n, 1)) / math.log(cfg.logn_base_length)
          elif cfg.logn == "retrofit":
            c = max(1.0, math.log(max(n, 1)) / math.log(cfg.logn_base_length))
          if cfg.qk_norm == "none":
            c /= math.sqrt(D)
        c *= yarn
        for j in range(S):
          if not allowed[i, j]:
            continue
          kj = k[b, j, h].copy()
          if cfg.qk_norm in ("kna", "cosa"):
            kj = kj / np.linalg.norm(kj)
          pm, pn = q_pos[b, i], k_pos[b, j]
          if cfg.position in ("none", "alibi"):
            s = qi @ kj
          elif cfg.position == "rope":
            s = (rope_matrix(pm, D, theta, conv) @ qi) @ (rope_matrix(pn, D, theta, conv) @ kj)
          elif cfg.position in ("rerope", "leaky_rerope"):
            # (R_m q)^T (R_n k) = q^T R_{n-m} k: rotate q by the mapped i - j.
            P = rerope_relative(pm - pn, w, leak)
            s = (rope_matrix(P, D, theta, conv) @ qi) @ kj
          elif cfg.position == "xpos":
            sq = xpos_vector_scale(pm, D, cfg.xpos_scale_base, conv)
            sk = xpos_vector_scale(-pn, D, cfg.xpos_scale_base, conv)
            th = frequencies(D, cfg.rope_base)
            s = (sq * (rope_matrix(pm, D, th, conv) @ qi)) @ (sk * (rope_matrix(pn, D, th, conv) @ kj))
          elif cfg.position == "rope2d":
            s = (rope2d_matrix(pm[0], pm[1], D, cfg.rope_base, conv) @ qi) @ (
                rope2d_matrix(pn[0], pn[1], D, cfg.rope_base, conv) @ kj)
          elif cfg.position == "rope_tie":
            s = (rope_tie_matrix(pm[0], pm[1], D, cfg.rope_base, conv) @ qi) @ (
                rope_tie_matrix(pn[0], pn[1], D, cfg.rope_base, conv) @ kj)
          else:
            raise ValueError(cfg.position)
          s *= c
          if cfg.position == "alibi":
            s -= alibi_slopes(H)[h] * abs(pm - pn)
          scores[i, j] = s
      for i in range(L):
        if not allowed[i].any():
          continue
        e = np.exp(scores[i] - scores[i].max())
        p = e / e.sum()
        out[b, i, h] = p @ v[b, :, h]
  return out
