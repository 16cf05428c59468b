"""`load_pretrained` / `save_pretrained`: Hugging Face LLaMA-family checkpoints <-> our TransformerLM."""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, SingleDeviceSharding

from kexue_jax import models
from kexue_jax import sharding as sharding_lib
from kexue_jax.hf import config as config_lib
from kexue_jax.hf import weights
from kexue_jax.hf.errors import CheckpointFormatError
from kexue_jax.hf.safetensors_io import Checkpoint, DTYPE_NAMES, write_checkpoint, write_json

TOKENIZER = "tokenizer.json"


def resolve_path(path: str) -> str:
  """A local checkpoint directory; a hub name ("org/model") only with huggingface_hub installed and online."""
  path = os.fspath(path)
  if os.path.isdir(path):
    return path
  how = (f"download it first, e.g. `huggingface-cli download {path} --include '*.json' '*.safetensors' "
         f"--local-dir DIR` (pip install huggingface_hub), and pass DIR")
  if path.count("/") != 1 or path.startswith((".", "/", "~")):
    raise CheckpointFormatError(f"no checkpoint directory {path} (a Hugging Face checkpoint directory holds "
                                "config.json and *.safetensors).")
  try:
    import huggingface_hub  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointFormatError(f"{path} is not a local directory and huggingface_hub is not installed; "
                                f"{how}.") from None
  try:
    return huggingface_hub.snapshot_download(path, allow_patterns=["*.json", "*.safetensors"])
  except Exception as e:  # offline, unknown repo, gated model: one line
    raise CheckpointFormatError(f"could not fetch {path} from the Hugging Face hub "
                                f"({type(e).__name__}); {how}.") from None


def load_config(path: str, *, dtype: str | None = None, rope_scaling: Any = None,
                attention: Mapping[str, Any] | None = None) -> dict:
  """The `config.model` dict for a checkpoint directory (feeds `models.build_model` and the evaluators)."""
  path = resolve_path(path)
  return config_lib.model_config(config_lib.read_config(path), dtype=_dtype_name(dtype),
                                 rope_scaling=rope_scaling, attention=attention,
                                 where=os.path.join(path, config_lib.CONFIG))


def _dtype_name(dtype) -> str | None:
  if dtype is None or isinstance(dtype, str):
    return dtype
  name = np.dtype(dtype).name
  return {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}.get(name, name)


def abstract_params(model: nn.Module):
  """Boxed (logically partitioned) ShapeDtypeStructs of the model's params, without allocating them."""
  tokens = jnp.zeros((1, 1), jnp.int32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), tokens))["params"]


def load_pretrained(path: str, *, mesh: Mesh | None = None, dtype=None, rope_scaling: Any = None,
                    attention: Mapping[str, Any] | None = None, rules=sharding_lib.DEFAULT_RULES):
  """(model, params) for a LLaMA / Mistral / Qwen2 checkpoint directory (config.json + safetensors).

  `model.apply({"params": params}, tokens_BL)` -> float32 logits [B, L, vocab].
  mesh: place every parameter directly in its sharding under `rules` (our logical axes -> mesh axes);
    None = the first device. dtype: parameter/compute dtype (default config.json's torch_dtype; bf16 stays
    bf16). rope_scaling: None = config.json's; an HF dict ({"rope_type": "yarn", "factor": 4.0}); a
    `RopeScaling` (Su's NTK-old/fixed/mixed...); "none". attention: AttentionConfig overrides for every
    layer (ReRoPE, log n, windows, Lambda-mask, blockwise kernels; see `config.model_config`).
  """
  path = resolve_path(path)
  cfg = load_config(path, dtype=dtype, rope_scaling=rope_scaling, attention=attention)
  ckpt = Checkpoint(path)
  model = models.build_model(cfg)
  abstract = abstract_params(model)
  if mesh is None:
    dev = SingleDeviceSharding(jax.devices()[0])
    shardings = jax.tree.map(lambda _: dev, nn.unbox(abstract))
  else:
    shardings = sharding_lib.logical_shardings(abstract, mesh, sharding_lib.normalize_rules(rules))
  extra = weights.unused_tensors(ckpt, nn.unbox(abstract), tied=cfg["tie_embedding"])
  if extra:
    raise CheckpointFormatError(
        f"{ckpt.file_of(extra[0])}: tensor {extra[0]} (and {len(extra) - 1} more) is not part of the model "
        "config.json describes; config.json and the weights disagree.")
  params = weights.load_params(ckpt, nn.unbox(abstract), shardings)
  return model, params


def load_tokenizer(path: str):
  """The checkpoint's `tokenizer.json` through the `tokenizers` package."""
  try:
    import tokenizers  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise CheckpointFormatError("reading tokenizer.json needs the tokenizers package: "
                                "pip install 'kexue_jax[hf]'.") from None
  f = os.path.join(resolve_path(path), TOKENIZER)
  if not os.path.isfile(f):
    raise CheckpointFormatError(f"no {TOKENIZER} in {path}; byte-level models of this repo need none.")
  return tokenizers.Tokenizer.from_file(f)


_EXPORT_FIELDS = dict(norm="pre", block="mha", norm_type="rmsnorm", mlp_activation=("silu", "swish"),
                      mlp_gated=True)


