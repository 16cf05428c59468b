r"""RoPE + log-n pre-training (checkpoint (b), kexue.fm/archives/8823): queries scaled by log_N n, n = i + 1.

  softmax(log_N(n) / sqrt(d) * q_i . k_j),  N = L_train  (= standard attention at n = N)

The "-log n" rows of Su's tables (NTK-log n, ReRoPE-log n, Leaky ReRoPE-log n) are evaluated on this checkpoint.
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_length_extrapolation_common", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  return common.make_config("rope_logn", arg, attention=dict(logn="train"))
