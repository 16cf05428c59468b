"""Independent NumPy float64 references for the HF bridge tests.

* `write_hf_checkpoint`: a tiny random checkpoint in the Hugging Face layout (config.json, model.safetensors
  or shards + model.safetensors.index.json), tensor names and [out, in] layouts of transformers'
  LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM.
* `forward`: the published decoder in float64 from those tensors (GQA by repeating kv heads, rotate-half RoPE,
  RMSNorm, SwiGLU, Qwen2 q/k/v biases, Mistral sliding window q - k < w).
* `hf_rope`: inverse frequencies and attention factor of each HF rope_type, a NumPy transcription of the
  formulas in transformers' public `src/transformers/modeling_rope_utils.py` (`_compute_*_parameters`).
"""
import json
import math
import os

import numpy as np

BASE = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
            hidden_act="silu", torch_dtype="float32")
TYPES = {
    "llama": dict(tie_word_embeddings=False),
    "mistral": dict(sliding_window=5, tie_word_embeddings=False),
    "qwen2": dict(tie_word_embeddings=True, rope_theta=1e6, num_key_value_heads=1),
}


def hf_config(model_type, **over):
  return {"model_type": model_type, **BASE, **TYPES[model_type], **over}


def random_weights(cfg, seed=0):
  rng = np.random.default_rng(seed)
  D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
  H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
  Dh = cfg.get("head_dim") or D // H
  w = {"model.embed_tokens.weight": rng.normal(0, 1, (V, D)), "model.norm.weight": 1 + 0.1 * rng.normal(size=D)}
  if not cfg.get("tie_word_embeddings"):
    w["lm_head.weight"] = rng.normal(0, D ** -0.5, (V, D))
  for i in range(cfg["num_hidden_layers"]):
    p = f"model.layers.{i}."
    for n, out in (("q", H * Dh), ("k", KV * Dh), ("v", KV * Dh)):
      w[f"{p}self_attn.{n}_proj.weight"] = rng.normal(0, D ** -0.5, (out, D))
      if cfg["model_type"] == "qwen2":
        w[f"{p}self_attn.{n}_proj.bias"] = rng.normal(0, 0.5, out)
    w[f"{p}self_attn.o_proj.weight"] = rng.normal(0, (H * Dh) ** -0.5, (D, H * Dh))
    w[f"{p}mlp.gate_proj.weight"] = rng.normal(0, D ** -0.5, (F, D))
    w[f"{p}mlp.up_proj.weight"] = rng.normal(0, D ** -0.5, (F, D))
    w[f"{p}mlp.down_proj.weight"] = rng.normal(0, F ** -0.5, (D, F))
    w[f"{p}input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=D)
    w[f"{p}post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=D)
  return w


def write_hf_checkpoint(directory, cfg, weights, *, dtype=np.float32, shards=1):
  """config.json + safetensors written with the safetensors package (HF's layout)."""
  from safetensors.numpy import save_file
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, "config.json"), "w") as f:
    json.dump(cfg, f)
  arrs = {k: np.ascontiguousarray(v.astype(dtype)) for k, v in weights.items()}
  if shards == 1:
    save_file(arrs, os.path.join(directory, "model.safetensors"))
    return
  names = sorted(arrs)
  wmap = {}
  for s in range(shards):
    fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
    part = names[s::shards]
    save_file({k: arrs[k] for k in part}, os.path.join(directory, fname))
    wmap.update({k: fname for k in part})
  with open(os.path.join(directory, "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": wmap}, f)


def _rms(x, w, eps):
  return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + eps) * w


def _rotate_half(x):
  h = x.shape[-1] // 2
  return np.concatenate([-x[..., h:], x[..., :h]], -1)


