r"""A byte-level causal Transformer LM on the built-in Python-stdlib text corpus: the engine's smoke config.

  python -m kexue_jax.main --config configs/lm/tiny.py --workdir /tmp/kexue/lm_tiny
  python -m kexue_jax.main --config configs/lm/tiny.py:runlocal --workdir /tmp/kexue/lm_tiny_local

Arguments (comma-separated): ``runlocal`` (a few steps, for tests), ``steps=N``.
"""
from kexue_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, steps=300)
  c = config_lib.base_config()

  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16
  c.log_every_steps = 2 if arg.runlocal else 25
  c.eval_every_steps = 0 if arg.runlocal else 100
  c.checkpoint_every_steps = 0 if arg.runlocal else 100
  c.num_eval_batches = 2 if arg.runlocal else 8

  c.data.name = "python_stdlib_text"
  c.data.preprocess = "lm_windows"
  c.data.seq_len = 32 if arg.runlocal else 128

  c.model = dict(
      name="transformer_lm",
      vocab_size=256,
      num_layers=2,
      embed_dim=64 if arg.runlocal else 128,
      num_heads=4,
      head_dim=16 if arg.runlocal else 32,
      mlp_dim=256 if arg.runlocal else 512,
      dropout_rate=0.0,
      norm="pre",
      attention=dict(position="rope", causal=True, kernel="xla"),  # kernel="auto": splash/cuDNN
      dtype="auto",
      param_dtype="float32",
      remat=False,
  )

  c.optimizer.name = "lion"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 0.1
  c.optimizer.warmup_steps = 1 if arg.runlocal else 30
  c.optimizer.schedule = "cosine"
  return c
