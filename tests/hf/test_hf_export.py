"""Export of our TransformerLM in the HF format: round trip export -> load gives identical logits (also
interleaved RoPE, GQA + qkv bias -> Qwen2, windows -> Mistral, sharded index); the exported files follow
the published layout (checked with the independent NumPy forward); unexportable models: one-line errors."""
import json
import os
import zlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("safetensors")

from kexue_jax import hf  # noqa: E402
from kexue_jax import models  # noqa: E402
from kexue_jax.hf.safetensors_io import Checkpoint  # noqa: E402
from tests.hf import hf_reference as ref  # noqa: E402

LLAMA_LIKE = dict(name="transformer_lm", vocab_size=256, num_layers=2, embed_dim=32, num_heads=4, head_dim=8,
                  mlp_dim=64, norm="pre", norm_type="rmsnorm", mlp_activation="silu", mlp_gated=True)
TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 24)), jnp.int32)


def _model(**over):
  cfg = {**LLAMA_LIKE, **over}
  model = models.build_model(cfg)
  params = nn.unbox(model.init(jax.random.key(1), TOKENS)["params"])
  # Non-trivial norm scales and biases, so every tensor's placement is exercised.
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: (x + 0.1 * jax.random.normal(jax.random.key(zlib.crc32(str(p).encode())), x.shape)).astype(x.dtype)
      if p[-1].key in ("scale", "bias") else x, params)
  return model, params


@pytest.mark.parametrize("over,model_type", [
    ({}, "llama"),
    ({"attention": {"rope_convention": "interleaved"}, "tie_embedding": False}, "llama"),
    ({"num_kv_heads": 2, "qkv_bias": True, "norm_epsilon": 1e-5}, "qwen2"),
    ({"num_kv_heads": 1, "attention": {"window": 7, "rope_base": 500.0}}, "mistral"),
])
def test_round_trip_identical_logits(tmp_path, over, model_type):
  model, params = _model(**over)
  want = np.asarray(model.apply({"params": params}, TOKENS))
  files = hf.save_pretrained(str(tmp_path), model, params, max_position_embeddings=24)
  with open(os.path.join(tmp_path, "config.json")) as f:
    cfg = json.load(f)
  assert cfg["model_type"] == model_type and len(files) == 2
  loaded, lparams = hf.load_pretrained(str(tmp_path))
  got = np.asarray(loaded.apply({"params": lparams}, TOKENS))
  if over.get("attention", {}).get("rope_convention") == "interleaved":   # permuted q/k: float rounding
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
  else:
    np.testing.assert_array_equal(got, want)
  # The files follow the published architecture: the independent NumPy forward reproduces the logits.
  ck = Checkpoint(str(tmp_path))
  w = {n: np.asarray(ck.array(n)) for n in ck.weight_map}
  np.testing.assert_allclose(ref.forward(cfg, w, np.asarray(TOKENS[0])), want[0], rtol=0,
                             atol=2e-5 * np.abs(want).max())


def test_sharded_export_and_bf16(tmp_path):
  model, params = _model(dtype="bfloat16", param_dtype="bfloat16")
  files = hf.save_pretrained(str(tmp_path), model, params, max_shard_bytes=20_000)
  assert any(f.endswith("model.safetensors.index.json") for f in files) and len(files) > 3
  loaded, lparams = hf.load_pretrained(str(tmp_path))
  assert lparams["embed"]["embedding"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(loaded.apply({"params": lparams}, TOKENS)),
                                np.asarray(model.apply({"params": params}, TOKENS)))


@pytest.mark.parametrize("over,needle", [
    ({"norm_type": "layernorm"}, "norm_type"),
    ({"mlp_gated": False}, "mlp_gated"),
    ({"attention": {"position": "rerope"}}, "position='rerope'"),
    ({"attention": {"logn": "train", "logn_base_length": 24}}, "logn='train'"),
])
def test_unexportable_one_line_error(tmp_path, over, needle):
  model, params = _model(**over)
  with pytest.raises(hf.CheckpointFormatError) as e:
    hf.save_pretrained(str(tmp_path / "x"), model, params)
  assert needle in str(e.value) and "\n" not in str(e.value)
  assert not os.path.exists(tmp_path / "x")     # nothing written


def test_tokenizer_json_round_trip(tmp_path):
  tokenizers = pytest.importorskip("tokenizers")
  tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({"[UNK]": 0, "rope": 1, "scaling": 2}, unk_token="[UNK]"))
  tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
  model, params = _model()
  hf.save_pretrained(str(tmp_path), model, params, tokenizer=tok)
  assert hf.load_tokenizer(str(tmp_path)).encode("rope scaling ntk").ids == [1, 2, 0]
