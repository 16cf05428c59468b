r"""HWFA2 = HWFA + ReRoPE (kexue.fm/archives/9731).

Training: window-RoPE layers with a larger window w~ (Su's heuristic 2-4 x N/L; here 2 N/L = 64 at N=128, L=4),
and two full-attention RoPE layers (log-n) in the middle, at L//3 and 2L//3 (Su's best: w64-f2). At inference
only the full layers switch to ReRoPE with window N/2 (done by the driver: method "hwfa2_rerope").
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def window(num_layers, n):
  """2 N / L (n may be a FieldReference to data.seq_len)."""
  return n * 2 // num_layers


def _layers(num_layers, n):
  full_idx = {num_layers // 3, 2 * num_layers // 3} if num_layers >= 3 else {num_layers - 1}
  win = dict(position="rope", window=window(num_layers, n), logn="none")
  full = dict(position="rope", window=None, logn="train", logn_base_length=n.identity())
  return [full if i in full_idx else win for i in range(num_layers)]


def get_config(arg=None):
  c = common.make_config("hwfa2", arg, layer_attention=_layers)
  n = c.data.get_ref("seq_len")
  c.study.hwfa2_window = window(c.model.num_layers, n)
  c.study.hwfa2_rerope_window = n // 2
  return c
