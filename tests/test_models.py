"""models.build_model: config.model -> flax module (names, dtypes, attention dicts, per-layer overrides)."""
import jax.numpy as jnp
import ml_collections
import pytest

from kexue_jax import models
from kexue_jax.nn import attention as attn_lib
from kexue_jax.nn import positions as pos_lib

_LM = dict(name="transformer_lm", vocab_size=11, num_layers=2, embed_dim=8, num_heads=2, head_dim=4,
           mlp_dim=16)


@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_every_name_builds_its_module(name):
  kw = {"transformer_lm": _LM, "transformer_encoder": {**_LM, "name": "transformer_encoder"}}.get(name, {})
  module = models.build_model({"name": name, **{k: v for k, v in kw.items() if k != "name"}})
  assert type(module).__name__ == {"transformer_lm": "TransformerLM", "transformer_encoder": "TransformerEncoder",
                                   "mlp": "MLP", "cnn1d": "CNN1D", "vit": "ViT", "resnet": "ResNet"}[name]


def test_dtypes_and_configdict():
  module = models.build_model(ml_collections.ConfigDict({**_LM, "dtype": "bfloat16", "param_dtype": "float32"}))
  assert (module.dtype, module.param_dtype) == (jnp.bfloat16, jnp.float32)
  assert models.resolve_dtype("auto", platform="cpu") == jnp.float32
  assert models.resolve_dtype("auto", platform="tpu") == jnp.bfloat16
  assert models.resolve_dtype(jnp.float16) == jnp.float16  # non-strings pass through


def test_attention_dict_and_scaling_dict_become_dataclasses():
  module = models.build_model({**_LM, "attention": {"position": "rope", "rope_base": 500.0,
                                                    "scaling": {"kind": "ntk_aware", "factor": 4.0}}})
  assert module.attention == attn_lib.AttentionConfig(rope_base=500.0,
                                                      scaling=pos_lib.RopeScaling(kind="ntk_aware", factor=4.0))


def test_layer_attention_overrides_the_base_per_layer():
  module = models.build_model({**_LM, "attention": {"rope_base": 500.0},
                               "layer_attention": [{"window": 3}, None]})
  first, second = module.attention
  assert first == attn_lib.AttentionConfig(rope_base=500.0, window=3)
  assert second == attn_lib.AttentionConfig(rope_base=500.0)


@pytest.mark.parametrize("cfg, match", [
    ({"name": "nope"}, "unknown model.name 'nope'"),
    ({**_LM, "dtype": "float8"}, "unknown dtype 'float8'"),
    ({**_LM, "attention": {"not_a_field": 1}}, "bad model.attention field"),
    ({**_LM, "layer_attention": [{}]}, "layer_attention has 1 entries but model.num_layers=2"),
    ({**_LM, "not_a_key": 1}, "does not accept these config.model keys"),
])
def test_bad_model_configs(cfg, match):
  with pytest.raises(ValueError, match=match):
    models.build_model(cfg)
