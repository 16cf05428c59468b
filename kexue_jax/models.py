"""Config -> Flax module: the one bridge between ``config.model`` and the config-free ``kexue_jax.nn``.

``config.model.name`` picks a constructor; the remaining keys are its keyword arguments, with three
conveniences: dtype names (``"bfloat16"``, or ``"auto"`` = bf16 compute on TPU/GPU and float32 on CPU),
``attention`` given as a dict of :class:`kexue_jax.nn.attention.AttentionConfig` fields, and
``layer_attention`` -- a list with one dict of overrides per layer (HWFA and other per-layer choices).
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections

from kexue_jax import config_lib

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def resolve_dtype(name: Any, *, platform: str | None = None) -> Any:
  """``"auto"``: bfloat16 on TPU/GPU, float32 on CPU. Other names map to jnp dtypes."""
  if not isinstance(name, str):
    return name
  if name == "auto":
    platform = platform or jax.default_backend()
    return jnp.float32 if platform == "cpu" else jnp.bfloat16
  if name not in _DTYPES:
    raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES) + ['auto']}.")
  return _DTYPES[name]


def _attention_configs(kw: dict[str, Any]) -> None:
  """Turns ``attention`` / ``layer_attention`` dicts into AttentionConfig(s), in place."""
  if "attention" not in kw and "layer_attention" not in kw:
    return
  from kexue_jax.nn import attention as attn_lib  # pylint: disable=g-import-not-at-top
  from kexue_jax.nn import positions as pos_lib  # pylint: disable=g-import-not-at-top

  def make(fields):
    fields = dict(fields)
    if isinstance(fields.get("scaling"), dict):  # RoPE scaling (PI/NTK/YaRN...) given as a dict
      fields["scaling"] = pos_lib.RopeScaling(**fields["scaling"])
    return attn_lib.AttentionConfig(**fields)

  base = dict(kw.pop("attention", None) or {})
  layers = kw.pop("layer_attention", None)
  try:
    if layers:
      if len(layers) != kw.get("num_layers", len(layers)):
        raise ValueError(f"model.layer_attention has {len(layers)} entries but model.num_layers="
                         f"{kw.get('num_layers')}; give one dict of overrides per layer.")
      kw["attention"] = tuple(make({**base, **dict(o or {})}) for o in layers)
    else:
      kw["attention"] = make(base)
  except TypeError as e:
    raise ValueError(f"bad model.attention field: {e}. Valid fields: "
                     f"{sorted(attn_lib.AttentionConfig.__dataclass_fields__)}") from e


def _transformer_lm(**kw):
  from kexue_jax.nn import transformer  # pylint: disable=g-import-not-at-top
  return transformer.TransformerLM(**kw)


def _transformer_encoder(**kw):
  from kexue_jax.nn import transformer  # pylint: disable=g-import-not-at-top
  return transformer.TransformerEncoder(**kw)


def _mlp(**kw):
  from kexue_jax.nn import mlp  # pylint: disable=g-import-not-at-top
  return mlp.MLP(**kw)


def _cnn1d(**kw):
  from kexue_jax.nn import cnn  # pylint: disable=g-import-not-at-top
  return cnn.CNN1D(**kw)


def _vit(**kw):
  from kexue_jax.nn import vit  # pylint: disable=g-import-not-at-top
  return vit.ViT(**kw)


def _resnet(**kw):
  from kexue_jax.nn import resnet  # pylint: disable=g-import-not-at-top
  return resnet.ResNet(**kw)


MODELS: dict[str, Callable[..., Any]] = {
    "transformer_lm": _transformer_lm,
    "transformer_encoder": _transformer_encoder,
    "mlp": _mlp,
    "cnn1d": _cnn1d,
    "vit": _vit,
    "resnet": _resnet,
}


def build_model(model_cfg: ml_collections.ConfigDict | dict[str, Any]):
  """``config.model`` -> an unbound flax module."""
  kw = config_lib.to_dict(model_cfg)  # resolves values derived by FieldReference (e.g. from data.seq_len)
  name = kw.pop("name", None)
  if name not in MODELS:
    raise ValueError(f"unknown model.name {name!r}; available models: {sorted(MODELS)}.")
  for key in ("dtype", "param_dtype"):
    if key in kw:
      kw[key] = resolve_dtype(kw[key])
  _attention_configs(kw)
  try:
    return MODELS[name](**kw)
  except TypeError as e:
    raise ValueError(f"model {name!r} does not accept these config.model keys: {e}") from e
