r"""KeyNorm attention, KNA (kexue.fm/archives/9859): keys L2-normalised, no 1/sqrt(d).

  a_ij = q_i . k_j / |k_j|   (x log_N n with the `logn` argument)

RoPE stays on. Inference is unchanged. `kna.py:logn` is Su's "KNA-log n". `kna.py:nope` drops RoPE
(position "none"): Su's negative control, KeyNorm + NoPE does *not* extrapolate (9859).
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def get_config(arg=None):
  return common.qk_norm_config("kna", arg)