def _check_exportable(model) -> tuple:
  from kexue_jax.nn.transformer import TransformerLM  # pylint: disable=g-import-not-at-top
  from kexue_jax.nn.transformer import per_layer_configs  # pylint: disable=g-import-not-at-top
  if not isinstance(model, TransformerLM):
    raise CheckpointFormatError(f"save_pretrained exports a TransformerLM, got {type(model).__name__}.")
  for field, want in _EXPORT_FIELDS.items():
    ok = getattr(model, field) in (want if isinstance(want, tuple) else (want,))
    if not ok:
      raise CheckpointFormatError(
          f"model.{field}={getattr(model, field)!r} has no LLaMA-family equivalent (need {want!r}); "
          "train with norm='pre', norm_type='rmsnorm', mlp_activation='silu', mlp_gated=True.")
  if model.use_bias or (model.embed_norm or False):
    raise CheckpointFormatError("use_bias=True / embed_norm have no LLaMA-family equivalent (qkv_bias=True "
                                "exports as Qwen2).")
  attn = per_layer_configs(model.attention, model.num_layers)
  ref = dataclasses.replace(attn[0], window=None)
  for i, a in enumerate(attn):
    if dataclasses.replace(a, window=None) != ref:
      raise CheckpointFormatError(f"layer {i} attention differs from layer 0 beyond its window; the HF "
                                  "format has one attention setting for all layers.")
    if (a.position != "rope" or a.logn != "none" or a.qk_norm != "none" or a.rotary_fraction != 1.0
        or a.lambda_first_tokens):
      raise CheckpointFormatError(
          f"layer {i}: position={a.position!r}, logn={a.logn!r}, qk_norm={a.qk_norm!r}, "
          f"rotary_fraction={a.rotary_fraction}, lambda_first_tokens={a.lambda_first_tokens} is not "
          "expressible in HF config.json; export the plain-RoPE model and apply the method when loading.")
  windows = [a.window for a in attn]
  if any(w is not None for w in windows) and not (all(w == windows[0] for w in windows) or model.qkv_bias):
    raise CheckpointFormatError("per-layer windows are exportable only as Mistral (all layers) or "
                                "Qwen2 (layers >= max_window_layers, with qkv_bias).")
  return attn


def save_pretrained(path: str, model, params, *, max_position_embeddings: int | None = None,
                    max_shard_bytes: int | None = None, tokenizer=None) -> list[str]:
  """Writes our TransformerLM as an HF checkpoint (config.json + safetensors) that `load_pretrained` and
  the HF ecosystem (LlamaForCausalLM / MistralForCausalLM / Qwen2ForCausalLM) read.

  Interleaved-RoPE models are exported with their q/k features permuted to rotate-half (same logits).
  max_position_embeddings: the training length (written to config.json; default: rope_scaling's or 4096).
  max_shard_bytes: shard the weights with an index beyond this size. tokenizer: a `tokenizers.Tokenizer`
  to save as tokenizer.json. Every file is written to a temporary name and renamed into place.
  """
  attn = _check_exportable(model)
  if isinstance(params, Mapping) and set(params) == {"params"}:
    params = params["params"]
  fields = {f.name: getattr(model, f.name) for f in dataclasses.fields(model)
            if f.name not in ("parent", "name")}
  dtype_leaf = np.dtype(jax.tree.leaves(params)[0].dtype)
  dtype_name = {np.dtype(jnp.bfloat16): "bfloat16", np.dtype(np.float16): "float16"}.get(dtype_leaf,
                                                                                          "float32")
  if dtype_leaf not in DTYPE_NAMES:
    raise CheckpointFormatError(f"params have dtype {dtype_leaf}; export float32/bfloat16/float16.")
  max_pos = max_position_embeddings or (attn[0].scaling.train_length if attn[0].scaling and
                                        attn[0].scaling.train_length else 4096)
  hf_cfg = config_lib.hf_config(fields, attn, max_position_embeddings=max_pos, dtype_name=dtype_name)
  abstract = nn.unbox(abstract_params(model))
  got = jax.tree.map(lambda x: tuple(x.shape), nn.unbox(params))
  want = jax.tree.map(lambda x: tuple(x.shape), abstract)
  if got != want:
    raise CheckpointFormatError("params do not match the model (different tree or shapes); pass the "
                                "params this model was trained with.")
  tensors = weights.to_hf_tensors(params, interleaved_to_rotate_half=attn[0].rope_convention == "interleaved")
  files = write_checkpoint(path, tensors, max_shard_bytes=max_shard_bytes)
  if tokenizer is not None:
    tok = os.path.join(path, TOKENIZER)
    tokenizer.save(tok + ".tmp")
    os.replace(tok + ".tmp", tok)
    files.append(tok)
  cfg_path = os.path.join(path, config_lib.CONFIG)
  write_json(cfg_path, hf_cfg)   # last: a directory with config.json is complete
  return files + [cfg_path]


def export_run(workdir: str, out: str, *, step: int | None = None, max_shard_bytes: int | None = None):
  """Exports a finished training run (WORKDIR/config.json + its checkpoint) with `save_pretrained`;
  max_position_embeddings = the run's data.seq_len (its training length)."""
  import json  # pylint: disable=g-import-not-at-top
  from kexue_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  cfg_path = os.path.join(workdir, "config.json")
  if not os.path.isfile(cfg_path):
    raise CheckpointFormatError(f"no {cfg_path}: pass the --workdir of a finished python -m kexue_jax.main run.")
  with open(cfg_path) as f:
    run_cfg = json.load(f)
  model_cfg = dict(run_cfg["model"])
  for key in ("dtype", "param_dtype"):
    if model_cfg.get(key) == "auto":
      model_cfg[key] = "float32"
  model = models.build_model(model_cfg)
  try:
    state, _ = ckpt_lib.load_state(workdir, step)
  except (FileNotFoundError, ckpt_lib.CheckpointError) as e:
    raise CheckpointFormatError(str(e).splitlines()[0]) from None
  return save_pretrained(out, model, state["params"], max_shard_bytes=max_shard_bytes,
                         max_position_embeddings=int(run_cfg.get("data", {}).get("seq_len") or 4096))
