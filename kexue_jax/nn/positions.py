"""Rotary position embeddings (RoPE) and their length-extrapolation variants.

Everything here is a pure function on arrays; attention.py composes them.

RoPE (https://kexue.fm/archives/8265): pair p of the rotated dims is turned by
the angle  n * theta_p,  theta_p = base^(-2p/d),  p = 0 .. d/2-1, so that

    (R_m q)^T (R_n k) = q^T R_{n-m} k          (scores depend only on n - m).

Pairing conventions (both give the same scores up to a fixed permutation of
the head dim; https://kexue.fm/archives/8265):
  "interleaved":  pairs (2p, 2p+1)        -- Su / RoFormer / bert4keras.
  "rotate_half":  pairs (p, p + d/2)      -- GPT-NeoX / LLaMA.

Frequency scalings (`RopeScaling`; https://kexue.fm/archives/9675, 9706, 9948), with
k = `factor`, d = number of rotated dims, beta = base^(2/d):
  "none"         theta_p = base^(-2p/d)
  "pi"           theta_p / k              (position interpolation, n -> n/k)
  "ntk_old"      (base*k)^(-2p/d)         (Su, kexue.fm/archives/9675: lambda=k^(2/d))
  "ntk_aware"    (base*k^(d/(d-2)))^(-2p/d)   (bloc97; lowest frequency = PI)
  "ntk_fixed"    theta_p * k^(-2(p+1)/d)  (kexue.fm/archives/9706: n/(lambda (beta lambda)^(m-1)))
  "ntk_mixed"    theta_p * exp(-a (p+1)^b),  a (d/2)^b = log k   (9706; b=1 -> fixed, b=0 -> PI)
  "dynamic_ntk"  base' = base * (k L/L_train - (k-1))^(d/(d-2)) if L > L_train  (emozilla; 9948)
  "yarn"         theta_p * (gamma_p + (1-gamma_p)/k),
                 gamma_p = clip((r_p - alpha)/(beta - alpha), 0, 1),
                 r_p = L_train theta_p / (2 pi)  (rotations done in training; YaRN /
                 NTK-by-parts, Su's form in kexue.fm/archives/9948), plus logits x
                 (0.1 ln k + 1)^2 (`yarn_attention_factor`). Note: the jquesnelle/yarn
                 code ramps linearly over *dimension indices* between floor/ceil of
                 dim(beta) and dim(alpha); this continuous ramp in r is Su's statement.
                 yarn_ramp="hf" selects that index ramp (Hugging Face transformers'
                 `modeling_rope_utils._compute_yarn_parameters`), for loaded checkpoints.
  "llama3"       Llama 3.1's by-parts rule (HF `_compute_llama3_parameters`): wavelength
                 lambda_p = 2 pi / theta_p; lambda_p < L/hf keep theta_p, lambda_p > L/lf
                 use theta_p / k, in between (1-s) theta_p/k + s theta_p with
                 s = (L/lambda_p - lf)/(hf - lf), L = train_length, lf/hf = low/high_freq_factor.
  "longrope"     theta_p / f_p with per-pair factors f (HF `_compute_longrope_parameters`,
                 LongRoPE arXiv 2402.13753): `long_factor` when the current length
                 exceeds train_length, else `short_factor`; cos/sin times
                 sqrt(1 + ln k / ln L_train) (`rope_attention_factor`).

Also here: `apply_rope_2d` (images, kexue.fm/archives/8397), `apply_rope_tie`
+ `rope_tie_positions` (mixed text + image sequences, kexue.fm/archives/10040),
`apply_xpos`, `alibi_slopes`, `rerope_relative_position` (ReRoPE / Leaky /
inverse-Leaky map) and `logn_factor` (log-n query scaling).

Multimodal layout: RoPE-Tie (post 17), because (i) it is the one variant of
the series read in full (the RoPE-TV follow-up, 10352, is known only second
hand), (ii) text tokens at (n, n) reduce *exactly* to RoPE-1D, so a text
model's weights keep working, and (iii) the gap before and after an image is
the same (w+1, h+1), so text on both sides of an image keeps its relative
geometry. Image patches keep 2D relativity inside the image.

Angles are always computed in float32; outputs keep the input dtype.
"""
import dataclasses
import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np

