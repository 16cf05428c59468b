r"""KeyNorm attention, KNA (kexue.fm/archives/9859): keys L2-normalised, no 1/sqrt(d).

  a_ij = q_i . k_j / |k_j|   (x log_N n with the `logn` argument)

RoPE stays on. Inference is unchanged. `kna.py:logn` is Su's "KNA-log n".
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_length_extrapolation_common", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  a = common.parse(arg)
  return common.make_config("kna_logn" if a.logn else "kna", arg,
                            attention=dict(qk_norm="kna", logn="train" if a.logn else "none"))
