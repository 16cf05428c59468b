r"""RoPE baseline (checkpoint (a)): full causal attention with RoPE in every layer, post-norm, single head.

Every inference-time method without log-n (direct extrapolation, PI, NTK old/fixed/mixed, dynamic NTK, YaRN,
log-n dagger, ReRoPE, Leaky ReRoPE, sliding window, Lambda-mask) is evaluated on this one checkpoint.

  python -m kexue_jax.main --config configs/length_extrapolation/rope.py --workdir /tmp/le/rope
  python -m kexue_jax.main --config configs/length_extrapolation/rope.py:norm=pre,heads=4 --workdir ...
"""
import importlib.util
import os

_spec = importlib.util.spec_from_file_location(
    "_length_extrapolation_common", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_common.py"))
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
  return common.make_config("rope", arg)