CONVENTIONS = ("rotate_half", "interleaved")
SCALINGS = ("none", "pi", "ntk_old", "ntk_aware", "ntk_fixed", "ntk_mixed",
            "dynamic_ntk", "yarn", "llama3", "longrope")
LENGTH_DEPENDENT = ("dynamic_ntk", "longrope")   # frequencies depend on the current length
YARN_RAMPS = ("paper", "hf")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Inference-time RoPE frequency scaling (hashable, so it can live in configs).

  kind: one of SCALINGS.  factor: extension factor k = L_test / L_train.
  train_length: L_train (needed by "dynamic_ntk" and "yarn").
  mixed_b: exponent b of NTK-mixed (Su's best 0.625; bojone/rerope uses 0.75).
  yarn_alpha / yarn_beta: rotation thresholds of the YaRN ramp (1 and 32).
  yarn_mscale: coefficient c in the YaRN temperature (c ln k + 1)^2 on logits.
  dynamic_length: static L for dynamic NTK ("locally static", 9948);
    None = max(number of keys, max key position + 1) at call time.
  yarn_ramp: "paper" (continuous ramp in r, Su / the YaRN paper) or "hf" (HF
    transformers' ramp over pair indices, floor/ceil when yarn_truncate).
  attention_factor: explicit cos/sin multiplier (HF `attention_factor`; logits
    get its square); None = the kind's default (`rope_attention_factor`).
  low_freq_factor / high_freq_factor: Llama 3.1's band edges ("llama3").
  short_factor / long_factor: LongRoPE per-pair factors, d/2 each ("longrope").
  """
  kind: str = "none"
  factor: float = 1.0
  train_length: int | None = None
  mixed_b: float = 0.625
  yarn_alpha: float = 1.0
  yarn_beta: float = 32.0
  yarn_mscale: float = 0.1
  dynamic_length: int | None = None
  yarn_ramp: str = "paper"
  yarn_truncate: bool = True
  attention_factor: float | None = None
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  short_factor: tuple[float, ...] = ()
  long_factor: tuple[float, ...] = ()

  def __post_init__(self):
    if self.kind not in SCALINGS:
      raise ValueError(f"Unknown RoPE scaling kind {self.kind!r}; use one of {SCALINGS}.")
    if not self.factor >= 1.0:
      raise ValueError(f"RopeScaling.factor must be >= 1 (got {self.factor}); "
                       "it is the extension factor L_test / L_train.")
    if self.kind in ("dynamic_ntk", "yarn", "llama3", "longrope") and not self.train_length:
      raise ValueError(f"RopeScaling(kind={self.kind!r}) needs train_length "
                       "(the pre-training length L_train).")
    if self.kind == "yarn" and not self.yarn_beta > self.yarn_alpha:
      raise ValueError("RopeScaling: yarn_beta must be > yarn_alpha "
                       f"(got alpha={self.yarn_alpha}, beta={self.yarn_beta}).")
    if self.yarn_ramp not in YARN_RAMPS:
      raise ValueError(f"Unknown yarn_ramp {self.yarn_ramp!r}; use one of {YARN_RAMPS}.")
    if self.kind == "llama3" and not self.high_freq_factor > self.low_freq_factor > 0:
      raise ValueError("RopeScaling(kind='llama3') needs high_freq_factor > low_freq_factor > 0 "
                       f"(got {self.high_freq_factor}, {self.low_freq_factor}).")
    if self.kind == "longrope" and (not self.short_factor or
                                    len(self.short_factor) != len(self.long_factor)):
      raise ValueError("RopeScaling(kind='longrope') needs short_factor and long_factor "
                       "of equal length (rotated dims / 2).")


def rotary_dims(head_dim: int, rotary_fraction: float = 1.0) -> int:
  """Number of leading head dims that are rotated (must be even and > 0)."""
  if not 0.0 < rotary_fraction <= 1.0:
    raise ValueError(f"rotary_fraction must be in (0, 1], got {rotary_fraction}.")
  rot = int(round(head_dim * rotary_fraction))
  if rot < 2 or rot % 2:
    raise ValueError(
        f"RoPE rotates pairs of dims: head_dim * rotary_fraction = {head_dim} * "
        f"{rotary_fraction} = {rot} must be an even number >= 2. Use an even head_dim "
        "or change rotary_fraction.")
  return rot


def rope_inv_freq(rot_dim: int, *, base: float = 10000.0,
                  scaling: RopeScaling | None = None, length=None):
  """theta_p for p = 0..rot_dim/2-1, float32, after the frequency `scaling`.

  `length` (static int or traced scalar) is the current length L for dynamic NTK.
  """
  if rot_dim % 2:
    raise ValueError(f"rot_dim must be even, got {rot_dim}.")
  if not base > 1.0:
    raise ValueError(f"RoPE base must be > 1, got {base}.")
  d = rot_dim
  p = np.arange(d // 2, dtype=np.float64)
  theta = base ** (-2.0 * p / d)
  s = scaling or RopeScaling()
  k = s.factor
  if s.kind == "none":
    pass
  elif s.kind == "pi":
    theta = theta / k
  elif s.kind == "ntk_old":
    theta = (base * k) ** (-2.0 * p / d)
  elif s.kind == "ntk_aware":
    theta = (base * k ** (d / (d - 2.0))) ** (-2.0 * p / d) if d > 2 else theta / k
  elif s.kind == "ntk_fixed":
    theta = theta * k ** (-2.0 * (p + 1) / d)
  elif s.kind == "ntk_mixed":
    a = math.log(k) / (d / 2.0) ** s.mixed_b
    theta = theta * np.exp(-a * (p + 1) ** s.mixed_b)
  elif s.kind == "yarn" and s.yarn_ramp == "hf":
    # Pair index where the training length makes r rotations: d ln(L / (2 pi r)) / (2 ln base).
    dim_of = lambda r: d * math.log(s.train_length / (2.0 * math.pi * r)) / (2.0 * math.log(base))
    lo, hi = dim_of(s.yarn_beta), dim_of(s.yarn_alpha)
    if s.yarn_truncate:
      lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, d - 1)
    hi = hi + 0.001 if hi == lo else hi
    gamma = 1.0 - np.clip((p - lo) / (hi - lo), 0.0, 1.0)
    theta = theta * (gamma + (1.0 - gamma) / k)
  elif s.kind == "yarn":
    r = s.train_length * theta / (2.0 * math.pi)
    gamma = np.clip((r - s.yarn_alpha) / (s.yarn_beta - s.yarn_alpha), 0.0, 1.0)
    theta = theta * (gamma + (1.0 - gamma) / k)
  elif s.kind == "llama3":
    wavelen = 2.0 * math.pi / theta
    smooth = (s.train_length / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    mid = (1.0 - smooth) * theta / k + smooth * theta
    theta = np.where(wavelen < s.train_length / s.high_freq_factor, theta,
                     np.where(wavelen > s.train_length / s.low_freq_factor, theta / k, mid))
  elif s.kind == "longrope":
    if len(s.long_factor) != d // 2:
      raise ValueError(f"longrope factors have {len(s.long_factor)} entries, the rotated dims "
                       f"need d/2 = {d // 2}.")
    use_long = True if length is None else jnp.asarray(length, jnp.float32) > s.train_length
    factors = jnp.where(use_long, jnp.asarray(s.long_factor, jnp.float32),
                        jnp.asarray(s.short_factor, jnp.float32))
    return jnp.asarray(theta, jnp.float32) / factors
  elif s.kind == "dynamic_ntk":
    length = s.dynamic_length if s.dynamic_length is not None else length
    if length is None:
      raise ValueError("dynamic_ntk needs the current length: pass length= or set "
                       "RopeScaling.dynamic_length.")
    ell = jnp.asarray(length, jnp.float32)
    ratio = jnp.maximum(k * ell / s.train_length - (k - 1.0), 1.0)
    # base' = base * ratio^(d/(d-2)); theta'_p = base'^(-2p/d). d == 2 has one
    # frequency theta_0 = 1 that no base change can move.
    expo = d / (d - 2.0) if d > 2 else 0.0
    log_base = math.log(base) + expo * jnp.log(ratio)
    return jnp.exp(-2.0 * jnp.asarray(p, jnp.float32) / d * log_base)
  return jnp.asarray(theta, jnp.float32)


def rope_attention_factor(scaling: RopeScaling | None) -> float:
  """The cos/sin multiplier m of a scaling (HF's `attention_factor`); logits get m^2.

  `scaling.attention_factor` when set; else YaRN: c ln k + 1; LongRoPE:
  sqrt(1 + ln k / ln L_train) for k > 1; 1 for every other kind.
  """
  if scaling is None:
    return 1.0
  if scaling.attention_factor is not None:
    return float(scaling.attention_factor)
  if scaling.kind == "yarn":
    return scaling.yarn_mscale * math.log(scaling.factor) + 1.0
  if scaling.kind == "longrope" and scaling.factor > 1.0:
    return math.sqrt(1.0 + math.log(scaling.factor) / math.log(scaling.train_length))
  return 1.0


def yarn_attention_factor(scaling: RopeScaling | None) -> float:
  """Logit multiplier of YaRN: (c ln k + 1)^2 (1 for scalings without a factor).

  The YaRN code multiplies cos and sin by mscale = c ln k + 1, which scales
  q.k by mscale^2 (Peng et al., arXiv 2309.00071; https://kexue.fm/archives/9948); we fold
  it into the query. Also LongRoPE's / an explicit attention factor (`rope_attention_factor`).
  """
  return rope_attention_factor(scaling) ** 2


def _rotate(x_rot, angles, convention):
  """Rotate the pairs of x_rot (..., d) by angles (..., d/2) (float32)."""
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  if convention == "rotate_half":
    x1, x2 = jnp.split(x_rot, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
  if convention == "interleaved":
    x1, x2 = x_rot[..., 0::2], x_rot[..., 1::2]
    out = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)
    return out.reshape(x_rot.shape)
  raise ValueError(f"Unknown RoPE convention {convention!r}; use one of {CONVENTIONS}.")


def rotate_by_angles(x_BLHD, angles_BLP, *, convention="rotate_half"):
  """Rotate the first 2P dims of x by per-token angles (B, L, P); rest unchanged.

  The building block of every RoPE variant: angles_BLP = position * theta_p
  (1D), or a per-pair choice of axis (2D / RoPE-Tie), or relative rotations.
  """
  if convention not in CONVENTIONS:
    raise ValueError(f"Unknown RoPE convention {convention!r}; use one of {CONVENTIONS}.")
  rot = 2 * angles_BLP.shape[-1]
  if rot > x_BLHD.shape[-1]:
    raise ValueError(f"{rot} rotated dims exceed head_dim {x_BLHD.shape[-1]}.")
  x32 = x_BLHD.astype(jnp.float32)
  ang = angles_BLP.astype(jnp.float32)[..., None, :]      # broadcast over heads
  out = _rotate(x32[..., :rot], ang, convention)
  if rot < x_BLHD.shape[-1]:
    out = jnp.concatenate([out, x32[..., rot:]], axis=-1)
  return out.astype(x_BLHD.dtype)


def apply_rope(x_BLHD, positions_BL, *, base=10000.0, rotary_fraction=1.0,
               convention="rotate_half", scaling=None, length=None):
  """RoPE-1D: x_n -> R_n x_n with explicit (possibly float) positions.

  positions_BL: (B, L) or (L,), int or float. Tokens keep whatever position
  they are given, so packed sequences and dropped tokens work unchanged.
  rotary_fraction < 1 rotates only the first fraction of each head
  (frequencies use the rotated width). `length` feeds dynamic NTK; default
  max(L, max(positions) + 1).
  Same shape and dtype as x; angles in float32.
  """
  if x_BLHD.ndim != 4:
    raise ValueError(f"apply_rope expects x of shape (B, L, H, D), got {x_BLHD.shape}.")
  rot = rotary_dims(x_BLHD.shape[-1], rotary_fraction)
  pos = jnp.asarray(positions_BL, jnp.float32)
  if pos.ndim == 1:
    pos = pos[None, :]
  if scaling is not None and scaling.kind in LENGTH_DEPENDENT and length is None:
    length = jnp.maximum(x_BLHD.shape[1], jnp.max(pos) + 1.0)
  inv_freq = rope_inv_freq(rot, base=base, scaling=scaling, length=length)
  return rotate_by_angles(x_BLHD, pos[..., None] * inv_freq, convention=convention)


def apply_rope_2d(x_BLHD, pos_y_BL, pos_x_BL, *, base=10000.0, convention="rotate_half"):
  """Su's 2D RoPE (https://kexue.fm/archives/8397): R_{x,y} = diag(R_y, R_x).

  The head dim is split in two halves; the first half gets 1D RoPE with the
  row position y, the second with the column position x, each with the
  ordinary 1D schedule over d/2 dims, theta_p = base^(-2p/(d/2)). Then
  R_{y1,x1}^T R_{y2,x2} = R_{y2-y1, x2-x1}: scores depend only on (dy, dx).
  head_dim must be divisible by 4.
  """
  d = x_BLHD.shape[-1]
  if d % 4:
    raise ValueError(f"2D RoPE needs head_dim divisible by 4 (two rotated halves), got {d}.")
  xy, xx = jnp.split(x_BLHD, 2, axis=-1)
  return jnp.concatenate([
      apply_rope(xy, pos_y_BL, base=base, convention=convention),
      apply_rope(xx, pos_x_BL, base=base, convention=convention)], axis=-1)


def apply_rope_tie(x_BLHD, positions_BL2, *, base=10000.0, rotary_fraction=1.0,
                   convention="rotate_half"):
  """Multimodal RoPE-Tie (https://kexue.fm/archives/10040).

  positions_BL2[..., 0] = x (row axis), [..., 1] = y (column axis); text
  token n sits at (n, n). Pair p keeps its 1D frequency theta_p =
  base^(-2p/d) and is driven by axis p mod 2 (alternating selector, so both
  axes span the whole frequency range; Su leaves the split open,
  https://kexue.fm/archives/10040). Because every pair keeps its 1D frequency, a
  pure-text sequence (n, n) is *exactly* RoPE-1D; image patches get the 2D
  relativity of RoPE-2D. Positions come from `rope_tie_positions`.
  """
  rot = rotary_dims(x_BLHD.shape[-1], rotary_fraction)
  pos = jnp.asarray(positions_BL2, jnp.float32)
  if pos.shape[-1] != 2:
    raise ValueError(f"RoPE-Tie positions need a trailing axis of size 2, got {pos.shape}.")
  if pos.ndim == 2:
    pos = pos[None]
  inv_freq = rope_inv_freq(rot, base=base)
  axis_P = np.arange(rot // 2) % 2
  angles = jnp.take(pos, axis_P, axis=-1) * inv_freq
  return rotate_by_angles(x_BLHD, angles, convention=convention)


def rope_tie_positions(layout: Sequence[tuple], start: int = 0) -> np.ndarray:
  """RoPE-Tie positions (L, 2) for a mixed text/image sequence (kexue.fm/archives/10040).

  layout: items ("text", n) or ("image", h, w) (h rows, w columns of patches,
  row-major). Text token -> (n, n). An image after the text position (L, L):
  patch (r, c), r=1..h, c=1..w -> (L + r (w+1), L + c (h+1)); the next text
  token is K = L + (w+1)(h+1). This makes the gap before and after the image
  equal, (w+1, h+1), with integer positions (Su's choice, s=w+1, t=h+1).
  The first text token gets position `start`.
  """
  out, last = [], start - 1
  for item in layout:
    if item[0] == "text":
      n = int(item[1])
      out += [(last + i, last + i) for i in range(1, n + 1)]
      last += n
    elif item[0] == "image":
      h, w = int(item[1]), int(item[2])
      out += [(last + r * (w + 1), last + c * (h + 1))
              for r in range(1, h + 1) for c in range(1, w + 1)]
      last += (w + 1) * (h + 1) - 1
    else:
      raise ValueError(f"layout items are ('text', n) or ('image', h, w), got {item!r}.")
  return np.asarray(out, np.float32).reshape(-1, 2)


def apply_xpos(x_BLHD, positions_BL, *, base=10000.0, scale_base=512.0,
               inverse=False, convention="rotate_half"):
  """xPos (Sun et al., arXiv 2212.10554; kexue.fm/archives/9431 survey).

  q_m -> R_m q_m zeta^(m/scale_base),  k_n -> R_n k_n zeta^(-n/scale_base)
  (inverse=True for keys), zeta_p = (2p + 0.4 d)/(1.4 d), so the score gets
  a decay zeta^((m-n)/scale_base). Positions are used as given (no
  centring), fine for float32 up to a few thousand tokens.
  """
  d = x_BLHD.shape[-1]
  pos = jnp.asarray(positions_BL, jnp.float32)
  if pos.ndim == 1:
    pos = pos[None]
  zeta = jnp.asarray((2.0 * np.arange(d // 2) + 0.4 * d) / (1.4 * d), jnp.float32)
  power = (-pos if inverse else pos)[..., None] / scale_base
  scale_BLP = jnp.exp(power * jnp.log(zeta))
  scale_BLD = (jnp.concatenate([scale_BLP, scale_BLP], -1) if convention == "rotate_half"
               else jnp.repeat(scale_BLP, 2, axis=-1))
  rotated = apply_rope(x_BLHD, pos, base=base, convention=convention)
  return (rotated.astype(jnp.float32) * scale_BLD[:, :, None, :]).astype(x_BLHD.dtype)


def alibi_slopes(num_heads: int) -> np.ndarray:
  """ALiBi head slopes (Press et al., arXiv 2108.12409): 2^(-8h/H), h=1..H.

  For H not a power of two, the paper's recipe: slopes of the closest lower
  power of two, then every other slope of twice that many heads.
  """
  def pow2(n):
    start = 2.0 ** (-8.0 / n)
    return [start ** (i + 1) for i in range(n)]
  if num_heads < 1:
    raise ValueError(f"num_heads must be >= 1, got {num_heads}.")
  if math.log2(num_heads).is_integer():
    return np.asarray(pow2(num_heads), np.float32)
  closest = 2 ** int(math.floor(math.log2(num_heads)))
  extra = pow2(2 * closest)[0::2][:num_heads - closest]
  return np.asarray(pow2(closest) + extra, np.float32)


def rerope_relative_position(rel, window, leaky_k=None):
  """Leaky ReRoPE map of the relative position r = i - j (kexue.fm/archives/9708).

      f(r) = r                          if |r| < w
           = sign(r) (w + (|r| - w)/k)  otherwise       (Leaky ReRoPE, leak k)
           = sign(r) w                  k = None: ReRoPE (k -> infinity)

  k < 1 is the training-time inverse-Leaky form (step 1/k > 1 outside the
  window, kexue.fm/archives/9728).
  """
  rel = jnp.asarray(rel, jnp.float32)
  a = jnp.abs(rel)
  far = window if leaky_k is None else window + (a - window) / leaky_k
  return jnp.where(a < window, rel, jnp.sign(rel) * far)


def logn_factor(n, *, mode: str, base_length: int):
  """Query multiplier for log-n scaling (kexue.fm/archives/8823, 9706 eq. 14).

  mode "train":    log_{L_train} n          (pre-training choice; = 1 at n = L_train)
  mode "retrofit": max(1, log_{L_train} n)  (inference-only log n-dagger)
  mode "none":     1.
  n = number of tokens the query attends over (position + 1 for causal LMs).
  """
  if mode == "none":
    return jnp.ones_like(jnp.asarray(n, jnp.float32))
  if base_length is None or base_length < 2:
    raise ValueError(f"log-n scaling needs logn_base_length >= 2 (L_train), got {base_length}.")
  val = jnp.log(jnp.maximum(jnp.asarray(n, jnp.float32), 1.0)) / math.log(base_length)
  if mode == "train":
    return val
  if mode == "retrofit":
    return jnp.maximum(val, 1.0)
  raise ValueError(f"Unknown logn mode {mode!r}; use 'none', 'train' or 'retrofit'.")
