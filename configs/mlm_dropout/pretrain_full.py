r"""Full-scale MLM / MAE-style pre-training: a byte-level BERT-base encoder on English Wikipedia, for a TPU.

  python -m kexue_jax.main --config configs/mlm_dropout/pretrain_full.py --workdir gs://BUCKET/mlm_base
  python -m kexue_jax.main --config configs/mlm_dropout/pretrain_full.py:mode=mae --workdir gs://BUCKET/mae_base
  python -m kexue_jax.main --config configs/mlm_dropout/pretrain_full.py:runlocal --workdir /tmp/kexue/mlm_full_l

BERT-base shape (12 layers, width 768, 12 heads, FFN 3072, dropout 0.1) over [CLS] + 511 UTF-8 bytes (vocabulary
259, tasks/mlm.py), RoPE instead of learned positions, bf16 compute ("auto"), AdamW 1e-4 with 10k warmup,
batch 256 x 1M steps (BERT's schedule), the mesh spread over every device (mesh_preset "auto": data x fsdp).
Needs the TFDS catalog dataset `wikipedia/20230601.en` prepared as array_record in the TFDS data dir
(kexue_jax downloads nothing: `tfds build wikipedia/20230601.en --file_format=array_record`).

`runlocal` does not touch Wikipedia: a tiny encoder on the built-in stdlib corpus with the same batch format,
so CI needs no network (its numbers mean nothing).

Arguments: runlocal, mode=mlm|mae, rate=0.15, steps=1000000, batch=256, seq_len=512, decoder_layers=2, seed=0.
"""
from kexue_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, mode="mlm", rate=0.15, steps=1_000_000, batch=256, seq_len=512,
                             decoder_layers=2, seed=0)
  common = config_lib.load_sibling(__file__, "_common.py")
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else arg.batch
  c.log_every_steps = 2 if arg.runlocal else 200
  c.eval_every_steps = 0 if arg.runlocal else 20_000
  c.checkpoint_every_steps = 0 if arg.runlocal else 10_000
  c.num_eval_batches = 2 if arg.runlocal else 50
  c.progress_bar = not arg.runlocal

  if arg.runlocal:
    c.data.name = "python_stdlib_text"
    c.data.eval_split = "validation"
    c.data.seq_len = 32
  else:
    c.data.name = "wikipedia/20230601.en"
    c.data.train_split = "train[:99%]"
    c.data.eval_split = "train[99%:]"
    c.data.seq_len = arg.seq_len
    c.data.max_in_memory_bytes = 0  # ~20 GB of text: read windows from the source
    c.data.num_workers = 8
  c.data.preprocess = "cls_windows"
  c.data.text_key = "text"

  c.task = dict(name="mlm", mode=arg.mode, mask_rate=arg.rate, mask_frac=0.8, random_frac=0.1,
                decoder_layers=arg.decoder_layers, eval_seed=0, eval_draws=1)
  c.model = common.encoder("local" if arg.runlocal else "base", dropout=0.1, dtype="auto")
  c.model.remat = not arg.runlocal
  common.adamw(c, lr=1e-3 if arg.runlocal else 1e-4, warmup=1 if arg.runlocal else 10_000)
  c.study = dict(arg=arg.to_dict())
  return c
