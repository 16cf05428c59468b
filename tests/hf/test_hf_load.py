"""Loading HF-layout LLaMA / Mistral / Qwen2 checkpoints: logits vs an independent NumPy float64 forward,
sharded files and sharded (8-device) placement, bf16, one-line errors, Su's methods applied by config."""
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("safetensors")

from kexue_jax import hf  # noqa: E402
from kexue_jax import sharding  # noqa: E402
from kexue_jax.hf import __main__ as cli  # noqa: E402
from tests.hf import hf_reference as ref  # noqa: E402

TOKENS = np.array([3, 17, 8, 60, 1, 0, 44, 12, 9, 33, 5, 21], np.int32)


def _close(ours, want, rel=2e-5):
  """float32 vs float64: tolerance scaled to the size of the values."""
  np.testing.assert_allclose(np.asarray(ours, np.float64), want, rtol=0, atol=rel * np.abs(want).max())


def _ckpt(tmp_path, model_type, shards=1, dtype=np.float32, **over):
  cfg = ref.hf_config(model_type, **over)
  w = ref.random_weights(cfg, seed=len(model_type))
  d = str(tmp_path / f"{model_type}-{shards}")
  ref.write_hf_checkpoint(d, cfg, w, dtype=dtype, shards=shards)
  return d, cfg, w


@pytest.mark.parametrize("model_type", ["llama", "mistral", "qwen2"])
def test_logits_match_numpy_reference(tmp_path, model_type):
  d, cfg, w = _ckpt(tmp_path, model_type)
  model, params = hf.load_pretrained(d)
  logits = model.apply({"params": params}, jnp.asarray(TOKENS)[None])
  assert logits.dtype == jnp.float32 and logits.shape == (1, len(TOKENS), cfg["vocab_size"])
  _close(logits[0], ref.forward(cfg, w, TOKENS))


def test_sharded_index_equals_single_file(tmp_path):
  d1, cfg, w = _ckpt(tmp_path, "llama", shards=1)
  d3, _, _ = _ckpt(tmp_path, "llama", shards=3)
  assert os.path.exists(os.path.join(d3, "model.safetensors.index.json"))
  m1, p1 = hf.load_pretrained(d1)
  m3, p3 = hf.load_pretrained(d3)
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), p1, p3)


def test_mesh_load_on_8_devices_equals_single_device(tmp_path):
  d, cfg, w = _ckpt(tmp_path, "llama", shards=2)
  mesh = sharding.make_mesh({"data": 1, "fsdp": 2, "tensor": 4})
  m0, p0 = hf.load_pretrained(d)
  m8, p8 = hf.load_pretrained(d, mesh=mesh)
  q = p8["block0"]["attn"]["query"]["kernel"]
  assert len(q.sharding.device_set) == 8 and not q.is_fully_replicated
  assert q.addressable_shards[0].data.shape == (16, 1, 8)   # embed/fsdp, heads/tensor
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), p0, p8)
  with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.DEFAULT_RULES):
    l8 = jax.jit(lambda p, t: m8.apply({"params": p}, t))(p8, jnp.asarray(TOKENS)[None])
  l0 = m0.apply({"params": p0}, jnp.asarray(TOKENS)[None])
  np.testing.assert_allclose(np.asarray(l8), np.asarray(l0), rtol=0, atol=1e-5 * np.abs(l0).max())


def test_bf16_stays_bf16(tmp_path):
  import ml_dtypes
  d, cfg, w = _ckpt(tmp_path, "qwen2", dtype=ml_dtypes.bfloat16, torch_dtype="bfloat16")
  model, params = hf.load_pretrained(d)
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
  logits = model.apply({"params": params}, jnp.asarray(TOKENS)[None])
  assert logits.dtype == jnp.float32
  wb = {k: np.asarray(v.astype(ml_dtypes.bfloat16), np.float64) for k, v in w.items()}
  want = ref.forward(cfg, wb, TOKENS)
  # bf16 activations (8 mantissa bits) through 2 layers: a few percent of the logit range.
  _close(logits[0], want, rel=0.05)
  f32_model, f32_params = hf.load_pretrained(d, dtype="float32")
  assert f32_params["embed"]["embedding"].dtype == jnp.float32


def _error(fn):
  with pytest.raises(hf.CheckpointFormatError) as e:
    fn()
  msg = str(e.value)
  assert "\n" not in msg
  return msg


def test_missing_shard(tmp_path):
  d, _, _ = _ckpt(tmp_path, "llama", shards=2)
  os.remove(os.path.join(d, "model-00002-of-00002.safetensors"))
  assert "model-00002-of-00002.safetensors" in _error(lambda: hf.load_pretrained(d))


def test_wrong_dtype(tmp_path):
  cfg = ref.hf_config("llama")
  w = ref.random_weights(cfg)
  d = str(tmp_path / "int")
  ref.write_hf_checkpoint(d, cfg, w)
  from safetensors.numpy import save_file
  arrs = {k: v.astype(np.float32) for k, v in w.items()}
  arrs["model.layers.1.mlp.up_proj.weight"] = arrs["model.layers.1.mlp.up_proj.weight"].astype(np.int8)
  save_file(arrs, os.path.join(d, "model.safetensors"))
  msg = _error(lambda: hf.load_pretrained(d))
  assert "model.layers.1.mlp.up_proj.weight" in msg and "model.safetensors" in msg and "I8" in msg


