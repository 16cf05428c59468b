r"""Cosine attention, CosA (kexue.fm/archives/9859): a_ij = lambda cos(q_i, k_j), lambda = 4 log n.

Without `logn`: n fixed to N/2 (a constant temperature); with `logn` (Su's "CosA-log n"): n = i + 1 per query.
RoPE stays on. Inference is unchanged.
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_length_extrapolation_common", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  a = common.parse(arg)
  return common.make_config("cosa_logn" if a.logn else "cosa", arg,
                            attention=dict(qk_norm="cosa", cosa_scale=4.0, logn="train" if a.logn else "none"))
