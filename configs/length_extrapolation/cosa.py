r"""Cosine attention, CosA (kexue.fm/archives/9859): a_ij = lambda cos(q_i, k_j), lambda = 4 log n.

Without `logn`: n fixed to N/2 (a constant temperature); with `logn` (Su's "CosA-log n"): n = i + 1 per query.
RoPE stays on. Inference is unchanged.
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def get_config(arg=None):
  a = common.parse(arg)
  return common.make_config("cosa_logn" if a.logn else "cosa", arg,
                            attention=dict(qk_norm="cosa", cosa_scale=4.0, logn="train" if a.logn else "none"))
