r"""Fine-tuning on the stdlib package-of-origin task, from a pre-training run or from scratch (issue #8).

  python -m kexue_jax.main --config configs/mlm_dropout/finetune.py:init=/tmp/kexue/mlm_pretrain --workdir W
  python -m kexue_jax.main --config configs/mlm_dropout/finetune.py:init=/tmp/kexue/mlm_pretrain,correction=0.15 ...
  python -m kexue_jax.main --config configs/mlm_dropout/finetune.py:init=/tmp/kexue/mlm_pretrain,drop=0.15 ...
  python -m kexue_jax.main --config configs/mlm_dropout/finetune.py --workdir W          # from scratch
  python -m kexue_jax.main --config configs/mlm_dropout/finetune.py:runlocal --workdir W

Task (`stdlib_packages`, kexue_jax/tasks/mlm.py): [CLS] + 63 bytes of a file of one of 9 top-level packages
(_common.CLASSES), label = the package. Training windows: a fixed labelled pool of `train_per_class` windows per
class from the `train` files (the low-resource regime where pre-training pays off; 0 = sample all windows,
class-balanced); evaluation: 128 windows per class from the `validation+test` files (1152 windows; majority
baseline 1/9). Files never cross splits. Head: linear on the mean of the final token states (`pool=mean`; MLM
never trains the [CLS] state, and a [CLS] head on the MLM encoder measured 4 points below one from scratch).
Dropout 0.1 in the encoder.

Arguments:
  init=""          workdir of a configs/mlm_dropout/pretrain.py run (its params/encoder initialise the encoder);
                   "" = random initialisation.
  correction=0.0   Su's embedding correction ratio r = the pre-training mask rate (0.15 for BERT's masking; 0.4 or
                   0.5 after pretrain.py:rate=0.4 / 0.5, Su's higher-rate extension; a mismatch is an error);
                   needs init.
  drop=0.0         DropToken ratio p during training (inference uses all tokens).
  pool=mean        "mean" (token-state mean) or "first" ([CLS] state).
  train_per_class=32  labelled windows per class (0 = every training window, class-balanced).
  holdout=0.0      0: test files = the builder's validation+test split (40 usable files). h > 0: a fraction h of
                   each class's files of all three splits are test files (text_views.is_holdout; h = 0.5 gives
                   230), the others the labelled pool; pre-train with pretrain.py:holdout=h (the same h) so the
                   encoder never reads a test file.
  per_file=0       at most this many test windows per file (0 = no cap); the study uses holdout=0.5,per_file=16:
                   1152 windows from 230 files (per_file=8 leaves 3 classes short of 128 windows: 1056).
  steps=150, batch=32, lr=3e-4, dropout=0.1, seq_len=64 (as in the pre-training), seed=0, runlocal.
"""
from kexue_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, init="", correction=0.0, drop=0.0, steps=150, batch=32,
                             lr=3e-4, dropout=0.1, seq_len=64, seed=0, pool="mean",
                             train_per_class=32, holdout=0.0, per_file=0)
  common = config_lib.load_sibling(__file__, "_common.py")
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else arg.batch
  c.log_every_steps = 2 if arg.runlocal else 50
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 0
  c.max_checkpoints_to_keep = 1
  c.num_eval_batches = 2 if arg.runlocal else None   # None: all 1152 evaluation windows
  c.progress_bar = not arg.runlocal

  c.data.name = "python_stdlib_text"
  c.data.preprocess = "stdlib_packages"
  c.data.train_split = "train+validation+test" if arg.holdout else "train"
  c.data.eval_split = "train+validation+test" if arg.holdout else "validation+test"
  c.data.holdout_frac = arg.holdout
  c.data.eval_per_file = arg.per_file
  c.data.seq_len = 32 if arg.runlocal else arg.seq_len
  c.data.classes = common.CLASSES
  c.data.eval_per_class = 4 if arg.runlocal else 128
  c.data.train_per_class = arg.train_per_class

  c.task = dict(name="droptoken_classify", num_classes=len(common.CLASSES), drop_token=arg.drop,
                head_dropout_rate=arg.dropout, pool=arg.pool, correction_r=arg.correction, mask_frac=0.8,
                random_frac=0.1)
  c.model = common.encoder("local" if arg.runlocal else "small", dropout=arg.dropout)
  if arg.init:
    c.init_from.workdir = arg.init
    c.init_from.mapping = (("encoder", "encoder"),)
  common.adamw(c, lr=arg.lr, warmup=1 if arg.runlocal else max(1, arg.steps // 10))
  c.study = dict(arg=arg.to_dict())
  return c
