r"""Lion study, classifier arm: MNIST-1D (offline) with the R-Drop study's plain-dropout MLP, one optimizer setting.

Reuses configs/rdrop/mnist1d.py (model=mlp, alpha=0, passes=single: plain dropout 0.3, batch 40, 100 warm-up steps
then cosine to 0, no clipping; train_size and steps as there) and swaps its AdamW for ``opt`` at ``lr`` / ``wd``.

  python -m kexue_jax.main --config configs/lion/mnist1d.py:opt=lion,lr=3e-4,wd=0.3 --workdir /tmp/lion/m

Arguments: ``runlocal``; ``opt`` (lion | adamw | tiger); ``lr``; ``wd`` (decoupled λ); ``train_size``; ``steps``
(0: the R-Drop config's measured default); ``seed``.
"""
from kexue_jax import config_lib

rdrop = config_lib.load_sibling(__file__, "../rdrop/mnist1d.py")
OPTIMIZERS = ("lion", "adamw", "tiger")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, opt="lion", lr=3e-4, wd=0.3, train_size=1000, steps=0, seed=0)
  if arg.opt not in OPTIMIZERS:
    raise ValueError(f"opt={arg.opt!r} is not one of {list(OPTIMIZERS)}.")
  c = rdrop.get_config(",".join(["model=mlp,alpha=0,passes=single", f"train_size={arg.train_size}",
                                 f"steps={arg.steps}", f"seed={arg.seed}"] + ["runlocal"] * arg.runlocal))
  c.optimizer.name = arg.opt
  c.optimizer.learning_rate = arg.lr
  c.optimizer.weight_decay = arg.wd
  c.optimizer.b2 = 0.999 if arg.opt == "adamw" else 0.99
  c.study = dict(arg=arg.to_dict())
  return c
