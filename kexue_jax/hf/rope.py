"""HF `rope_scaling` (config.json) <-> our `positions.RopeScaling`.

Transcribed from the public Hugging Face transformers `modeling_rope_utils.py` (`_compute_*_parameters`):

  default   no scaling                       -> None
  linear    theta_p / factor                 -> "pi"
  dynamic   base * (k L/L_max - (k-1))^(d/(d-2)) for L > L_max (L_max = max_position_embeddings)
                                             -> "dynamic_ntk", train_length = L_max
  yarn      HF's index ramp between floor/ceil of the correction dims of beta_fast (32) and beta_slow (1),
            cos/sin x attention_factor (default 0.1 ln k + 1, or the ratio of mscale / mscale_all_dim
            terms 0.1 m ln k + 1)        -> "yarn" with yarn_ramp="hf" (our default ramp is Su's / the
                                             paper's continuous one, `positions.py`)
  longrope  theta_p / f_p, f = long_factor past original_max_position_embeddings else short_factor,
            attention_factor sqrt(1 + ln k / ln L_orig)        -> "longrope"
  llama3    Llama 3.1 by-parts rule                            -> "llama3"

Su's methods (NTK-old/fixed/mixed, log n, ReRoPE, windows, Lambda-mask) have no HF type: pass a RopeScaling
or AttentionConfig overrides to `load_pretrained` instead.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from kexue_jax.hf.errors import CheckpointFormatError
from kexue_jax.nn.positions import RopeScaling

HF_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3")


def _mscale(k: float, m: float = 1.0) -> float:
  return 1.0 if k <= 1.0 else 0.1 * m * math.log(k) + 1.0


def from_hf(rope_scaling: Mapping[str, Any] | None, hf_config: Mapping[str, Any],
            where: str = "config.json") -> RopeScaling | None:
  """An HF rope_scaling dict (and the rest of config.json) -> RopeScaling, or None for "default"."""
  if not rope_scaling:
    return None
  rs = dict(rope_scaling)
  kind = rs.get("rope_type", rs.get("type", "default"))
  max_pos = int(hf_config.get("max_position_embeddings") or 0) or None
  factor = float(rs.get("factor") or 1.0)
  if kind == "default":
    return None
  if kind == "linear":
    return RopeScaling("pi", factor=factor)
  if kind == "dynamic":
    return RopeScaling("dynamic_ntk", factor=factor, train_length=max_pos)
  if kind == "yarn":
    orig = int(rs.get("original_max_position_embeddings") or max_pos)
    att = rs.get("attention_factor")
    if att is None and rs.get("mscale") and rs.get("mscale_all_dim"):
      att = _mscale(factor, rs["mscale"]) / _mscale(factor, rs["mscale_all_dim"])
    return RopeScaling("yarn", factor=factor, train_length=orig, yarn_ramp="hf",
                       yarn_alpha=float(rs.get("beta_slow") or 1.0),
                       yarn_beta=float(rs.get("beta_fast") or 32.0),
                       yarn_truncate=bool(rs.get("truncate", True)),
                       attention_factor=None if att is None else float(att))
  if kind == "longrope":
    if "original_max_position_embeddings" in hf_config:   # Phi-3 style: factor from the two lengths
      orig = int(hf_config["original_max_position_embeddings"])
      factor = max_pos / orig
    else:
      orig = int(rs.get("original_max_position_embeddings") or max_pos)
    att = rs.get("attention_factor")
    return RopeScaling("longrope", factor=max(factor, 1.0), train_length=orig,
                       short_factor=tuple(float(x) for x in rs["short_factor"]),
                       long_factor=tuple(float(x) for x in rs["long_factor"]),
                       attention_factor=None if att is None else float(att))
  if kind == "llama3":
    return RopeScaling("llama3", factor=factor, train_length=int(rs["original_max_position_embeddings"]),
                       low_freq_factor=float(rs["low_freq_factor"]),
                       high_freq_factor=float(rs["high_freq_factor"]))
  raise CheckpointFormatError(f"{where}: unsupported rope_scaling type {kind!r}; supported: {HF_TYPES}.")


def to_hf(s: RopeScaling | None) -> dict | None:
  """RopeScaling -> HF rope_scaling dict (None for no scaling); Su-only kinds raise."""
  if s is None or s.kind == "none":
    return None
  if s.kind == "pi":
    return {"rope_type": "linear", "factor": s.factor}
  if s.kind == "dynamic_ntk" and s.dynamic_length is None:
    return {"rope_type": "dynamic", "factor": s.factor}
  if s.kind == "yarn" and s.yarn_ramp == "hf":
    out = {"rope_type": "yarn", "factor": s.factor, "beta_fast": s.yarn_beta, "beta_slow": s.yarn_alpha,
           "original_max_position_embeddings": s.train_length, "truncate": s.yarn_truncate}
    if s.attention_factor is not None:
      out["attention_factor"] = s.attention_factor
    elif s.yarn_mscale != 0.1:
      out["attention_factor"] = s.yarn_mscale * math.log(s.factor) + 1.0
    return out
  if s.kind == "llama3":
    return {"rope_type": "llama3", "factor": s.factor, "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor, "original_max_position_embeddings": s.train_length}
  if s.kind == "longrope":
    out = {"rope_type": "longrope", "factor": s.factor, "short_factor": list(s.short_factor),
           "long_factor": list(s.long_factor), "original_max_position_embeddings": s.train_length}
    if s.attention_factor is not None:
      out["attention_factor"] = s.attention_factor
    return out
  raise CheckpointFormatError(
      f"RoPE scaling {s.kind!r} (yarn_ramp={s.yarn_ramp!r}) has no Hugging Face rope_type; export the "
      "model without it and apply it after loading (load_pretrained(rope_scaling=...)).")


def resolve(arg: Any, hf_config: Mapping[str, Any], where: str) -> RopeScaling | None:
  """load_pretrained's rope_scaling argument: None -> config.json's; a RopeScaling; an HF dict
  ({"rope_type": ...}); or our dict ({"kind": ...}); "none"/"default" -> no scaling."""
  if arg is None:
    return from_hf(hf_config.get("rope_scaling"), hf_config, where)
  if isinstance(arg, RopeScaling):
    return arg
  if isinstance(arg, str) and arg in ("none", "default"):
    return None
  if isinstance(arg, Mapping):
    if "kind" in arg:
      d = {k: tuple(v) if isinstance(v, list) else v for k, v in arg.items()}
      return RopeScaling(**d)
    return from_hf(arg, hf_config, "rope_scaling argument")
  raise CheckpointFormatError(f"rope_scaling must be None, a RopeScaling or a dict, got {type(arg).__name__}.")
