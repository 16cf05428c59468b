"""The length-extrapolation configs (issue #18): each variant's attention against the NumPy float64 reference.

Every test builds the model a config describes, takes the AttentionConfig(s) it would run with, and checks
`attention.attend` under them against `tests/reference_np.attention` (the literal float64 formula), so a
config that names the wrong option fails here, not in an hour-long study.
"""
import math

import numpy as np
import pytest

from kexue_jax import config_lib
from kexue_jax import models
from kexue_jax.nn import attention as A
from tests import reference_np as ref
from tests.helpers import load_config
from tests.nn.conftest import make_qkv

LE = "configs/length_extrapolation/"
ATOL = RTOL = 1e-5   # attend computes in float32; the reference in float64 (as tests/nn/test_attention.py)


def layer_attention(c):
  """The per-layer AttentionConfigs the model that config `c` builds runs with (causal set by the model class)."""
  return models.build_model(c.model)._configs()  # pylint: disable=protected-access


def check_against_reference(cfg, seed, D=8):
  q, k, v = make_qkv(seed, B=2, L=9, H=2, D=D)
  got = A.attend(q, k, v, config=cfg)
  want = ref.attention(q, k, v, cfg)
  np.testing.assert_allclose(np.asarray(got), want, atol=ATOL, rtol=RTOL)


# (config file, argument) -> what Su's method (kexue.fm/archives/9859, 9728) says the attention must be.
VARIANTS = {
    ("qna.py", "runlocal"): dict(qk_norm="qna", position="rope", logn="none"),
    ("qna.py", "runlocal,logn"): dict(qk_norm="qna", position="rope", logn="train"),
    ("kna.py", "runlocal,nope"): dict(qk_norm="kna", position="none", logn="none"),
    ("kna.py", "runlocal,nope,logn"): dict(qk_norm="kna", position="none", logn="train"),
    ("qna.py", "runlocal,nope"): dict(qk_norm="qna", position="none", logn="none"),
    ("inv_leaky.py", "runlocal,b8"): dict(position="leaky_rerope", leaky_k=1 / 16, rope_base=80000.0,
                                          logn="train"),
}


@pytest.mark.parametrize("path,arg", sorted(VARIANTS))
def test_variant_attention_matches_reference(path, arg):
  c = load_config(LE + path, arg)
  config_lib.validate(c)
  cfgs = set(layer_attention(c))
  assert len(cfgs) == 1
  cfg, = cfgs
  for key, want in VARIANTS[(path, arg)].items():
    assert getattr(cfg, key) == want, (key, getattr(cfg, key), want)
  assert cfg.logn_base_length == c.data.seq_len and cfg.causal
  # Small windows so that the inverse-Leaky far branch (i - j >= w) is exercised on 9 tokens.
  small = cfg if cfg.position != "leaky_rerope" else A.AttentionConfig(**{
      **{f: getattr(cfg, f) for f in ("position", "leaky_k", "rope_base", "logn", "causal")},
      "rerope_window": 3, "logn_base_length": 4})
  check_against_reference(small, seed=len(arg))


def test_kna_nope_scores_are_su_formula():
  """KNA + NoPE: a_ij = q_i . k_j / |k_j| (no 1/sqrt d, no rotation), written out here in float64."""
  cfg, = set(layer_attention(load_config(LE + "kna.py", "runlocal,nope")))
  q, k, v = make_qkv(3, B=1, L=6, H=1, D=8)
  q64, k64, v64 = (np.asarray(x, np.float64)[0, :, 0] for x in (q, k, v))
  a = q64 @ (k64 / np.linalg.norm(k64, axis=-1, keepdims=True)).T
  a = np.where(np.tril(np.ones((6, 6), bool)), a, -np.inf)
  p = np.exp(a - a.max(-1, keepdims=True))
  want = (p / p.sum(-1, keepdims=True)) @ v64
  got = np.asarray(A.attend(q, k, v, config=cfg))[0, :, 0]
  np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)


def test_inv_leaky_b8_uses_base_times_extension():
  default = load_config(LE + "inv_leaky.py", "runlocal")
  b8 = load_config(LE + "inv_leaky.py", "runlocal,b8")
  (c0,), (c8,) = set(layer_attention(default)), set(layer_attention(b8))
  assert c0.rope_base == 10000.0 and c8.rope_base == 10000.0 * 8 and b8.study.rope_base == 80000.0
  assert b8.study.variant == "inv_leaky_b8" and default.study.variant == "inv_leaky"
  # Train-time map w + (r - w) / k with k = 1/16 (step 16 outside the window), the same in both.
  assert c0.leaky_k == c8.leaky_k == 1 / 16 and c0.rerope_window == c8.rerope_window


