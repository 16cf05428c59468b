r"""R-Drop full config: SST-2 (TFDS `glue/sst2`) sentiment with a byte-level Transformer encoder from scratch.

  python -m kexue_jax.main --config configs/rdrop/sst2_transformer.py --workdir /tmp/kexue/rdrop_sst2
  python -m kexue_jax.main --config configs/rdrop/sst2_transformer.py:alpha=0,passes=single --workdir ...
  python -m kexue_jax.main --config configs/rdrop/sst2_transformer.py:runlocal --workdir /tmp/kexue/rdrop_sst2_l

The text-classification counterpart of Su's CLUE runs (https://kexue.fm/archives/8496: BERT-base, dropout 0.3,
alpha 4, batch 32) and of the paper's GLUE experiments (arXiv 2106.14448), scaled down and *not* pre-trained:
tokens are [CLS] + UTF-8 bytes (kexue_jax/data/text_views.py `text_bytes`), the [CLS] state feeds the classifier head.
Needs `glue/sst2` prepared as array_record in the TFDS data dir (kexue_jax downloads nothing); evaluation is on
the labelled `validation` split (872 sentences; the test labels are hidden).

`runlocal` does not touch SST-2: it trains on an offline stand-in with the same batch format, MNIST-1D signals
quantised to byte tokens (`standin_tokens`, 10 classes), so CI needs no network. Its numbers mean nothing.

Arguments: runlocal, alpha=4.0, dropout=0.1, passes=duplicate|split_keys|single, steps=20000, seed=0.
"""
from kexue_jax import config_lib
from kexue_jax import vocab


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, alpha=4.0, dropout=0.1, passes="duplicate", steps=20000, seed=0)
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else 64
  c.log_every_steps = 2 if arg.runlocal else 100
  c.eval_every_steps = 0 if arg.runlocal else 2000
  c.checkpoint_every_steps = 0 if arg.runlocal else 2000
  c.num_eval_batches = 2 if arg.runlocal else None
  c.progress_bar = not arg.runlocal

  if arg.runlocal:
    c.data.name = "mnist1d"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.preprocess = "standin_tokens"
    c.data.seq_len = 48
  else:
    c.data.name = "glue/sst2"
    c.data.train_split, c.data.eval_split = "train", "validation"
    c.data.preprocess = "text_bytes"
    c.data.text_key = "sentence"
    c.data.seq_len = 128

  c.task = dict(name="classify", rdrop_alpha=arg.alpha, passes=arg.passes, unlabelled_alpha=None,
                mc_passes=2 if arg.runlocal else 20, eval_seed=0,
                num_classes=10 if arg.runlocal else 2, pool="first", head_dropout_rate=arg.dropout)
  c.model = dict(
      name="transformer_encoder",
      vocab_size=vocab.CLASSIFY_VOCAB_SIZE,
      num_layers=1 if arg.runlocal else 4,
      embed_dim=32 if arg.runlocal else 256,
      num_heads=2 if arg.runlocal else 4,
      head_dim=16 if arg.runlocal else 64,
      mlp_dim=64 if arg.runlocal else 1024,
      dropout_rate=arg.dropout,
      attention_dropout_rate=arg.dropout,
      norm="pre",
      attention=dict(position="rope"),
      dtype="auto",
      param_dtype="float32",
  )

  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 3e-4
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_steps = 1 if arg.runlocal else 1000
  c.optimizer.schedule = "cosine"
  c.optimizer.min_lr_ratio = 0.0
  c.study = dict(arg=arg.to_dict())
  return c
