"""Memory-mapped reading and atomic writing of `*.safetensors` files (single or sharded with an index).

Format (https://github.com/huggingface/safetensors, README "Format"): an 8-byte little-endian header size N,
N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, then the
raw little-endian tensor bytes, offsets relative to the end of the header.

Reading: the `safetensors` package's NumPy API cannot return bfloat16 (NumPy has no such dtype), so tensors
are NumPy views of an `np.memmap` of the file (bfloat16 through `ml_dtypes`): slicing one touches only the
pages it needs, which is what lets `weights.py` place a 7B model shard by shard. Writing uses the package
(`safetensors.numpy.save_file`) into a temporary file that is renamed into place (no half-written file).
"""
from __future__ import annotations

import json
import os
import struct
from typing import Mapping

import ml_dtypes
import numpy as np

from kexue_jax.hf.errors import CheckpointFormatError

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}
DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"


class SafetensorsFile:
  """One `.safetensors` file: header parsed eagerly, data memory-mapped lazily."""

  def __init__(self, path: str):
    self.path = path
    if not os.path.isfile(path):
      raise CheckpointFormatError(f"missing shard {path}: download every file listed in {INDEX}.")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
      raw = f.read(8)
      n = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
      if not 0 < n <= size - 8:
        raise CheckpointFormatError(f"{path} is not a safetensors file (bad header size); re-download it.")
      try:
        header = json.loads(f.read(n))
      except ValueError as e:
        raise CheckpointFormatError(f"{path}: unreadable safetensors header ({e}); re-download it.") from e
    header.pop("__metadata__", None)
    self.header: dict = header
    self._start = 8 + n
    self._mm = None

  def keys(self):
    return self.header.keys()

  def shape(self, name: str) -> tuple[int, ...]:
    return tuple(self.header[name]["shape"])

  def dtype_name(self, name: str) -> str:
    return self.header[name]["dtype"]

  def array(self, name: str) -> np.ndarray:
    """A zero-copy (memory-mapped, read-only) view of one tensor."""
    info = self.header[name]
    if info["dtype"] not in DTYPES:
      raise CheckpointFormatError(
          f"{self.path}: tensor {name} has dtype {info['dtype']}; only floating-point "
          f"{sorted(DTYPES)} checkpoints load (dequantize the checkpoint first).")
    if self._mm is None:
      self._mm = np.memmap(self.path, dtype=np.uint8, mode="r")
    begin, end = info["data_offsets"]
    dt = np.dtype(DTYPES[info["dtype"]])
    shape = tuple(info["shape"])
    if end - begin != dt.itemsize * int(np.prod(shape, dtype=np.int64)):
      raise CheckpointFormatError(f"{self.path}: tensor {name} byte range does not match its shape "
                                  f"{list(shape)}; the file is truncated or corrupt.")
    return self._mm[self._start + begin:self._start + end].view(dt).reshape(shape)


class Checkpoint:
  """All tensors of a checkpoint directory: `model.safetensors` or the shards of its index."""

  def __init__(self, directory: str):
    self.directory = directory
    index_path = os.path.join(directory, INDEX)
    if os.path.isfile(index_path):
      with open(index_path) as f:
        try:
          weight_map = json.load(f)["weight_map"]
        except (ValueError, KeyError) as e:
          raise CheckpointFormatError(f"{index_path}: not a safetensors index (need a 'weight_map'): {e}.")
      self.source = index_path
    elif os.path.isfile(os.path.join(directory, SINGLE)):
      weight_map = None
      self.source = os.path.join(directory, SINGLE)
    else:
      raise CheckpointFormatError(
          f"no {SINGLE} or {INDEX} in {directory}: only safetensors checkpoints load "
          "(convert *.bin files with the safetensors package first).")
    self._files: dict[str, SafetensorsFile] = {}
    if weight_map is None:
      self.weight_map = {k: SINGLE for k in self._file(SINGLE).keys()}
    else:
      self.weight_map = dict(weight_map)
      for fname in sorted(set(self.weight_map.values())):
        self._file(fname)  # every shard must exist (one-line error naming it)
      for name, fname in self.weight_map.items():
        if name not in self._file(fname).header:
          raise CheckpointFormatError(f"{INDEX} maps {name} to {fname}, which does not contain it.")

  def _file(self, fname: str) -> SafetensorsFile:
    if fname not in self._files:
      self._files[fname] = SafetensorsFile(os.path.join(self.directory, fname))
    return self._files[fname]

  def __contains__(self, name: str) -> bool:
    return name in self.weight_map

  def file_of(self, name: str) -> str:
    return os.path.join(self.directory, self.weight_map[name])

  def shape(self, name: str) -> tuple[int, ...]:
    return self._file(self.weight_map[name]).shape(name)

  def dtype_name(self, name: str) -> str:
    return self._file(self.weight_map[name]).dtype_name(name)

  def array(self, name: str) -> np.ndarray:
    return self._file(self.weight_map[name]).array(name)


def _atomic(path: str, write) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    write(tmp)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_json(path: str, obj) -> None:
  def w(tmp):
    with open(tmp, "w") as f:
      json.dump(obj, f, indent=2, sort_keys=True)
      f.write("\n")
  _atomic(path, w)


def write_checkpoint(directory: str, tensors: Mapping[str, np.ndarray], *,
                     max_shard_bytes: int | None = None) -> list[str]:
  """Writes tensors as `model.safetensors`, or as shards + index when they exceed max_shard_bytes.

  Shards are `model-0000i-of-0000n.safetensors` (HF's naming); the index is written last, so a reader
  never sees an index pointing at a shard that is not complete. Returns the files written.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(directory, exist_ok=True)
  names = list(tensors)
  shards, cur, cur_bytes = [], [], 0
  for n in names:
    nb = tensors[n].nbytes
    if max_shard_bytes and cur and cur_bytes + nb > max_shard_bytes:
      shards.append(cur)
      cur, cur_bytes = [], 0
    cur.append(n)
    cur_bytes += nb
  shards.append(cur)
  meta = {"format": "np"}
  if len(shards) == 1:
    out = os.path.join(directory, SINGLE)
    _atomic(out, lambda tmp: save_file({n: np.ascontiguousarray(tensors[n]) for n in names}, tmp, meta))
    stale = os.path.join(directory, INDEX)
    if os.path.exists(stale):
      os.remove(stale)
    return [out]
  written, weight_map = [], {}
  for i, shard in enumerate(shards):
    fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
    out = os.path.join(directory, fname)
    _atomic(out, lambda tmp, s=shard: save_file({n: np.ascontiguousarray(tensors[n]) for n in s}, tmp, meta))
    weight_map.update({n: fname for n in shard})
    written.append(out)
  total = int(sum(tensors[n].nbytes for n in names))
  write_json(os.path.join(directory, INDEX), {"metadata": {"total_size": total}, "weight_map": weight_map})
  stale = os.path.join(directory, SINGLE)
  if os.path.exists(stale):
    os.remove(stale)
  return written + [os.path.join(directory, INDEX)]
