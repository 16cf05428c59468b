r"""RoPE baseline (checkpoint (a)): full causal attention with RoPE in every layer, post-norm, single head.

Every inference-time method without log-n (direct extrapolation, PI, NTK old/fixed/mixed, dynamic NTK, YaRN,
log-n dagger, ReRoPE, Leaky ReRoPE, sliding window, Lambda-mask) is evaluated on this one checkpoint.

  python -m kexue_jax.main --config configs/length_extrapolation/rope.py --workdir /tmp/le/rope
  python -m kexue_jax.main --config configs/length_extrapolation/rope.py:norm=pre,heads=4 --workdir ...
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def get_config(arg=None):
  return common.make_config("rope", arg)
