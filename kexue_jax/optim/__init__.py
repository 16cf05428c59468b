"""Optimizers as optax transforms: Lion (drop-in for optax.lion, plus options) and
Su Jianlin's Tiger, a weight-decay mask helper, a non-finite step guard, and a
config-driven factory, Su's Amos-derived lr/wd recipe, and optimizers used in
turn (alternate: Su's semi-supervised R-Drop)."""
from kexue_jax.optim.alternating import AlternateState
from kexue_jax.optim.alternating import alternate
from kexue_jax.optim.factory import OPTIMIZERS
from kexue_jax.optim.factory import SCHEDULES
from kexue_jax.optim.factory import default_optimizer_config
from kexue_jax.optim.factory import make_optimizer
from kexue_jax.optim.factory import make_schedule
from kexue_jax.optim.guard import ShrinkNonFiniteState
from kexue_jax.optim.guard import SkipNonFiniteState
from kexue_jax.optim.guard import applied_step
from kexue_jax.optim.guard import num_skipped_steps
from kexue_jax.optim.guard import skip_nonfinite
from kexue_jax.optim.lion import ScaleByLionState
from kexue_jax.optim.lion import lion
from kexue_jax.optim.lion import scale_by_lion
from kexue_jax.optim.masks import decay_mask
from kexue_jax.optim.masks import init_centres
from kexue_jax.optim.masks import param_kinds
from kexue_jax.optim.monitor import embedding_row_max_abs
from kexue_jax.optim.recipes import amos_lion_hparams
from kexue_jax.optim.tiger import TigerState
from kexue_jax.optim.tiger import tiger
