r"""Length extrapolation on a *pretrained* LLaMA-family checkpoint (issue #23; Su's LLaMA tables, kexue.fm/archives/9708).

Two things live here:
  * a trainable LLaMA-architecture byte LM (RMSNorm, SwiGLU, rotate-half RoPE, GQA, untied head) -- the model
    the CPU demo trains, exports with `python -m kexue_jax.hf export` and reloads like any HF checkpoint:
      python -m kexue_jax.main --config configs/length_extrapolation/pretrained.py:demo --workdir /tmp/hf/lm
  * `config.study`: the evaluation of a checkpoint directory (config.json + safetensors) under every method,
    read by `python -m kexue_jax.evals.length_pretrained` (per-length accuracy / loss on non-repeated
    and repeated windows, the growing-context loss, in Su's table layout).

Arguments (comma-separated):
  runlocal        a 4-step tiny model (tests)
  demo            the CPU demo model: N = 64, 400 steps (~2 min on 2 cores)
  full            Llama-2-7B (meta-llama/Llama-2-7b-hf layout) at N = 4096, tested at 4K/8K/16K, bf16,
                  FSDP over all devices (v5e-8 / v4-8); the model fields equal what `hf.load_config` reads from
                  that checkpoint's config.json (tested). An evaluation config: its eval step compiles for a
                  TPU without one (abstract shapes, no weights read):
                    python -m kexue_jax.aot --config configs/length_extrapolation/pretrained.py:full \
                        --topology v5e-8 --eval_only
  checkpoint=DIR  the HF checkpoint directory to evaluate (default /tmp/hf/export; full: /data/Llama-2-7b-hf)
  methods=a+b+c   subset of the method names below ('+'-separated; default: all)
  windows=N       test windows per length (default 32 demo, 64 full)
"""
from kexue_jax import config_lib

LLAMA2_7B = dict(vocab_size=32000, num_layers=32, embed_dim=4096, num_heads=32, head_dim=128, mlp_dim=11008,
                 num_kv_heads=None, norm_epsilon=1e-5, tie_embedding=False, rope_base=10000.0)
DEMO = dict(vocab_size=256, num_layers=2, embed_dim=128, num_heads=4, head_dim=32, mlp_dim=384, num_kv_heads=2,
            norm_epsilon=1e-6, tie_embedding=False, rope_base=10000.0)


def methods(n: int, ext: int = 8) -> dict:
  """name -> {"rope_scaling": HF or our dict | None, "attention": AttentionConfig overrides}.

  Su's settings on LLaMA (bojone/rerope): NTK-mixed with log n-dagger, ReRoPE w = N/4 with log n-dagger,
  Leaky ReRoPE w = N/4, k = 16; HF's own types for comparison (YaRN with HF's ramp, dynamic NTK).
  """
  logn = dict(logn="retrofit", logn_base_length=n)
  rerope = dict(rerope_window=max(1, n // 4), rerope_impl="blockwise", block_size=min(512, n))
  mixed = dict(kind="ntk_mixed", factor=float(ext), mixed_b=0.625)
  return {
      "rope": dict(rope_scaling="none", attention={}),
      "logn†": dict(rope_scaling="none", attention=logn),
      "ntk_old": dict(rope_scaling=dict(kind="ntk_old", factor=float(ext)), attention={}),
      "ntk_fixed+logn†": dict(rope_scaling=dict(kind="ntk_fixed", factor=float(ext)), attention=logn),
      "ntk_mixed": dict(rope_scaling=mixed, attention={}),
      "ntk_mixed+logn†": dict(rope_scaling=mixed, attention=logn),
      "rerope": dict(rope_scaling="none", attention=dict(position="rerope", **rerope)),
      "rerope+logn†": dict(rope_scaling="none", attention=dict(position="rerope", **rerope, **logn)),
      "leaky_rerope": dict(rope_scaling="none", attention=dict(position="leaky_rerope", leaky_k=16.0, **rerope)),
      "window": dict(rope_scaling="none", attention=dict(window=n)),
      "lambda": dict(rope_scaling="none", attention=dict(window=n, lambda_first_tokens=max(1, n // 16))),
      "yarn_hf": dict(rope_scaling={"rope_type": "yarn", "factor": float(ext),
                                    "original_max_position_embeddings": n}, attention={}),
      "dynamic_hf": dict(rope_scaling={"rope_type": "dynamic", "factor": float(ext)}, attention={}),
  }


def get_config(arg=None):
  a = config_lib.parse_arg(arg, runlocal=False, demo=False, full=False, checkpoint="", methods="", windows=0)
  c = config_lib.base_config()
  scale = "full" if a.full else ("tiny" if a.runlocal else "demo")
  n = {"tiny": 16, "demo": 64, "full": 4096}[scale]
  arch = dict(LLAMA2_7B if a.full else DEMO)
  if scale == "tiny":
    arch.update(embed_dim=32, head_dim=8, mlp_dim=64)
  rope_base = arch.pop("rope_base")
  c.model = dict(name="transformer_lm", **arch, norm="pre", block="mha", norm_type="rmsnorm",
                 mlp_activation="silu", mlp_gated=True, use_bias=False, qkv_bias=None, dropout_rate=0.0,
                 remat=False,
                 attention=dict(position="rope", rope_base=rope_base, rope_convention="rotate_half",
                                causal=True),
                 dtype="bfloat16" if a.full else "float32", param_dtype="bfloat16" if a.full else "float32")
  c.data.name = "python_stdlib_text"
  c.data.preprocess = "lm_windows"
  c.data.seq_len = n
  c.num_train_steps = {"tiny": 4, "demo": 400, "full": 1}[scale]
  c.batch_size = {"tiny": 8, "demo": 16, "full": 8}[scale]
  c.log_every_steps = 2 if scale == "tiny" else 50
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 0
  c.max_checkpoints_to_keep = 1
  c.num_eval_batches = 2 if scale == "tiny" else 4
  c.progress_bar = False
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-3
  c.optimizer.warmup_steps = {"tiny": 1, "demo": 40, "full": 0}[scale]   # <= num_train_steps (full: 1)
  c.optimizer.schedule = "cosine"
  if a.full:
    c.mesh.data, c.mesh.fsdp = 1, -1
  names = methods(n)
  chosen = [m for m in a.methods.split("+") if m] or list(names)
  unknown = sorted(set(chosen) - set(names))
  if unknown:
    raise ValueError(f"unknown methods {unknown}; choose '+'-separated names from {sorted(names)}.")
  c.study = dict(
      checkpoint=a.checkpoint or ("/data/Llama-2-7b-hf" if a.full else "/tmp/hf/export"),
      train_length=n, mults=(1, 2, 4) if a.full else (1, 8), windows=a.windows or (64 if a.full else 32),
      growing_docs=8 if a.full else 16,
      # Byte models read bytes; a real LLaMA tokenises the text with the checkpoint's tokenizer.json.
      tokenizer="checkpoint" if a.full else "bytes",
      dataset="pg19" if a.full else "python_stdlib_text", text_key="book_text" if a.full else "text",
      methods={m: names[m] for m in chosen})
  return c
