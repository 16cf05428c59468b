"""Each HF rope_scaling type: our inverse frequencies and attention factor vs a NumPy transcription of
transformers' modeling_rope_utils.py (tests/hf/hf_reference.hf_rope), and one full-model check that the
attention factor enters the logits as HF's cos/sin multiplier does."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax.hf import rope as rope_lib
from kexue_jax.nn import positions as P
from tests.hf import hf_reference as ref

CFG = dict(ref.hf_config("llama"), hidden_size=128, num_attention_heads=2, rope_theta=10000.0,
           max_position_embeddings=4096)   # head_dim 64: 32 frequencies
D = 64
CASES = [
    ({"rope_type": "default"}, None),
    ({"rope_type": "linear", "factor": 4.0}, None),
    ({"rope_type": "dynamic", "factor": 2.0}, 10000),
    ({"rope_type": "dynamic", "factor": 2.0}, 1000),      # below max_position_embeddings: unscaled
    ({"type": "yarn", "factor": 8.0}, None),              # old "type" key
    ({"rope_type": "yarn", "factor": 4.0, "beta_fast": 16.0, "beta_slow": 2.0, "attention_factor": 1.3}, None),
    ({"rope_type": "yarn", "factor": 16.0, "original_max_position_embeddings": 2048}, None),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 512}, None),
]


@pytest.mark.parametrize("rope_scaling,seq_len", CASES)
def test_inv_freq_and_attention_factor(rope_scaling, seq_len):
  cfg = dict(CFG)
  want_inv, want_att = ref.hf_rope(rope_scaling, cfg, seq_len=seq_len)
  s = rope_lib.from_hf(rope_scaling, cfg)
  got = P.rope_inv_freq(D, base=cfg["rope_theta"], scaling=s, length=seq_len)
  np.testing.assert_allclose(np.asarray(got, np.float64), want_inv, rtol=2e-6)
  assert P.rope_attention_factor(s) == pytest.approx(want_att, rel=1e-12)


@pytest.mark.parametrize("seq_len", [1000, 4096, 4097, 20000])
def test_longrope_short_and_long_factors(seq_len):
  rng = np.random.default_rng(0)
  rs = {"rope_type": "longrope", "short_factor": list(1 + rng.random(D // 2)),
        "long_factor": list(1 + 10 * rng.random(D // 2))}
  cfg = dict(CFG, max_position_embeddings=131072, original_max_position_embeddings=4096)
  want_inv, want_att = ref.hf_rope(rs, cfg, seq_len=seq_len)
  s = rope_lib.from_hf(rs, cfg)
  got = P.rope_inv_freq(D, base=cfg["rope_theta"], scaling=s, length=seq_len)
  np.testing.assert_allclose(np.asarray(got, np.float64), want_inv, rtol=2e-6)
  assert P.rope_attention_factor(s) == pytest.approx(want_att, rel=1e-12)
  assert want_att == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))


def test_paper_ramp_stays_default():
  """Our default YaRN ramp (continuous in r, Su / the paper) differs from HF's index ramp."""
  hf_s = rope_lib.from_hf({"rope_type": "yarn", "factor": 8.0}, CFG)
  paper = P.RopeScaling("yarn", factor=8.0, train_length=4096)
  a = np.asarray(P.rope_inv_freq(D, scaling=hf_s))
  b = np.asarray(P.rope_inv_freq(D, scaling=paper))
  assert np.abs(a / b - 1).max() > 1e-3
  assert rope_lib.to_hf(hf_s)["rope_type"] == "yarn"
  with pytest.raises(ValueError, match="no Hugging Face rope_type"):
    rope_lib.to_hf(paper)
  with pytest.raises(ValueError, match="unsupported rope_scaling type"):
    rope_lib.from_hf({"rope_type": "su"}, CFG)


def test_yarn_model_logits_match_hf_forward(tmp_path):
  pytest.importorskip("safetensors")
  from kexue_jax import hf
  cfg = ref.hf_config("llama", rope_scaling={"rope_type": "yarn", "factor": 4.0, "attention_factor": 1.4,
                                              "original_max_position_embeddings": 16})
  w = ref.random_weights(cfg, seed=3)
  ref.write_hf_checkpoint(str(tmp_path), cfg, w)
  model, params = hf.load_pretrained(str(tmp_path))
  tokens = np.arange(20, dtype=np.int32) * 3 % 64
  inv, att = ref.hf_rope(cfg["rope_scaling"], dict(cfg, hidden_size=32, num_attention_heads=4))
  want = ref.forward(cfg, w, tokens, inv_freq=inv, attention_factor=att)
  got = np.asarray(model.apply({"params": params}, jnp.asarray(tokens)[None])[0], np.float64)
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
