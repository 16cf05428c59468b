r"""Lion study runs: the built-in byte LM (configs/lm/tiny.py's model and data) with one optimizer setting.

Claims it serves (Su, https://kexue.fm/archives/9473, 9512, 9736; Chen et al. arXiv 2302.06675): Lion's best lr
is 3-10x below AdamW's and its best λ 3-10x above; Lion trails AdamW at small batch; Tiger ≈ Lion with one
state buffer; the embedding anomaly (rare bytes' rows drift to ±1/λ under sign updates, untied embeddings
only) and its three fixes; the Amos-derived λ = α0/(2σ). The grids are in `_sweeps.py`; monitor the anomaly
with `kexue_jax.optim.embedding_row_max_abs` on the checkpoints.

  python -m kexue_jax.main --config configs/lion/byte_lm.py:opt=lion,lr=3e-4,wd=0.3 --workdir /tmp/lion/l
  python -m kexue_jax.main --config configs/lion/byte_lm.py:opt=adamw,lr=1e-3,wd=0.03,batch=64 --workdir ...
  python -m kexue_jax.main --config configs/lion/byte_lm.py:opt=lion,untied,wd=1.0,fix=lazy --workdir ...

Arguments (comma-separated): ``runlocal``; ``steps``; ``batch``; ``seed``; ``opt`` (lion | adamw | tiger);
``lr`` / ``wd`` (0 / -1 = the optimizer's default below); ``untied`` (separate output head: every byte's
input row then gets a gradient only when the byte occurs, the anomaly's setting); ``fix`` (none | lazy |
emb_adamw: Su's fixes (a) and (c); (b) is the default tied model); ``accum`` (tiger's in-momentum
accumulation steps); ``amos_alpha0`` (> 0: lr, wd from `optim.amos_lion_hparams(α0, σ)`, σ = the embedding
width's 1/sqrt(d)).
"""
from kexue_jax import config_lib
from kexue_jax import optim

tiny = config_lib.load_sibling(__file__, "../lm/tiny.py")

# Per-optimizer defaults (peak lr, λ): AdamW at common LM values, Lion at the automl README's transfer
# (lr 1/3, λ x10 -> lr·λ about equal), Tiger at Su's (λ 0.01 is his; his lr 1e-3..2e-3 assumes the RMS lr).
DEFAULTS = {"adamw": (1e-3, 0.03), "lion": (3e-4, 0.3), "tiger": (3e-4, 0.3)}
FIXES = ("none", "lazy", "emb_adamw")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, steps=600, batch=16, seed=0, opt="lion", lr=0.0, wd=-1.0,
                             untied=False, fix="none", accum=1, amos_alpha0=0.0)
  if arg.opt not in DEFAULTS:
    raise ValueError(f"opt={arg.opt!r} is not one of {sorted(DEFAULTS)}.")
  if arg.fix not in FIXES:
    raise ValueError(f"fix={arg.fix!r} is not one of {list(FIXES)}.")
  c = tiny.get_config("runlocal" if arg.runlocal else f"steps={arg.steps}")
  c.seed = arg.seed
  c.batch_size = arg.batch
  c.model.tie_embedding = not arg.untied

  lr, wd = DEFAULTS[arg.opt]
  if arg.amos_alpha0 > 0:
    hp = optim.amos_lion_hparams(arg.amos_alpha0, c.model.embed_dim ** -0.5)
    lr, wd = hp["learning_rate"], hp["weight_decay"]
  o = c.optimizer
  o.name = arg.opt
  o.learning_rate = arg.lr or lr
  o.weight_decay = wd if arg.wd < 0 else arg.wd
  o.b2 = 0.999 if arg.opt == "adamw" else 0.99
  o.grad_accum_steps = arg.accum
  o.lazy_embeddings = arg.fix == "lazy"
  if arg.fix == "emb_adamw":
    d_lr, d_wd = DEFAULTS["adamw"]
    o.param_groups = [{"pattern": "embed", "name": "adamw", "learning_rate": d_lr, "weight_decay": d_wd,
                       "b2": 0.999}]
  return c
