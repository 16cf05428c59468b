"""Parameter names and layouts: HF LLaMA-family state dict <-> our TransformerLM params.

HF stores every Linear as weight[out, in] (y = x W^T); ours are kernels[in, ...] (y = x K), with the head
axis split out for attention. Each of our parameters P is a transpose-and-reshape of one HF tensor W:

    M = W^T (Linear weights) or W (embedding, norm scales, biases);   P = M.reshape(P.shape)

  embed/embedding [V, D]                 model.embed_tokens.weight [V, D]
  block{i}/attn/query/kernel [D, H, Dh]  model.layers.{i}.self_attn.q_proj.weight [H Dh, D]   (key/value: KV)
  block{i}/attn/query/bias [H, Dh]       ...q_proj.bias [H Dh]                                  (Qwen2)
  block{i}/attn/out/kernel [H, Dh, D]    ...self_attn.o_proj.weight [D, H Dh]
  block{i}/norm_attn/scale [D]           ...input_layernorm.weight;   norm_mlp: post_attention_layernorm
  block{i}/mlp/wg|wi|wo/kernel           ...mlp.gate_proj|up_proj|down_proj.weight
  final_norm/scale [D]                   model.norm.weight
  head/kernel [D, V]                     lm_head.weight [V, D]          (untied models only)

Loading places each parameter directly in its final sharding with `jax.make_array_from_callback`: the callback
for one device's block reads only the rows/columns of the memory-mapped tensor that block needs, so no host
ever holds more than one device block at a time (a 7B model never needs a full host copy per device).
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kexue_jax.hf.errors import CheckpointFormatError
from kexue_jax.hf.safetensors_io import Checkpoint

_ATTN = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "out": "o_proj"}
_MLP = {"wg": "gate_proj", "wi": "up_proj", "wo": "down_proj"}
IGNORED = re.compile(r".*rotary_emb\.inv_freq$")   # buffers some old checkpoints saved


def hf_name(path: tuple[str, ...]) -> tuple[str, bool, int]:
  """Our param path -> (HF tensor name, transposed?, split) with M = reshape of P as (prod P[:split], rest)."""
  if path == ("embed", "embedding"):
    return "model.embed_tokens.weight", False, 1
  if path == ("head", "kernel"):
    return "lm_head.weight", True, 1
  if path == ("final_norm", "scale"):
    return "model.norm.weight", False, 1
  m = re.fullmatch(r"block(\d+)", path[0])
  if m:
    pre, rest = f"model.layers.{m.group(1)}.", path[1:]
    if rest[0] == "attn" and rest[1] in _ATTN:
      kind = "weight" if rest[2] == "kernel" else "bias"
      split = 2 if rest[1] == "out" else 1
      return f"{pre}self_attn.{_ATTN[rest[1]]}.{kind}", kind == "weight", (split if kind == "weight" else 2)
    if rest[0] == "mlp" and rest[1] in _MLP and rest[2] == "kernel":
      return f"{pre}mlp.{_MLP[rest[1]]}.weight", True, 1
    if rest == ("norm_attn", "scale"):
      return f"{pre}input_layernorm.weight", False, 1
    if rest == ("norm_mlp", "scale"):
      return f"{pre}post_attention_layernorm.weight", False, 1
  raise CheckpointFormatError(f"parameter {'/'.join(path)} has no Hugging Face LLaMA-family name.")


def _m_shape(shape: tuple[int, ...], split: int) -> tuple[int, ...]:
  if len(shape) <= split:
    return (math.prod(shape),)
  return (math.prod(shape[:split]), math.prod(shape[split:]))


def source_shape(shape: tuple[int, ...], transposed: bool, split: int) -> tuple[int, ...]:
  m = _m_shape(shape, split)
  return m[::-1] if transposed else m


def read_block(w: np.ndarray, shape: tuple[int, ...], transposed: bool, split: int, index, dtype) -> np.ndarray:
  """P[index] for P = (W^T or W).reshape(shape), reading only the rows/columns of W that the block needs."""
  index = tuple(index) + (slice(None),) * (len(shape) - len(index))
  ranges = [s.indices(n)[:2] for s, n in zip(index, shape)]
  groups = [range(0, split), range(split, len(shape))] if len(shape) > split else [range(len(shape))]
  m_slices, block_shape, inner = [], [], []
  for g in groups:
    g = list(g)
    rest = math.prod(shape[i] for i in g[1:])
    a, b = ranges[g[0]]
    m_slices.append(slice(a * rest, b * rest))
    block_shape += [b - a] + [shape[i] for i in g[1:]]
    inner += [slice(None)] + [index[i] for i in g[1:]]
  if transposed:
    block = np.asarray(w[tuple(m_slices[::-1])]).T
  else:
    block = np.asarray(w[tuple(m_slices)])
  return np.ascontiguousarray(block.reshape(block_shape)[tuple(inner)], dtype=dtype)


def _path_key(path) -> tuple[str, ...]:
  return tuple(str(getattr(k, "key", k)) for k in path)


def load_params(ckpt: Checkpoint, abstract_params: Any, shardings: Any) -> Any:
  """Our params tree, every leaf read from `ckpt` straight into its sharding (see module docstring)."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_params)
  plan = []
  for (path, leaf), sharding in zip(leaves, jax.tree.leaves(shardings)):
    key = _path_key(path)
    name, transposed, split = hf_name(key)
    if name not in ckpt:
      raise CheckpointFormatError(f"tensor {name} (for {'/'.join(key)}) is missing from {ckpt.source}.")
    want = source_shape(tuple(leaf.shape), transposed, split)
    if ckpt.shape(name) != want:
      raise CheckpointFormatError(
          f"{ckpt.file_of(name)}: tensor {name} has shape {list(ckpt.shape(name))} but config.json implies "
          f"{list(want)}; config.json and the weights disagree.")
    plan.append((name, transposed, split, leaf, sharding))
  arrays = []
  for name, transposed, split, leaf, sharding in plan:
    w = ckpt.array(name)   # memory-mapped view; raises on a non-float dtype
    cb: Callable = (lambda idx, w=w, s=tuple(leaf.shape), t=transposed, sp=split, dt=leaf.dtype:
                    read_block(w, s, t, sp, idx, dt))
    arrays.append(jax.make_array_from_callback(tuple(leaf.shape), sharding, cb))
  return jax.tree_util.tree_unflatten(treedef, arrays)


