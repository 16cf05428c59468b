"""configs/length_extrapolation/pretrained.py and kexue_jax/evals/length_pretrained.py on an exported checkpoint."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("safetensors")

from tests.helpers import load_config  # noqa: E402
from kexue_jax.evals import length_pretrained as driver  # noqa: E402
from kexue_jax import hf  # noqa: E402
from kexue_jax import models  # noqa: E402
from kexue_jax import sharding  # noqa: E402

# config.json of meta-llama/Llama-2-7b-hf as published on the Hugging Face hub.
LLAMA2_7B_CONFIG_JSON = {
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 4096,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "tie_word_embeddings": False,
    "torch_dtype": "float16", "use_cache": True, "vocab_size": 32000}


def test_full_form_is_llama2_7b():
  c = load_config("configs/length_extrapolation/pretrained.py", "full")
  want = hf.api.config_lib.model_config(LLAMA2_7B_CONFIG_JSON, dtype="bfloat16")
  for key, value in want.items():
    if key != "attention":
      assert c.model[key] == value, key
  assert {k: c.model.attention[k] for k in want["attention"]} == want["attention"]
  assert c.study.checkpoint == "/data/Llama-2-7b-hf" and c.study.train_length == 4096
  model = models.build_model(c.model)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32)))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 6_738_415_616  # Llama-2-7B
  # The full form's FSDP mesh over 8 devices (v5e-8 / v4-8 stand-in) splits every large tensor 8 ways:
  # bf16 weights take 1/8 of 13.5 GB per device (no device holds a full copy).
  mesh = sharding.make_mesh(sharding.resolve_mesh_config(dict(c.mesh), c.mesh_preset, jax.devices()))
  shards = sharding.logical_shardings(shapes["params"], mesh, sharding.normalize_rules(c.logical_axis_rules))
  per_device = sum(int(np.prod(sh.shard_shape(x.shape))) * 2 for x, sh in
                   zip(jax.tree.leaves(nn.unbox(shapes["params"])), jax.tree.leaves(shards)))
  assert per_device < 1.01 * 6_738_415_616 * 2 / 8


def test_driver_on_exported_checkpoint(tmp_path):
  c = load_config("configs/length_extrapolation/pretrained.py", "runlocal")
  model = models.build_model(c.model)
  params = model.init(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]
  hf.save_pretrained(str(tmp_path), model, params, max_position_embeddings=c.data.seq_len)
  c = load_config("configs/length_extrapolation/pretrained.py",
                  f"runlocal,checkpoint={tmp_path},methods=rope+rerope,windows=2")
  c.study.growing_docs = 2
  out = driver.run(c, log=lambda *_: None)
  n = c.data.seq_len
  assert out["lengths"] == [n, 8 * n] and set(out["results"]) == {"rope", "rerope"}
  r = out["results"]["rerope"][str(8 * n)]
  assert len(r["nonrep"]["acc"]) == 2 and len(r["growing"]["loss"]) == 2
  table = driver.tables(out)
  assert f"{n}(训练)" in table and f"{8 * n}(重复)" in table and f"{8 * n}(不重复)" in table
  assert table.count("| rerope |") == 2
  with pytest.raises(ValueError, match="unknown methods"):
    load_config("configs/length_extrapolation/pretrained.py", "runlocal,methods=rope+nope")
  assert driver.main(["--config", "configs/length_extrapolation/pretrained.py:runlocal,checkpoint=/nonexistent"]) == 2
