r"""Inverse Leaky ReRoPE (kexue.fm/archives/9728): train with Leaky ReRoPE of leak k = 1/16, infer with RoPE.

Training relative position (i >= j):  f(r) = r for r < w,  w + 16 (r - w) otherwise,
so the positions seen in training reach w + 16 (N-1-w) >= 8N (k = 1/(2 x extension)). w = N/4 (Su: 128 at
N = 512; here 32). Pre-trained with log-n, as Su's "InvLeaky ReRoPE-w128-log n". Evaluated with plain RoPE.
`inv_leaky.py:b8` multiplies the RoPE base by the extension factor (10000 -> 80000) in training and hence at
inference: Su's "InvLeaky ReRoPE-w128-b8-log n" (T6: 49.62 / 81.15 / 48.85).
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")
BASE = 10000.0


def get_config(arg=None):
  a = common.parse(arg)
  n = common.SCALES[a.scale]["train_length"]
  k = 1.0 / (2 * common.EXTENSION)
  base = BASE * common.EXTENSION if a.b8 else BASE
  return common.make_config(
      "inv_leaky_b8" if a.b8 else "inv_leaky", arg,
      attention=dict(position="leaky_rerope", rerope_window=max(1, n // 4), leaky_k=k, logn="train",
                     rope_base=base),
      extra_study=dict(inv_leaky_window=max(1, n // 4), inv_leaky_k=k, rope_base=base))
