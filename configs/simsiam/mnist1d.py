r"""SimSiam on MNIST-1D (offline, CPU-sized): a 1D CNN backbone, the paper's heads and SGD recipe.

  python -m kexue_jax.main --config configs/simsiam/mnist1d.py --workdir /tmp/kexue/simsiam_mnist1d
  python -m kexue_jax.main --config configs/simsiam/mnist1d.py:stopgrad=False --workdir ...   # collapses
  python -m kexue_jax.main --config configs/simsiam/mnist1d.py:predictor=frozen --workdir ...
  python -m kexue_jax.main --config configs/simsiam/mnist1d.py:runlocal --workdir /tmp/kexue/simsiam_local

Arguments (comma-separated):
  runlocal            a few steps on a tiny model (tests).
  stopgrad=True       False: no stop-gradient on the target branch (tasks/simsiam.py).
  predictor=mlp       mlp: the bottleneck predictor, its lr decayed with the rest (the paper's Table 1
                      baseline); none: no predictor (h = identity); frozen: fixed at its random init
                      (optax.set_to_zero on `predictor/`); constlr: its own constant lr (= the peak lr;
                      the official `--fix-pred-lr`).
  target=view         mean_view: Su's open question, the target is z(x_bar), x_bar = mean of K views.
  K=8                 views averaged for target=mean_view.
  steps=1000          training steps (64 epochs of 4000 examples at batch 256). seed=0. batch=256.
                      Where the arms separate at lr=0.05 (seed 0, 2000-step runs, test-set evaluation at every
                      250 steps; z/cov_rank = covariance entropy rank of the projector output z):
                        step                       250    500   1000   1500   2000
                        kNN %   SimSiam           77.1   80.6   83.2   83.1   83.2
                                no predictor      78.5   79.3   79.9   80.0   79.5
                                no stop-gradient  70.0   71.8   74.5   73.8   74.1
                        probe % SimSiam           78.5   81.3   85.0   85.3   85.6
                                no predictor      83.0   84.2   85.2   84.9   84.4
                                no stop-gradient  73.0   75.7   77.4   76.2   76.2
                        cov_rank(z) at 1000 / 2000: SimSiam 5.52 / 5.78, no predictor 1.91 / 1.86,
                        no stop-gradient 1.22 / 1.16 (untrained 22.98).
                      kNN and the z ranks have separated by step 1000 and change little after it; the backbone
                      probe of the no-predictor arm never falls below SimSiam's in 2000 steps (its z collapses,
                      its backbone does not). 1000 steps is the default; steps=2000 by argument.
  lr=0.05             base lr: peak lr = lr * batch / 256 (the paper's scaling rule), the paper's ImageNet base
                      lr 0.05 (0.03 for CIFAR). lr=0.2 is the first report's value (4x the paper's; it learns faster
                      in 500 steps: probe 84.8% vs ~80% after 1000 steps at 0.05, seed 0; untrained 70.6%) and
                      stays available by argument.
  objective=simsiam   simclr: the SimCLR reference arm (NT-Xent on z1, z2, temperature T=0.5; needs
                      predictor=none, the default predictor 'mlp' is then switched off).
  headbn=default      BatchNorm in the heads, the paper's Table 3 (tasks/simsiam.HEAD_BN): none | hidden (hidden
                      layers only) | default (projector hidden + output, predictor hidden) | all (also on the
                      predictor output).
  ckpts=4             checkpoints kept along training (every steps/ckpts steps) for the kNN / probe curves.

Model: CNN1D backbone (channels 32-32-64, strides 1-2-2, kernel 5, BN, global average pool: 64-d
features h); projector 64 -> 128 -> 64 (2 layers as the paper's CIFAR variant; BN on every layer, output
BN without affine), d = 64; predictor 64 -> 16 -> 64 (bottleneck d/4). Views: circular shift <= 10, slope
N(0, 0.04^2) per position, offset N(0, 0.3^2), iid noise N(0, 0.05^2) (kexue_jax/data/augment.py).

Optimizer: SGD momentum 0.9, base lr 0.05 (see above), weight decay 5e-4 (the paper's CIFAR value), cosine to 0,
no warmup. Weight
decay: the repo's mask decays matrices (conv / dense kernels) only, not BN scales/offsets or biases; the
paper decays every parameter (a small difference at this decay).
"""
from kexue_jax import config_lib

PREDICTOR_CHOICES = ("mlp", "none", "frozen", "constlr")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, stopgrad=True, predictor="mlp", target="view", K=8,
                             steps=1000, seed=0, lr=0.05, batch=256, ckpts=4, headbn="default",
                             objective="simsiam", T=0.5)
  if arg.predictor not in PREDICTOR_CHOICES:
    raise ValueError(f"predictor must be one of {PREDICTOR_CHOICES}, got {arg.predictor!r}.")
  if arg.objective == "simclr" and (arg.predictor not in ("mlp", "none") or arg.target != "view"):
    raise ValueError("objective=simclr has no predictor and no averaged target: drop predictor= and target=.")
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else arg.batch
  c.log_every_steps = 2 if arg.runlocal else 10
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 0 if arg.runlocal else max(1, c.num_train_steps // max(arg.ckpts, 1))
  c.max_checkpoints_to_keep = 1 if arg.runlocal else arg.ckpts + 1
  c.num_eval_batches = 2 if arg.runlocal else None
  c.progress_bar = not arg.runlocal

  c.data.name = "mnist1d"
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.preprocess = "classification_inmemory"

  c.model = dict(name="cnn1d", num_classes=None, channels=(8, 16) if arg.runlocal else (32, 32, 64),
                 strides=(1, 2) if arg.runlocal else (1, 2, 2), kernel_size=5, dtype="float32",
                 param_dtype="float32")
  d = 16 if arg.runlocal else 64
  c.task = dict(name="simsiam", views="mnist1d",
                augment=dict(maxshift=10, slope_std=0.04, offset_std=0.3, noise_std=0.05),
                normalize=None, proj_hidden_dim=32 if arg.runlocal else 128, proj_dim=d, proj_layers=2,
                pred_hidden_dim=d // 4,
                predictor="none" if arg.predictor == "none" or arg.objective == "simclr" else "mlp",
                stop_gradient=arg.stopgrad, target=arg.target, target_views=2 if arg.runlocal else arg.K,
                eval_seed=0, head_bn=arg.headbn,
                objective=arg.objective, temperature=arg.T)

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
