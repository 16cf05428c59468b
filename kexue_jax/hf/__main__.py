"""Command line of the HF bridge. Bad input: one line on stderr, exit code 2.

  python -m kexue_jax.hf inspect PATH          architecture, parameter count and RoPE settings of a
                                               checkpoint (reads config.json and the safetensors headers only)
  python -m kexue_jax.hf export WORKDIR OUT    a finished `python -m kexue_jax.main` run -> HF checkpoint OUT
"""
from __future__ import annotations

import argparse
import math
import sys

from kexue_jax.hf import api
from kexue_jax.hf import config as config_lib
from kexue_jax.hf import rope as rope_lib
from kexue_jax.hf.errors import CheckpointFormatError
from kexue_jax.hf.safetensors_io import Checkpoint


def inspect(path: str) -> str:
  path = api.resolve_path(path)
  hf = config_lib.read_config(path)
  cfg = api.load_config(path)
  ckpt = Checkpoint(path)
  n_params = sum(math.prod(ckpt.shape(n)) for n in ckpt.weight_map)
  dtypes = sorted({ckpt.dtype_name(n) for n in ckpt.weight_map})
  scaling = rope_lib.from_hf(hf.get("rope_scaling"), hf)
  windows = config_lib.layer_windows(hf)
  files = sorted(set(ckpt.weight_map.values()))
  lines = [
      f"checkpoint       {path}",
      f"model_type       {hf['model_type']}  ({', '.join(hf.get('architectures') or [])})",
      f"layers           {cfg['num_layers']}  hidden {cfg['embed_dim']}  mlp {cfg['mlp_dim']}  "
      f"vocab {cfg['vocab_size']}",
      f"attention        {cfg['num_heads']} heads x {cfg['head_dim']}, "
      f"{cfg['num_kv_heads'] or cfg['num_heads']} kv heads (GQA group {cfg['num_heads'] // (cfg['num_kv_heads'] or cfg['num_heads'])}), "
      f"qkv bias {bool(cfg['qkv_bias'])}",
      f"sliding window   {sorted(set(windows), key=str) if any(windows) else 'none'}",
      f"norm             RMSNorm eps {cfg['norm_epsilon']};  head {'tied' if cfg['tie_embedding'] else 'untied'}",
      f"rope             rotate-half, theta {hf.get('rope_theta', 10000.0)}, max_position_embeddings "
      f"{hf.get('max_position_embeddings')}",
      f"rope_scaling     {hf.get('rope_scaling')}  ->  {scaling}",
      f"parameters       {n_params:,} ({', '.join(dtypes)}) in {len(files)} file(s)",
  ]
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m kexue_jax.hf", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="cmd", required=True)
  p = sub.add_parser("inspect", help="print architecture, parameter count and RoPE settings")
  p.add_argument("path")
  e = sub.add_parser("export", help="write a finished training run as an HF checkpoint directory")
  e.add_argument("workdir")
  e.add_argument("out")
  e.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
  e.add_argument("--max_shard_bytes", type=int, default=None, help="shard the weights beyond this size")
  args = parser.parse_args(argv)
  try:
    if args.cmd == "inspect":
      print(inspect(args.path))
    else:
      files = api.export_run(args.workdir, args.out, step=args.step, max_shard_bytes=args.max_shard_bytes)
      print(f"wrote {len(files)} files to {args.out}")
  except CheckpointFormatError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
