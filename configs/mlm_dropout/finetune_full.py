r"""Full-scale fine-tuning with DropToken / the embedding correction: AG News (TFDS `ag_news_subset`) from a
`pretrain_full.py` run, for a TPU.

  python -m kexue_jax.main --config configs/mlm_dropout/finetune_full.py:init=gs://BUCKET/mlm_base --workdir W
  python -m kexue_jax.main --config configs/mlm_dropout/finetune_full.py:init=gs://BUCKET/mlm_base,correction=0.15 ...
  python -m kexue_jax.main --config configs/mlm_dropout/finetune_full.py:init=gs://BUCKET/mlm_base,drop=0.1 ...
  python -m kexue_jax.main --config configs/mlm_dropout/finetune_full.py:runlocal --workdir /tmp/kexue/ft_full_l

4-way news topic classification of the `description` field as [CLS] + UTF-8 bytes (classify.py `text_bytes`:
same [CLS]/[PAD] ids as tasks/mlm.py), byte-level BERT-base encoder, [CLS] head; AdamW 3e-5 (BERT's
fine-tuning range), batch 32, 3 epochs of the 120k training examples, evaluation on the 7.6k test examples.
Needs `ag_news_subset` prepared as array_record in the TFDS data dir (nothing is downloaded).

`runlocal` uses the offline stdlib package task at toy size instead (numbers mean nothing).

Arguments: runlocal, init="" (pre-training workdir; "" = from scratch), correction=0.0, drop=0.0,
steps=11250, batch=32, lr=3e-5, seq_len=512, seed=0.
"""
from kexue_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, init="", correction=0.0, drop=0.0, steps=11_250, batch=32,
                             lr=3e-5, seq_len=512, seed=0)
  common = config_lib.load_sibling(__file__, "_common.py")
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else arg.batch
  c.log_every_steps = 2 if arg.runlocal else 100
  c.eval_every_steps = 0 if arg.runlocal else 2000
  c.checkpoint_every_steps = 0 if arg.runlocal else 2000
  c.num_eval_batches = 2 if arg.runlocal else None
  c.progress_bar = not arg.runlocal

  if arg.runlocal:
    c.data.name = "python_stdlib_text"
    c.data.preprocess = "stdlib_packages"
    c.data.eval_split = "validation+test"
    c.data.seq_len = 32
    c.data.classes = common.CLASSES
    c.data.eval_per_class = 4
    num_classes = len(common.CLASSES)
  else:
    c.data.name = "ag_news_subset"
    c.data.preprocess = "text_bytes"
    c.data.text_key = "description"
    c.data.eval_split = "test"
    c.data.seq_len = arg.seq_len
    num_classes = 4

  c.task = dict(name="droptoken_classify", num_classes=num_classes, drop_token=arg.drop, head_dropout_rate=0.1,
                correction_r=arg.correction, mask_frac=0.8, random_frac=0.1)
  c.model = common.encoder("local" if arg.runlocal else "base", dropout=0.1, dtype="auto")
  c.model.remat = not arg.runlocal
  if arg.init:
    c.init_from.workdir = arg.init
    c.init_from.mapping = (("encoder", "encoder"),)
  common.adamw(c, lr=1e-3 if arg.runlocal else arg.lr, warmup=1 if arg.runlocal else 1000)
  c.study = dict(arg=arg.to_dict())
  return c
