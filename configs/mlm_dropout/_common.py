"""Shared pieces of the MLM/MAE-as-dropout configs (issue #8; https://kexue.fm/archives/8770)."""
from kexue_jax import vocab

# Downstream task: which top-level standard-library package a window of source comes from. Rule: the packages
# with >= 10 files in the `train` split and >= 3 files in `validation+test` of python_stdlib_text (Python
# 3.11.7; `kexue_jax.data.text_views.package_counts()` recomputes the counts), in order of training files.
CLASSES = ("encodings", "lib2to3", "idlelib", "distutils", "asyncio", "email", "importlib", "turtledemo",
           "multiprocessing")

# Encoder sizes: (num_layers, embed_dim, num_heads, head_dim, mlp_dim).
SIZES = {
    "local": (1, 32, 2, 16, 64),      # runlocal: a few seconds
    "small": (3, 128, 4, 32, 512),    # the default CPU study (cut from 4 layers to fit the 2-core budget)
    "base": (12, 768, 12, 64, 3072),  # BERT-base
}


def encoder(size: str, *, dropout: float, dtype: str = "float32") -> dict:
  """config.model of the bidirectional byte-level encoder (RoPE, pre-norm, untied MLM head)."""
  if size not in SIZES:
    raise ValueError(f"unknown encoder size {size!r}; choose from {sorted(SIZES)}.")
  layers, d, h, dh, f = SIZES[size]
  return dict(name="transformer_encoder", vocab_size=vocab.VOCAB_SIZE, num_layers=layers, embed_dim=d,
              num_heads=h, head_dim=dh, mlp_dim=f, dropout_rate=dropout, attention_dropout_rate=0.0,
              norm="pre", attention=dict(position="rope"), tie_embedding=False, dtype=dtype,
              param_dtype="float32")


def adamw(c, *, lr: float, warmup: int, weight_decay: float = 0.01):
  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = lr
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = weight_decay
  c.optimizer.clip_grad_norm = 1.0
  c.optimizer.warmup_steps = warmup
  c.optimizer.schedule = "cosine"
  c.optimizer.min_lr_ratio = 0.0