def test_shape_mismatch(tmp_path):
  d, cfg, _ = _ckpt(tmp_path, "mistral")
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump({**cfg, "intermediate_size": 40}, f)
  msg = _error(lambda: hf.load_pretrained(d))
  assert "model.layers.0.mlp" in msg and "[48, 32]" in msg and "model.safetensors" in msg
  with open(os.path.join(d, "config.json"), "w") as f:     # weights of 2 layers, config says 1
    json.dump({**cfg, "num_hidden_layers": 1}, f)
  msg = _error(lambda: hf.load_pretrained(d))
  assert "model.layers.1." in msg and "model.safetensors" in msg


def test_unsupported_model_type_and_cli(tmp_path, capsys):
  d, cfg, _ = _ckpt(tmp_path, "llama")
  assert cli.main(["inspect", d]) == 0
  out = capsys.readouterr().out
  assert "llama" in out and "2 kv heads" in out and f"{sum(v.size for v in ref.random_weights(cfg).values()):,}" in out
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump({**cfg, "model_type": "gpt2"}, f)
  msg = _error(lambda: hf.load_pretrained(d))
  assert "'gpt2'" in msg and "config.json" in msg
  assert cli.main(["inspect", d]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "gpt2" in err
  assert "huggingface-cli download" in _error(lambda: hf.load_pretrained("no-such-org/no-such-model-x"))


def test_su_methods_by_config(tmp_path):
  """ReRoPE (blockwise) with a window >= L and log n-dagger at L <= L_train are exactly the baseline;
  NTK-mixed matches the NumPy forward with the mixed frequencies (kexue.fm/archives/9706)."""
  from kexue_jax.nn.positions import RopeScaling
  d, cfg, w = _ckpt(tmp_path, "mistral")
  tok = jnp.asarray(TOKENS)[None]
  base_model, params = hf.load_pretrained(d)
  base = np.asarray(base_model.apply({"params": params}, tok))
  for attention in ({"position": "rerope", "rerope_window": 16, "rerope_impl": "blockwise", "block_size": 4},
                    {"position": "leaky_rerope", "rerope_window": 16, "leaky_k": 8.0},
                    {"logn": "retrofit", "logn_base_length": 64}):
    m, p = hf.load_pretrained(d, attention=attention)
    np.testing.assert_allclose(np.asarray(m.apply({"params": p}, tok)), base, rtol=0,
                               atol=1e-5 * np.abs(base).max())
  # ReRoPE window 3 (< L): blockwise kernel == dense two-matrix form, and differs from the baseline.
  outs = []
  for impl in ("blockwise", "two_matrix"):
    m, p = hf.load_pretrained(d, attention={"position": "rerope", "rerope_window": 3, "rerope_impl": impl,
                                            "block_size": 4})
    outs.append(np.asarray(m.apply({"params": p}, tok)))
  np.testing.assert_allclose(outs[0], outs[1], rtol=0, atol=1e-5 * np.abs(outs[1]).max())
  assert np.abs(outs[0] - base).max() > 1e-3
  k, b, dh = 4.0, 0.625, 8
  m, p = hf.load_pretrained(d, rope_scaling=RopeScaling("ntk_mixed", factor=k, mixed_b=b))
  pp = np.arange(dh // 2)
  a = np.log(k) / (dh / 2) ** b
  inv = cfg["rope_theta"] ** (-2 * pp / dh) * np.exp(-a * (pp + 1) ** b)
  _close(m.apply({"params": p}, tok)[0], ref.forward(cfg, w, TOKENS, inv_freq=inv))


def test_kv_cache_decoding_with_gqa(tmp_path):
  """Token-by-token decoding through the KV cache (which stores the num_kv_heads heads) == the full
  forward, for a GQA + sliding-window model (Mistral)."""
  d, cfg, w = _ckpt(tmp_path, "mistral")
  model, params = hf.load_pretrained(d)
  full = np.asarray(model.apply({"params": params}, jnp.asarray(TOKENS)[None]))[0]
  dec = model.clone(decode=True)
  cache = dec.init(jax.random.key(0), jnp.zeros((1, len(TOKENS)), jnp.int32))["cache"]
  assert cache["block0"]["attn"]["cached_key"].shape == (1, len(TOKENS), cfg["num_key_value_heads"], 8)
  step = jax.jit(lambda c, t, p: dec.apply({"params": params, "cache": c}, t, positions_BL=p,
                                           mutable=["cache"]))
  rows = []
  for i, t in enumerate(TOKENS):
    logits, upd = step(cache, jnp.full((1, 1), t), jnp.full((1, 1), i))
    cache = upd["cache"]
    rows.append(np.asarray(logits)[0, 0])
  np.testing.assert_allclose(np.stack(rows), full, rtol=0, atol=1e-5 * np.abs(full).max())


@pytest.mark.parametrize("shape,transposed,split", [((6, 4, 3), True, 1), ((4, 3, 6), True, 2),
                                                    ((4, 3), False, 2), ((5, 6), True, 1), ((7, 6), False, 1)])
def test_read_block_any_slice(shape, transposed, split):
  """A device block read from the source tensor == the same block of the fully materialised parameter."""
  from kexue_jax.hf import weights
  rng = np.random.default_rng(0)
  src_shape = weights.source_shape(shape, transposed, split)
  w = rng.normal(size=src_shape).astype(np.float32)
  full = (w.T if transposed else w).reshape(shape)
  for _ in range(20):
    idx = []
    for n in shape:
      a = int(rng.integers(0, n))
      idx.append(slice(a, int(rng.integers(a + 1, n + 1))) if rng.random() < 0.7 else slice(None))
    np.testing.assert_array_equal(weights.read_block(w, shape, transposed, split, tuple(idx), np.float32),
                                  full[tuple(idx)])
