r"""QueryNorm attention, QNA (kexue.fm/archives/9859): queries L2-normalised, no 1/sqrt(d).

  a_ij = q_i . k_j / |q_i|   (x log_N n with the `logn` argument)

Su's control for KeyNorm: QNA trains as well as the baseline at N but does *not* extrapolate (T8a: 22.45 /
22.18 at 8x vs KNA 61.08 / 47.69). RoPE stays on (`nope` drops it); inference is unchanged.
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def get_config(arg=None):
  return common.qk_norm_config("qna", arg)