@pytest.mark.parametrize("f,w", [(1, 0), (2, 0), (1, 16), (2, 8)])
def test_hwfa2_grid_layers(f, w):
  """HWFA2 (kexue.fm/archives/9731): window-RoPE layers of w~, f full RoPE log-n layers at L//2 or L//3, 2L//3."""
  arg = f"f={f}" + (f",w={w}" if w else "")
  c = load_config(LE + "hwfa2.py", arg)
  L, n = c.model.num_layers, c.data.seq_len
  full = {L // 2} if f == 1 else {L // 3, 2 * L // 3}
  want_w = w or 2 * n // L
  cfgs = layer_attention(c)
  assert [i for i, a in enumerate(cfgs) if a.window is None] == sorted(full)
  for i, a in enumerate(cfgs):
    assert a.position == "rope"
    if i in full:
      assert a.logn == "train" and a.logn_base_length == n
    else:
      assert a.window == want_w and a.logn == "none"
  assert c.study.hwfa2_window == want_w and c.study.hwfa2_full_layers == f
  assert c.study.variant == ("hwfa2" if (f, w) == (2, 0) else f"hwfa2_w{w or 'auto'}_f{f}")
  # A window layer's masked attention against the reference.
  check_against_reference(A.AttentionConfig(position="rope", window=3), seed=f + w)


@pytest.mark.parametrize("arg,match", [("f=3", "f=1 or f=2"), ("w=-1", "w=-1")])
def test_hwfa2_bad_arguments(arg, match):
  with pytest.raises(ValueError, match=match):
    load_config(LE + "hwfa2.py", arg)


def test_arch_prenorm4x2():
  """arch=prenorm4x2: the independent byte-LM setting (pre-norm, 4 layers, 2 heads, d = 128)."""
  c = load_config(LE + "rope_logn.py", "arch=prenorm4x2")
  m = c.model
  assert (m.norm, m.num_layers, m.num_heads, m.head_dim, m.embed_dim) == ("pre", 4, 2, 64, 128)
  assert m.norm_type == "layernorm" and c.study.arch == "prenorm4x2" and c.model.attention.logn == "train"
  su = load_config(LE + "rope_logn.py")
  assert (su.model.norm, su.model.num_heads, su.model.norm_type) == ("post", 1, "rmsnorm")
  # Explicit arguments win over the preset.
  mixed = load_config(LE + "rope.py", "arch=prenorm4x2,norm=post,heads=1")
  assert (mixed.model.norm, mixed.model.num_heads) == ("post", 1)
  with pytest.raises(ValueError, match="arch="):
    load_config(LE + "rope.py", "arch=gpt")


@pytest.mark.parametrize("arg,base", [("logn", 512), ("logn,base=0", 64), ("", None)])
def test_logn_mlm_query_scale(arg, base):
  """8823's Attention-E: logits x log_512(n) / sqrt(d) with n = the number of keys (bidirectional MLM)."""
  c = load_config(LE + "logn_mlm.py", arg)
  config_lib.validate(c)
  cfg, = set(layer_attention(c))
  assert not cfg.causal and c.study.test_lengths == [64, 128, 256, 512, 1024]
  d = c.model.head_dim
  n = np.array([[64.0, 1024.0, 37.0]])
  got = np.asarray(A.query_scale(cfg, n, d))
  if base is None:
    want = np.full(3, 1 / math.sqrt(d))
  else:
    want = np.array([math.log(x) / math.log(base) / math.sqrt(d) for x in n[0]])
  np.testing.assert_allclose(got[0], want, rtol=1e-6)
  check_against_reference(cfg, seed=7)
  # Bidirectional log n with key padding against the reference (n = valid keys per row).
  q, k, v = make_qkv(11, B=2, L=9, H=2, D=8)
  valid = np.ones((2, 9), bool)
  valid[1, -3:] = False
  np.testing.assert_allclose(np.asarray(A.attend(q, k, v, config=cfg, k_valid_BS=valid)),
                             ref.attention(q, k, v, cfg, k_valid=valid), atol=ATOL, rtol=RTOL)


def test_logn_mlm_derived_lengths_follow_seq_len():
  c = load_config(LE + "logn_mlm.py", "logn,base=0")
  c.data.seq_len = 32
  assert c.study.test_lengths == [32, 64, 128, 256, 512] and c.study.train_length == 32
  assert layer_attention(c)[0].logn_base_length == 32
  fixed = load_config(LE + "logn_mlm.py", "logn")
  fixed.data.seq_len = 32
  assert layer_attention(fixed)[0].logn_base_length == 512   # Su's kappa: standard scale at n = 512


@pytest.mark.parametrize("path", ["qna.py", "kna.py", "inv_leaky.py", "hwfa2.py", "rope_logn.py"])
def test_derived_values_follow_seq_len(path):
  """`--config.data.seq_len=N` moves log-n bases and test lengths of the new variants too."""
  arg = {"kna.py": "runlocal,nope,logn", "qna.py": "runlocal,logn", "hwfa2.py": "runlocal,f=1",
         "rope_logn.py": "runlocal,arch=prenorm4x2"}.get(path, "runlocal")
  c = load_config(LE + path, arg)
  c.data.seq_len = n = 4 * c.data.seq_len
  assert config_lib.to_dict(c.study)["test_lengths"] == [n, 2 * n, 4 * n, 8 * n]
  assert {a.logn_base_length for a in layer_attention(c)} == {n}


def test_eval_protocol_argument():
  assert load_config(LE + "rope.py").study.eval_protocol == "all"
  assert load_config(LE + "rope.py", "eval=tail").study.eval_protocol == "tail"
  with pytest.raises(ValueError, match="eval='x'"):
    load_config(LE + "rope.py", "eval=x")