def unused_tensors(ckpt: Checkpoint, abstract_params: Any, tied: bool) -> list[str]:
  """Checkpoint tensors the model does not read (besides ignorable buffers / a tied lm_head copy)."""
  used = {hf_name(_path_key(p))[0] for p, _ in jax.tree_util.tree_flatten_with_path(abstract_params)[0]}
  skip = {"lm_head.weight"} if tied else set()
  return sorted(n for n in ckpt.weight_map if n not in used and n not in skip and not IGNORED.match(n))


def to_hf_tensors(params: Any, *, interleaved_to_rotate_half: bool = False) -> dict[str, np.ndarray]:
  """Our params -> {HF name: numpy array}. With interleaved_to_rotate_half, the q/k output features of
  each head are permuted (2p, 2p+1) -> (p, p + d/2), so that rotate-half RoPE on the exported weights gives
  exactly the scores interleaved RoPE gave (the permutation moves pair p to dims p and p + d/2)."""
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(nn.unbox(params))[0]:
    key = _path_key(path)
    name, transposed, split = hf_name(key)
    p = np.asarray(jax.device_get(leaf))
    if interleaved_to_rotate_half and len(key) >= 3 and key[1] == "attn" and key[2] in ("query", "key"):
      dh = p.shape[-1]
      perm = np.concatenate([np.arange(0, dh, 2), np.arange(1, dh, 2)])
      p = p[..., perm]
    m = p.reshape(_m_shape(p.shape, split))
    out[name] = np.ascontiguousarray(m.T if transposed else m)
  return out
