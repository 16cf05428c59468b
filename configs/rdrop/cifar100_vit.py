r"""R-Drop full config: CIFAR-100 (TFDS `cifar100`) with a small ViT (2D RoPE, nn/vit.py) trained from scratch.

  python -m kexue_jax.main --config configs/rdrop/cifar100_vit.py --workdir /tmp/kexue/rdrop_cifar100
  python -m kexue_jax.main --config configs/rdrop/cifar100_vit.py:alpha=0,passes=single --workdir ...
  python -m kexue_jax.main --config configs/rdrop/cifar100_vit.py:runlocal --workdir /tmp/kexue/rdrop_c100_l

The paper's image experiment fine-tunes a pre-trained ViT-B/16 on CIFAR-100 (93.29% with R-Drop, arXiv
2106.14448); the official ViT script's default alpha is 0.3 (its normalisation is not verified). We
train a small ViT from scratch without data augmentation (the pipeline has none), so expect far lower numbers;
this config exercises the same code path at a size that fits one accelerator. Needs `cifar100` prepared as
array_record in the TFDS data dir (kexue_jax downloads nothing).

`runlocal` does not touch CIFAR: it trains on an offline stand-in with CIFAR's batch format, MNIST-1D signals
turned into 8x8x3 images (`standin_images`, labels 0-9 of the 100), so CI needs no network.

Arguments: runlocal, alpha=0.3, dropout=0.1, passes=duplicate|split_keys|single, steps=20000, seed=0.
"""
from kexue_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, alpha=0.3, dropout=0.1, passes="duplicate", steps=20000, seed=0)
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else 128
  c.log_every_steps = 2 if arg.runlocal else 100
  c.eval_every_steps = 0 if arg.runlocal else 2000
  c.checkpoint_every_steps = 0 if arg.runlocal else 2000
  c.num_eval_batches = 2 if arg.runlocal else None
  c.progress_bar = not arg.runlocal

  c.data.train_split, c.data.eval_split = "train", "test"
  if arg.runlocal:
    c.data.name = "mnist1d"
    c.data.preprocess = "standin_images"
    c.data.image_shape = (8, 8, 3)
  else:
    c.data.name = "cifar100"
    c.data.preprocess = "classification"

  c.task = dict(name="classify", rdrop_alpha=arg.alpha, passes=arg.passes, unlabelled_alpha=None,
                mc_passes=2 if arg.runlocal else 20, eval_seed=0)
  c.model = dict(
      name="vit",
      num_classes=100,
      patch_size=4,
      num_layers=1 if arg.runlocal else 6,
      embed_dim=32 if arg.runlocal else 192,
      num_heads=2 if arg.runlocal else 3,
      head_dim=16 if arg.runlocal else 64,
      mlp_dim=64 if arg.runlocal else 768,
      dropout_rate=arg.dropout,
      pool="gap",
      dtype="auto",
      param_dtype="float32",
  )

  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 0.05
  c.optimizer.warmup_steps = 1 if arg.runlocal else 1000
  c.optimizer.schedule = "cosine"
  c.optimizer.min_lr_ratio = 0.0
  c.study = dict(arg=arg.to_dict())
  return c
