r"""RoPE + log-n pre-training (checkpoint (b), kexue.fm/archives/8823): queries scaled by log_N n, n = i + 1.

  softmax(log_N(n) / sqrt(d) * q_i . k_j),  N = L_train  (= standard attention at n = N)

The "-log n" rows of Su's tables (NTK-log n, ReRoPE-log n, Leaky ReRoPE-log n) are evaluated on this checkpoint.
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def get_config(arg=None):
  return common.make_config("rope_logn", arg, attention=dict(logn="train"))
