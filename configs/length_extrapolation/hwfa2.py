r"""HWFA2 = HWFA + ReRoPE (kexue.fm/archives/9731).

Training: window-RoPE layers with a larger window w~ (Su's heuristic 2-4 x N/L; default 2 N/L = 64 at N=128,
L=4), and f full-attention RoPE layers (log-n) in the middle: f = 1 at L//2, f = 2 at L//3 and 2L//3 (Su's best:
w64-f2). At inference only the full layers switch to ReRoPE with window N/2 (done by the driver: method
"hwfa2_rerope").

Arguments (besides _common's): w=0 (the window w~ in tokens; 0 = 2 N/L, following data.seq_len), f=2 (1 or 2).
Su's grid (T7, N = 512, L = 24) is w~ in {32, 64, 128, 256} x f in {1, 2}; as fractions of N that is
N/16 ... N/2, i.e. w in {8, 16, 32, 64} at our N = 128 (as multiples of N/L: 1.5, 3, 6, 12 -> 48, 96, 192, 384
at L = 4, which exceed N from w = 192 on). The study maps every window to Su's rows by this fraction of N, so the
default (w = 2 N/L = N/2 at L = 4) is his w256-f2 row and his best w64-f2 is w = N/8 = 16
(experiments/length_extrapolation/published.py su_row). Variant name: hwfa2 for the default, else
hwfa2_w{w}_f{f}.
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def window(num_layers, n):
  """2 N / L (n may be a FieldReference to data.seq_len)."""
  return n * 2 // num_layers


def full_layers(num_layers: int, f: int) -> set[int]:
  """Indices of the full-attention layers: f = 1 -> {L//2}; f = 2 -> {L//3, 2L//3} (9731)."""
  if f not in (1, 2):
    raise ValueError(f"hwfa2: f={f} full-attention layers; use f=1 or f=2 (Su's grid).")
  if num_layers < 3:
    return {num_layers - 1}
  return {num_layers // 2} if f == 1 else {num_layers // 3, 2 * num_layers // 3}


def get_config(arg=None):
  a = common.parse(arg)
  if a.w < 0:
    raise ValueError(f"hwfa2: w={a.w} must be a window in tokens >= 1 (or 0 for the default 2 N/L).")

  def layers(num_layers, n):
    w = a.w or window(num_layers, n)
    win = dict(position="rope", window=w, logn="none")
    full = dict(position="rope", window=None, logn="train", logn_base_length=n.identity())
    idx = full_layers(num_layers, a.f)
    return [full if i in idx else win for i in range(num_layers)]

  default = a.w == 0 and a.f == 2
  c = common.make_config("hwfa2" if default else f"hwfa2_w{a.w or 'auto'}_f{a.f}", arg, layer_attention=layers)
  n = c.data.get_ref("seq_len")
  c.study.hwfa2_window = a.w or window(c.model.num_layers, n)
  c.study.hwfa2_full_layers = a.f
  c.study.hwfa2_rerope_window = n // 2
  return c
