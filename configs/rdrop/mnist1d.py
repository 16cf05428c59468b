r"""R-Drop on MNIST-1D (offline): an MLP or a 1D CNN with dropout, supervised or semi-supervised.

  python -m kexue_jax.main --config configs/rdrop/mnist1d.py --workdir /tmp/kexue/rdrop_mlp
  python -m kexue_jax.main --config configs/rdrop/mnist1d.py:model=cnn,alpha=0,passes=single --workdir ...
  python -m kexue_jax.main --config configs/rdrop/mnist1d.py:labelled=40,alpha=0 --workdir ...  # 1% labels + KL
  python -m kexue_jax.main --config configs/rdrop/mnist1d.py:runlocal --workdir /tmp/kexue/rdrop_local

Arguments (comma-separated):
  runlocal        a few steps on a tiny model (tests).
  model=mlp|cnn   MLP 40-256-256-10 (dropout after each hidden layer) or CNN1D (needs its dropout_rate).
  alpha=4.0       R-Drop alpha (paper and Su's scale; tasks/classify.py). 0 with passes=single = plain dropout.
  dropout=0.3     dropout rate (Su: 0.3).
  passes=duplicate|split_keys|single
  train_size=1000 labelled training examples: the first N of the 4000 (0 = all); a small set makes
                  regularisation matter (reproduction plan: 1000).
  labelled=0      >0: semi-supervised, the first N examples labelled (Su: the first 1%; 40 = 1%, 200 = 5%).
  unlabelled=True with labelled>0: the other 4000 - N examples are unlabelled inputs with the KL term only;
                  False: labelled-only training on the N examples (the baseline).
  beta=4.0        weight of the unlabelled KL term (used with unlabelled data; same scale as alpha). Su's
                  setup: alpha=0 (plain CE on labelled batches) + the KL term on unlabelled ones.
  steps=2000      training steps (80 epochs of 1000 examples at batch 40). seed=0.

Batch 40: divides the 1000 test examples exactly (25 evaluation batches) and any 8-device mesh.
"""
from kexue_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, model="mlp", alpha=4.0, dropout=0.3, passes="duplicate",
                             train_size=1000, labelled=0, unlabelled=True, beta=4.0, steps=2000,
                             seed=0)
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else 40
  c.log_every_steps = 2 if arg.runlocal else 250
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 0
  c.max_checkpoints_to_keep = 1
  c.num_eval_batches = 2 if arg.runlocal else None   # None: the whole test split
  c.progress_bar = not arg.runlocal

  c.data.name = "mnist1d"
  c.data.eval_split = "test"
  c.data.preprocess = "classification_inmemory"
  c.data.num_labelled = 0
  if arg.labelled:
    if arg.unlabelled:
      c.data.preprocess = "classification_semi"
      c.data.train_split = "train"
      c.data.num_labelled = arg.labelled
    else:
      c.data.train_split = f"train[:{arg.labelled}]"
  elif arg.train_size:
    c.data.train_split = f"train[:{arg.train_size}]"

  c.task = dict(name="classify", rdrop_alpha=arg.alpha, passes=arg.passes, unlabelled_alpha=arg.beta,
                mc_passes=2 if arg.runlocal else 20, eval_seed=0)

  if arg.model == "mlp":
    c.model = dict(name="mlp", num_classes=10, hidden_dims=(32, 32) if arg.runlocal else (256, 256),
                   dropout_rate=arg.dropout, activation="relu", dtype="float32", param_dtype="float32")
  elif arg.model == "cnn":
    c.model = dict(name="cnn1d", num_classes=10, channels=(8, 16) if arg.runlocal else (32, 64, 128),
                   strides=(1, 2) if arg.runlocal else (1, 2, 2), kernel_size=5, dropout_rate=arg.dropout,
                   dtype="float32", param_dtype="float32")
  else:
    raise ValueError(f"model must be 'mlp' or 'cnn', got {arg.model!r}.")

  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.0
  c.optimizer.clip_grad_norm = 0.0
  c.optimizer.warmup_steps = 1 if arg.runlocal else 100
  c.optimizer.schedule = "cosine"
  c.optimizer.min_lr_ratio = 0.0

  c.study = dict(arg=arg.to_dict())
  return c
