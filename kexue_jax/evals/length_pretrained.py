r"""Every length-extrapolation method on a pretrained HF checkpoint (LLaMA family), through length.py (issue #23).

  python -m kexue_jax.evals.length_pretrained \
      --config configs/length_extrapolation/pretrained.py:demo,checkpoint=/tmp/hf/export,methods=rope+ntk_mixed+rerope

The checkpoint (config.json + safetensors, `kexue_jax.hf`) is loaded once, onto a mesh over all devices
(FSDP: `config.mesh`); each method of `config.study.methods` is an HF / our RoPE scaling plus AttentionConfig
overrides on the same parameters. For each test length L = m N (N = study.train_length, m in study.mults):
accuracy and loss on held-out non-repeated windows and on their repeated (tiled) versions (length_lib.py), and
the growing-context loss on the last N tokens of long documents with L tokens of context (Su's LLaMA protocol,
kexue.fm/archives/9708, bojone/rerope eval_loss.py). Prints Su's table layout; --out writes the JSON.
Methods: ``config.study.methods`` (configs/length_extrapolation/pretrained.py).
Byte models read the corpus as bytes; `tokenizer="checkpoint"` tokenises it with the checkpoint's
tokenizer.json (`hf.load_tokenizer`).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import flax.linen as nn
import jax
import numpy as np

from kexue_jax import config_lib
from kexue_jax import hf
from kexue_jax import sharding
from kexue_jax.evals import length as length_lib


class TokenDocuments:
  """The `Documents` interface length.py reads (lengths, window, buffer) over token ids."""

  def __init__(self, ids_per_doc):
    self.lengths = np.array([len(x) for x in ids_per_doc], np.int64)
    self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
    self.buffer = np.concatenate(ids_per_doc).astype(np.int32) if len(ids_per_doc) else np.zeros(0, np.int32)

  def window(self, doc: int, start: int, length: int) -> np.ndarray:
    b = int(self.offsets[doc]) + start
    return self.buffer[b:b + length].astype(np.int32)


def test_documents(study):
  docs = length_lib.documents("test", study.dataset, study.text_key)
  if study.tokenizer == "bytes":
    return docs
  tok = hf.load_tokenizer(study.checkpoint)
  texts = [bytes(docs.window(d, 0, int(n)).astype(np.uint8)).decode("utf-8", "replace")
           for d, n in enumerate(docs.lengths)]
  return TokenDocuments([np.asarray(e.ids, np.int32) for e in tok.encode_batch(texts)])


def run(config, log=print) -> dict:
  s = config.study
  n, mults = int(s.train_length), [int(m) for m in s.mults]
  mesh = sharding.make_mesh(sharding.resolve_mesh_config(dict(config.mesh), config.mesh_preset, jax.devices()))
  t0 = time.time()
  rules = sharding.normalize_rules(config.logical_axis_rules)
  dtype = config.model.dtype   # compute/param dtype of the evaluation (Llama-2's config.json says float16)
  _, params = hf.load_pretrained(s.checkpoint, mesh=mesh, rules=rules, dtype=dtype)
  log(f"[pretrained] loaded {s.checkpoint} in {time.time() - t0:.1f}s")
  docs = test_documents(s)
  lengths = [m * n for m in mults]
  sets = {}
  for length in lengths:   # equal tokens per length: more windows at shorter lengths
    nonrep = length_lib.nonrepeated_set(docs, length, int(s.windows) * max(mults) * n // length)
    sets[length] = (nonrep,) + length_lib.repeated_set(nonrep, n)
  long_bt = length_lib.growing_set(docs, n, max(mults), int(s.growing_docs))
  results = {}
  for name, m in s.methods.items():
    rs = m.rope_scaling.to_dict() if hasattr(m.rope_scaling, "to_dict") else m.rope_scaling
    model_cfg = hf.load_config(s.checkpoint, dtype=dtype, rope_scaling=rs, attention=dict(m.attention))
    t0 = time.time()
    res = {}
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      for length in lengths:
        nonrep, rep, seg = sets[length]
        res[str(length)] = length_lib.evaluate_length(model_cfg, params, nonrep, rep, seg,
                                                    long_bt[:, -(length + 1):], n)
    results[name] = res
    acc = lambda L, k: float(np.mean(res[str(L)][k]["acc"]))
    log(f"[pretrained] {name:18s} " + "  ".join(f"{L}: {acc(L, 'nonrep'):.4f}" for L in lengths)
        + f"  ({time.time() - t0:.1f}s)")
  return {"checkpoint": s.checkpoint, "train_length": n, "lengths": lengths, "results": results}


def _table(header, rows) -> str:
  return "\n".join(["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
                   + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def tables(out: dict) -> str:
  """Su's layout: accuracy at N (train) / L (repeated) / L (non-repeated), then loss, then growing context."""
  n, lengths, res = out["train_length"], out["lengths"], out["results"]
  acc = lambda r, L, which: f"{100 * np.mean(r[str(L)][which]['acc']):.2f}%"
  cols = [f"{n}(训练)"] + [c for L in lengths[1:] for c in (f"{L}(重复)", f"{L}(不重复)")]
  return "\n\n".join([
      _table(["测试长度", *cols], [[name, acc(r, n, "nonrep")] + [acc(r, L, w) for L in lengths[1:] for w in
                                                                ("rep", "nonrep")] for name, r in res.items()]),
      "Loss on the last N tokens with L tokens of context (growing context, lower is better):",
      _table(["测试长度", *map(str, lengths)], [[name] + [f"{np.mean(r[str(L)]['growing']['loss']):.4f}"
                                                     for L in lengths] for name, r in res.items()])])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", default="configs/length_extrapolation/pretrained.py:demo")
  p.add_argument("--out", default=None, help="write the results JSON here")
  a = p.parse_args(argv)
  try:
    config = config_lib.load_config(a.config)
    if not os.path.isdir(config.study.checkpoint):
      raise hf.CheckpointFormatError(
          f"no checkpoint directory {config.study.checkpoint}: export one (python -m kexue_jax.hf export "
          "WORKDIR DIR) or pass checkpoint=DIR in --config.")
    out = run(config)
  except (hf.CheckpointFormatError, ValueError, FileNotFoundError) as e:
    print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
    return 2
  print(tables(out))
  if a.out:
    with open(a.out + ".tmp", "w") as f:
      json.dump(out, f, indent=1)
    os.replace(a.out + ".tmp", a.out)   # atomic: never half a file
  return 0


if __name__ == "__main__":
  sys.exit(main())
