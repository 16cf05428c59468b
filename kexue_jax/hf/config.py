"""config.json of a LLaMA / Mistral / Qwen2 checkpoint <-> our `config.model` dict (`models.build_model`).

The three published architectures (HF transformers `modeling_llama.py`, `modeling_mistral.py`,
`modeling_qwen2.py`) are one pre-norm decoder:

    x <- x + Attn(RMSNorm(x)),  x <- x + W_down (silu(W_gate x) * W_up x)  on RMSNorm(x),  logits = RMSNorm(x) W_head

with grouped-query attention (num_key_value_heads), rotate-half RoPE with base rope_theta, RMSNorm epsilon
rms_norm_eps, tied or untied head (tie_word_embeddings). They differ in: Qwen2's q/k/v biases; Mistral's
sliding window on every layer (keys with 0 <= i - j < sliding_window); Qwen2's optional sliding window on the
layers i >= max_window_layers (use_sliding_window), or an explicit `layer_types` list.
In our TransformerLM: norm="pre", norm_type="rmsnorm", mlp_activation="silu", mlp_gated=True.
"""
from __future__ import annotations

import json
import os
from typing import Any, Mapping

from kexue_jax.hf import rope as rope_lib
from kexue_jax.hf.errors import CheckpointFormatError

MODEL_TYPES = ("llama", "mistral", "qwen2")
CONFIG = "config.json"
_DTYPE_NAMES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16",
                "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def read_config(directory: str) -> dict:
  path = os.path.join(directory, CONFIG)
  if not os.path.isfile(path):
    raise CheckpointFormatError(f"no {CONFIG} in {directory}: a Hugging Face checkpoint directory needs it.")
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise CheckpointFormatError(f"{path} is not valid JSON ({e}).") from e


def layer_windows(hf: Mapping[str, Any]) -> list[int | None]:
  """Per-layer sliding window (None = full attention) of the published architecture."""
  n, mt = int(hf["num_hidden_layers"]), hf.get("model_type")
  w = hf.get("sliding_window")
  if hf.get("layer_types"):
    return [w if t == "sliding_attention" else None for t in hf["layer_types"]]
  if mt == "mistral" and w:
    return [int(w)] * n
  if mt == "qwen2" and hf.get("use_sliding_window") and w:
    first = int(hf.get("max_window_layers", n))
    return [int(w) if i >= first else None for i in range(n)]
  return [None] * n


