r"""HWFA, hybrid window-full attention (kexue.fm/archives/9603).

Layers 1..L-1: sliding-window causal attention (0 <= i-j < w) with RoPE; layer L: full attention, NoPE,
log-n scaled queries (log_N n). w is the largest window with (w-1)(L-1)+1 <= 3/4 N (Su: L=24, N=512 -> 16;
here L=4, N=128 -> 32). Inference is unchanged at any length.
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def _layers(num_layers, n):
  w = common.hwfa_window(num_layers, n)
  win = dict(position="rope", window=w, logn="none")
  full = dict(position="none", window=None, logn="train", logn_base_length=n.identity())
  return [win] * (num_layers - 1) + [full]


def get_config(arg=None):
  c = common.make_config("hwfa", arg, layer_attention=_layers)
  c.study.hwfa_window = common.hwfa_window(c.model.num_layers, c.data.get_ref("seq_len"))
  return c
