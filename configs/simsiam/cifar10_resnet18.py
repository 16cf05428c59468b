r"""SimSiam full config: CIFAR-10 (TFDS `cifar10`) with the CIFAR ResNet-18, the paper's CIFAR recipe (TPU-sized).

  python -m kexue_jax.main --config configs/simsiam/cifar10_resnet18.py --workdir /tmp/kexue/simsiam_cifar10
  python -m kexue_jax.main --config configs/simsiam/cifar10_resnet18.py:stopgrad=False --workdir ...
  python -m kexue_jax.main --config configs/simsiam/cifar10_resnet18.py:runlocal --workdir /tmp/kexue/ss_c10_l

The paper's CIFAR-10 experiment (SimSiam, arXiv 2011.10566, App. D): CIFAR ResNet-18 (3x3 stem, no max-pool,
features 512-d, the last BN of every residual block initialised at 0 as torchvision's zero_init_residual in
the official code), 2-layer projector with 2048-d output, predictor bottleneck 512, SGD momentum 0.9,
weight decay 5e-4, batch 512, cosine decay, 800 epochs, views: random resized crop (scale 0.2-1), flip,
colour jitter (0.4, 0.4, 0.4, 0.1) w.p. 0.8, grayscale w.p. 0.2, no blur (kexue_jax/data/augment.py),
normalised with the CIFAR-10 channel mean / std. Linear evaluation reported in the paper: 91.8%.
Learning rate: lr x batch / 256 with base lr 0.03 (App. D; the issue text quotes 0.05, the ImageNet base
lr -- pass lr=0.05 for that). Weight decay is applied to kernels only (the repo's mask), the paper decays
every parameter. 800 epochs = 78,125 steps at batch 512: an accelerator job (prepare the dataset first:
`tfds build cifar10 --file_format=array_record`; kexue_jax downloads nothing). Evaluate the checkpoints with
`kexue_jax.evals.ssl` (kNN / linear probe on backbone features), as experiments/simsiam/study.py does for
MNIST-1D.

`runlocal` does not touch CIFAR: it trains a tiny ResNet on an offline stand-in with CIFAR's batch format,
MNIST-1D signals turned into 8x8x3 images (`standin_images`), so CI needs no network.

Arguments: runlocal, stopgrad=True, predictor=mlp|none|frozen|constlr, target=view|mean_view, K=8,
epochs=800, batch=512, lr=0.03, seed=0, ckpts=16, headbn=default (as configs/simsiam/mnist1d.py).
"""
from kexue_jax import config_lib

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
PREDICTOR_CHOICES = ("mlp", "none", "frozen", "constlr")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, stopgrad=True, predictor="mlp", target="view", K=8,
                             epochs=800, batch=512, lr=0.03, seed=0, ckpts=16, headbn="default")
  if arg.predictor not in PREDICTOR_CHOICES:
    raise ValueError(f"predictor must be one of {PREDICTOR_CHOICES}, got {arg.predictor!r}.")
  c = config_lib.base_config()
  c.seed = arg.seed
  c.batch_size = 16 if arg.runlocal else arg.batch
  c.num_train_steps = 4 if arg.runlocal else arg.epochs * 50_000 // arg.batch
  c.log_every_steps = 2 if arg.runlocal else 50
  c.eval_every_steps = 0 if arg.runlocal else 5000
  c.checkpoint_every_steps = 0 if arg.runlocal else max(1, c.num_train_steps // arg.ckpts)
  c.max_checkpoints_to_keep = 1 if arg.runlocal else arg.ckpts + 1
  c.num_eval_batches = 2 if arg.runlocal else None
  c.progress_bar = not arg.runlocal

  c.data.train_split, c.data.eval_split = "train", "test"
  if arg.runlocal:
    c.data.name = "mnist1d"
    c.data.preprocess = "standin_images"
    c.data.image_shape = (8, 8, 3)
  else:
    c.data.name = "cifar10"
    c.data.preprocess = "classification"  # uint8 images -> float32 in [0, 1]; views are made in the step

  c.model = dict(name="resnet", num_classes=None, stage_sizes=(1, 1) if arg.runlocal else (2, 2, 2, 2),
                 widths=(8, 16) if arg.runlocal else (64, 128, 256, 512), zero_init_last_bn=True,
                 dtype="auto", param_dtype="float32")
  d = 16 if arg.runlocal else 2048
  c.task = dict(name="simsiam", views="cifar", augment=dict(crop_scale=(0.2, 1.0), jitter_prob=0.8, gray_prob=0.2),
                normalize=(CIFAR10_MEAN, CIFAR10_STD), proj_hidden_dim=32 if arg.runlocal else 2048, proj_dim=d,
                proj_layers=2, pred_hidden_dim=d // 4, predictor="none" if arg.predictor == "none" else "mlp",
                stop_gradient=arg.stopgrad, target=arg.target, target_views=2 if arg.runlocal else arg.K,
                eval_seed=0, head_bn=arg.headbn)

  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = arg.lr * c.batch_size / 256
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.optimizer.clip_grad_norm = 0.0
  c.optimizer.warmup_steps = 0
  c.optimizer.schedule = "cosine"
  c.optimizer.min_lr_ratio = 0.0
  if arg.predictor == "frozen":
    c.optimizer.param_groups = [dict(pattern="^predictor/", frozen=True)]
  elif arg.predictor == "constlr":
    c.optimizer.param_groups = [dict(pattern="^predictor/", schedule="constant")]
  c.study = dict(arg=arg.to_dict())
  return c