def model_config(hf: Mapping[str, Any], *, dtype: str | None = None, rope_scaling: Any = None,
                 attention: Mapping[str, Any] | None = None, where: str = CONFIG) -> dict:
  """HF config.json dict -> our `config.model` dict (name="transformer_lm").

  dtype: parameter and compute dtype name (default: config's torch_dtype, else float32).
  rope_scaling: see `rope.resolve` (None keeps config.json's). attention: AttentionConfig field overrides for
  every layer (Su's methods: {"position": "rerope", "rerope_window": 1024, "rerope_impl": "blockwise"},
  {"logn": "retrofit", "logn_base_length": 4096}, {"window": 1024, "lambda_first_tokens": 4}, ...).
  """
  mt = hf.get("model_type")
  if mt not in MODEL_TYPES:
    raise CheckpointFormatError(f"{where}: unsupported model_type {mt!r}; supported: {MODEL_TYPES}.")
  for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
    if key not in hf:
      raise CheckpointFormatError(f"{where}: missing {key!r}, required for model_type {mt!r}.")
  if hf.get("hidden_act", "silu") not in ("silu", "swish"):
    raise CheckpointFormatError(f"{where}: hidden_act {hf['hidden_act']!r} unsupported (only silu).")
  if mt == "llama" and (hf.get("attention_bias") or hf.get("mlp_bias")):
    raise CheckpointFormatError(f"{where}: llama attention_bias/mlp_bias=true is unsupported.")
  if float(hf.get("partial_rotary_factor", 1.0)) != 1.0:
    raise CheckpointFormatError(f"{where}: partial_rotary_factor != 1 is unsupported.")
  heads = int(hf["num_attention_heads"])
  head_dim = int(hf.get("head_dim") or hf["hidden_size"] // heads)
  kv = int(hf.get("num_key_value_heads") or heads)
  if dtype is None:
    dtype = _DTYPE_NAMES.get(str(hf.get("torch_dtype", hf.get("dtype", "float32"))), "float32")
  if dtype not in ("float32", "bfloat16", "float16"):
    raise CheckpointFormatError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}.")
  scaling = rope_lib.resolve(rope_scaling, hf, where)
  base = dict(position="rope", rope_base=float(hf.get("rope_theta", 10000.0)),
              rope_convention="rotate_half", causal=True)
  if scaling is not None:
    base["scaling"] = scaling
  extra = dict(attention or {})
  layers = [dict(base, window=w) if w else dict(base) for w in layer_windows(hf)]
  layers = [{**a, **extra} for a in layers]
  cfg = dict(
      name="transformer_lm", vocab_size=int(hf["vocab_size"]), num_layers=int(hf["num_hidden_layers"]),
      embed_dim=int(hf["hidden_size"]), num_heads=heads, head_dim=head_dim,
      mlp_dim=int(hf["intermediate_size"]), num_kv_heads=None if kv == heads else kv,
      norm="pre", block="mha", norm_type="rmsnorm", mlp_activation="silu", mlp_gated=True,
      use_bias=False, qkv_bias=True if mt == "qwen2" else None,
      tie_embedding=bool(hf.get("tie_word_embeddings", False)),
      norm_epsilon=float(hf.get("rms_norm_eps", 1e-6)), dropout_rate=0.0, dtype=dtype, param_dtype=dtype)
  if all(a == layers[0] for a in layers):
    cfg["attention"] = layers[0]
  else:
    cfg["attention"], cfg["layer_attention"] = {}, layers
  return cfg


def hf_config(model_cfg: Mapping[str, Any], attention: tuple, *, max_position_embeddings: int,
              dtype_name: str) -> dict:
  """Our TransformerLM fields (+ its per-layer AttentionConfigs) -> an HF config.json dict (the reverse)."""
  m = model_cfg
  a0 = attention[0]
  windows = [a.window for a in attention]
  qkv_bias = bool(m.get("qkv_bias")) and not m.get("use_bias")
  if qkv_bias:
    model_type = "qwen2"
  elif windows[0] is not None:
    model_type = "mistral"
  else:
    model_type = "llama"
  out = {
      "architectures": [{"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                         "qwen2": "Qwen2ForCausalLM"}[model_type]],
      "model_type": model_type, "vocab_size": m["vocab_size"], "hidden_size": m["embed_dim"],
      "intermediate_size": m["mlp_dim"], "num_hidden_layers": m["num_layers"],
      "num_attention_heads": m["num_heads"], "num_key_value_heads": m.get("num_kv_heads") or m["num_heads"],
      "head_dim": m["head_dim"], "hidden_act": "silu", "rms_norm_eps": m.get("norm_epsilon", 1e-6),
      "rope_theta": a0.rope_base, "rope_scaling": rope_lib.to_hf(a0.scaling),
      "max_position_embeddings": int(max_position_embeddings),
      "tie_word_embeddings": bool(m.get("tie_embedding", True)), "torch_dtype": dtype_name,
      "attention_dropout": 0.0, "initializer_range": 0.02, "use_cache": True,
  }
  if model_type == "llama":
    out.update(attention_bias=False, mlp_bias=False)
  if model_type == "mistral":
    out["sliding_window"] = windows[0]
  if model_type == "qwen2":
    w = next((x for x in windows if x is not None), None)
    first = next((i for i, x in enumerate(windows) if x is not None), len(windows))
    out.update(use_sliding_window=w is not None, sliding_window=w, max_window_layers=first)
  return out