def forward(cfg, weights, tokens, inv_freq=None, attention_factor=1.0):
  """float64 logits [L, V] of one sequence (the published LLaMA / Mistral / Qwen2 forward)."""
  w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
  D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
  Dh = cfg.get("head_dim") or D // H
  eps, L = cfg["rms_norm_eps"], len(tokens)
  if inv_freq is None:
    inv_freq = 1.0 / cfg["rope_theta"] ** (np.arange(0, Dh, 2) / Dh)
  ang = np.arange(L)[:, None] * inv_freq[None]
  emb = np.concatenate([ang, ang], -1)
  cos, sin = np.cos(emb)[:, None] * attention_factor, np.sin(emb)[:, None] * attention_factor
  i, j = np.arange(L)[:, None], np.arange(L)[None]
  allowed = j <= i
  if cfg.get("sliding_window"):
    allowed &= (i - j) < cfg["sliding_window"]
  x = w["model.embed_tokens.weight"][tokens]
  for layer in range(cfg["num_hidden_layers"]):
    p = f"model.layers.{layer}."
    h = _rms(x, w[p + "input_layernorm.weight"], eps)
    proj = lambda n: h @ w[f"{p}self_attn.{n}_proj.weight"].T + w.get(f"{p}self_attn.{n}_proj.bias", 0.0)
    q = proj("q").reshape(L, H, Dh)
    k = proj("k").reshape(L, KV, Dh)
    v = proj("v").reshape(L, KV, Dh)
    q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
    k, v = np.repeat(k, H // KV, axis=1), np.repeat(v, H // KV, axis=1)
    s = np.einsum("lhd,shd->hls", q, k) / math.sqrt(Dh)
    s = np.where(allowed[None], s, -np.inf)
    pr = np.exp(s - s.max(-1, keepdims=True))
    pr /= pr.sum(-1, keepdims=True)
    o = np.einsum("hls,shd->lhd", pr, v).reshape(L, H * Dh)
    x = x + o @ w[p + "self_attn.o_proj.weight"].T
    h = _rms(x, w[p + "post_attention_layernorm.weight"], eps)
    g = h @ w[p + "mlp.gate_proj.weight"].T
    x = x + (g / (1 + np.exp(-g)) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
  x = _rms(x, w["model.norm.weight"], eps)
  head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
  return x @ head.T


def hf_rope(rope_scaling, cfg, seq_len=None):
  """(inv_freq, attention_factor) of HF's rope_type formulas (modeling_rope_utils.py), float64."""
  base, D = cfg["rope_theta"], cfg["hidden_size"] // cfg["num_attention_heads"]
  max_pos = cfg["max_position_embeddings"]
  rs = rope_scaling or {"rope_type": "default"}
  t = rs.get("rope_type", rs.get("type"))
  default = 1.0 / base ** (np.arange(0, D, 2) / D)
  if t == "default":
    return default, 1.0
  factor = rs.get("factor")
  if t == "linear":
    return default / factor, 1.0
  if t == "dynamic":
    seq_len = seq_len if seq_len is not None and seq_len > max_pos else max_pos
    b = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (D / (D - 2))
    return 1.0 / b ** (np.arange(0, D, 2) / D), 1.0
  if t == "yarn":
    att = rs.get("attention_factor")
    if att is None:
      att = 0.1 * math.log(factor) + 1.0
    beta_fast, beta_slow = rs.get("beta_fast") or 32, rs.get("beta_slow") or 1
    orig = rs.get("original_max_position_embeddings") or max_pos
    corr = lambda r: (D * math.log(orig / (r * 2 * math.pi))) / (2 * math.log(base))
    low, high = max(math.floor(corr(beta_fast)), 0), min(math.ceil(corr(beta_slow)), D - 1)
    if low == high:
      high += 0.001
    ramp = np.clip((np.arange(D // 2) - low) / (high - low), 0, 1)
    pos_freqs = base ** (np.arange(0, D, 2) / D)
    extra, inter = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    ef = 1 - ramp
    return inter * (1 - ef) + extra * ef, att
  if t == "longrope":
    orig = cfg["original_max_position_embeddings"]
    factor = max_pos / orig
    att = rs.get("attention_factor")
    if att is None:
      att = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(orig))
    # Current transformers: long factors once the sequence exceeds the original length, else short.
    ext = np.asarray(rs["long_factor"] if seq_len is not None and seq_len > orig else rs["short_factor"],
                     np.float64)
    return 1.0 / (ext * base ** (np.arange(0, D, 2) / D)), att
  if t == "llama3":
    old, lf, hf = rs["original_max_position_embeddings"], rs["low_freq_factor"], rs["high_freq_factor"]
    wavelen = 2 * math.pi / default
    inv = np.where(wavelen > old / lf, default / factor, default)
    smooth = (old / wavelen - lf) / (hf - lf)
    smoothed = (1 - smooth) * inv / factor + smooth * inv
    medium = ~(wavelen < old / hf) & ~(wavelen > old / lf)
    return np.where(medium, smoothed, inv), 1.0
  raise ValueError(t)
