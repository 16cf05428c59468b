"""Optimizer + learning-rate schedule from an `ml_collections.ConfigDict`.

    tx, lr_fn = make_optimizer(config.optim, num_train_steps)

The chain, outermost first:
      skip_nonfinite         if skip_nonfinite (whole step skipped, counted)
        clip_by_global_norm  if clip_grad_norm
        <optimizer>          lion | adamw | tiger | sgd, decay masked by decay_mask

Parameter groups (optional key `param_groups`, not in the defaults): a list of
dicts `{"pattern": regex, <overrides>}` or `{"pattern": regex, "frozen": True}`.
A parameter whose "/"-joined path (`masks.path_str`, e.g. "predictor/fc0/kernel")
matches a group's pattern (first match wins) gets that group's optimizer: the
same optimizer rebuilt with the overrides (any of GROUP_KEYS, e.g. its own
`learning_rate`, `schedule="constant"`, or another optimizer `name`), or
`optax.set_to_zero()` when frozen (no update and no weight decay: the parameter
stays at its initial value). The rest get the main config
(`optax.multi_transform`). Clipping and skipping wrap all groups together;
`lr_fn` is the main group's schedule. Su's third fix for the Lion/Tiger
embedding anomaly (https://kexue.fm/archives/9736), AdamW for the embeddings:
    param_groups=[{"pattern": "embed", "name": "adamw", "learning_rate": 1e-3,
                   "weight_decay": 0.01, "b2": 0.999}]
His first fix is `lazy_embeddings=True` (lion/tiger); the second, tied input and
output embeddings, is the model's `tie_embedding` (on by default).

Alternating optimizers (optional key `alternate`, not in the defaults): a list
of n >= 2 dicts of GROUP_KEYS overrides, e.g. `[{}, {"learning_rate": 5e-4}]`:
n optimizers, each the main config with its overrides and its own state, used
in turn, one per update (`alternating.alternate`): the optimizers of a task whose
train step runs n objectives in turn (the task's `phases`; Su's semi-supervised
R-Drop, https://kexue.fm/archives/8496: a labelled CE step with one Adam, then an
unlabelled KL step with another at half the lr). Clipping wraps them all (it
acts on each update's gradient alone); skip_nonfinite is refused (a skipped
update would shift the turn); `lr_fn` is the first optimizer's schedule.

Gradient accumulation: ONE mechanism, the train step's `config.microbatches`
(the batch is split, gradients averaged, one optimizer update per train step,
so the schedule and the logged lr count updates). The factory has no
MultiSteps; `grad_accum_steps` > 1 is accepted only for tiger, as Su's
accumulation inside the momentum (no extra buffer): each train step is then one
micro-batch, num_train_steps counts micro-steps, the schedule is built over
num_train_steps // k updates (warmup_steps in updates), tiger evaluates it at
t // k, and the returned `lr_fn(t) = schedule(t // k)` is the lr of the update
that micro-step t belongs to (applied on its window's last micro-step).

`lr_fn(step)` is therefore always the learning rate the optimizer applies at
train step `step` (0-based, = the optimizer's count). Weight decay is applied
to matrices only (`masks.decay_mask`), embeddings per `decay_embeddings`.
"""
import functools
import math
import re

import jax

import jax.numpy as jnp
import ml_collections
import optax

from kexue_jax.optim import alternating
from kexue_jax.optim import guard
from kexue_jax.optim import masks
from kexue_jax.optim.lion import canonical_mu_dtype
from kexue_jax.optim.lion import check_beta
from kexue_jax.optim.lion import check_choice
from kexue_jax.optim.lion import check_nonneg
from kexue_jax.optim.lion import lion
from kexue_jax.optim.tiger import tiger

OPTIMIZERS = ("lion", "adamw", "tiger", "sgd")
SCHEDULES = ("cosine", "constant", "linear", "rsqrt")
OPTIONAL_KEYS = ("param_groups", "alternate")
# Keys a parameter group may override (the rest act on the whole chain or pick the optimizer).
GROUP_KEYS = ("name", "learning_rate", "schedule", "warmup_steps", "min_lr_ratio", "weight_decay", "momentum",
              "b1", "b2", "beta", "eps", "rms_lr_scaling", "decay_embeddings", "lazy_embeddings", "mu_dtype")
NONFINITE_RULES = ("skip_step", "shrink")


def default_optimizer_config() -> ml_collections.ConfigDict:
  """All keys `make_optimizer` reads, with Lion defaults.

  Lion: lr 3e-4 and λ 0.1 (lr·λ = 3e-5 per step, the strength of AdamW at
  lr 1e-3 / λ 0.03; the automl README's rule: Lion lr 3-10x smaller, λ 3-10x
  larger than AdamW's). b1/b2 are shared by lion and adamw (give adamw
  b2=0.999 yourself); tiger reads `beta` (Su's 0.965) and `rms_lr_scaling`
  instead of b1/b2 (Su's own λ is 0.01 and his lr 1e-3..2e-3 with the RMS
  scaling: set them when switching to tiger). Warmup 100 steps, cosine to
  0.1·peak and global-norm clipping at 1.0 are the usual LM settings; the Lion
  authors keep the schedule and clipping of the AdamW baseline. Embeddings are decayed by default: under sign updates the decay is what
  bounds rarely-updated rows (|θ| <= 1/λ, https://kexue.fm/archives/9736).
  """
  c = ml_collections.ConfigDict()
  c.name = "lion"                # lion | adamw | tiger | sgd
  c.learning_rate = 3e-4         # peak lr
  c.b1 = 0.9                     # lion, adamw
  c.b2 = 0.99                    # lion, adamw
  c.beta = 0.965                 # tiger's β
  c.rms_lr_scaling = False       # tiger: Su's parameter-RMS lr
  c.eps = 1e-8                   # adamw
  c.momentum = 0.9               # sgd (0 = plain SGD)
  c.weight_decay = 0.1           # λ (lion/adamw/tiger decoupled; sgd: L2 added to grads)
  c.schedule = "cosine"          # cosine | constant | linear | rsqrt (after warmup)
  c.warmup_steps = 100           # linear 0 -> peak (must be <= num_train_steps)
  c.min_lr_ratio = 0.1           # final (cosine/linear) or floor (rsqrt) lr / peak
  c.clip_grad_norm = 1.0         # 0 or None = off
  c.decay_embeddings = True
  c.skip_nonfinite = False
  c.nonfinite_rule = "skip_step"  # with skip_nonfinite: skip_step (any optimizer) | shrink (tiger: Su's rule)
  c.lazy_embeddings = False      # lion/tiger: zero-gradient embedding rows not updated (kexue.fm/archives/9736)
  c.grad_accum_steps = 1         # tiger only (Su's in-momentum accumulation); others: config.microbatches
  c.mu_dtype = ml_collections.config_dict.placeholder(str)  # None (param dtype) or "bfloat16"
  return c


def make_schedule(peak: float, num_train_steps: int, schedule: str = "cosine",
                  warmup_steps: int = 0, min_lr_ratio: float = 0.0):
  """Linear warmup 0 -> peak over `warmup_steps`, then (step t >= w):
      cosine    end + (peak - end)·(1 + cos(π (t - w)/(T - w)))/2, end = r·peak
      linear    peak + (end - peak)·(t - w)/(T - w)
      constant  peak
      rsqrt     max(peak·sqrt(max(w, 1) / max(t, w, 1)), r·peak)
  with T = num_train_steps, r = min_lr_ratio; cosine/linear stay at end past T.
  """
  check_choice("schedule", schedule, SCHEDULES)
  if warmup_steps < 0 or warmup_steps > num_train_steps:
    raise ValueError(f"warmup_steps={warmup_steps} must be in [0, num_train_steps"
                     f"={num_train_steps}]; set e.g. config.optimizer.warmup_steps="
                     f"{num_train_steps // 10} (or 0 for a smoke run).")
  if not 0.0 <= min_lr_ratio <= 1.0:
    raise ValueError(f"min_lr_ratio={min_lr_ratio} must be in [0, 1].")
  end = peak * min_lr_ratio
  decay_steps = max(num_train_steps - warmup_steps, 1)
  if schedule == "cosine":
    main = optax.cosine_decay_schedule(peak, decay_steps, alpha=min_lr_ratio)
  elif schedule == "linear":
    main = optax.linear_schedule(peak, end, decay_steps)
  elif schedule == "constant":
    main = optax.constant_schedule(peak)
  else:
    tau = max(warmup_steps, 1)

    def main(s):  # s counts from the end of warmup
      t = jnp.maximum(s + warmup_steps, tau).astype(jnp.float32)
      return jnp.maximum(peak * jnp.sqrt(tau / t), end)
  if warmup_steps == 0:
    return main
  warm = optax.linear_schedule(0.0, peak, warmup_steps)
  return optax.join_schedules([warm, main], [warmup_steps])


def make_optimizer(opt_cfg: ml_collections.ConfigDict, num_train_steps: int):
  """Returns (tx, lr_schedule_fn) from a config like `default_optimizer_config()`.

  Missing keys take the defaults; unknown keys, names and schedules raise
  ValueError listing the valid ones. `param_groups`, `alternate`: see the module docstring.
  """
  defaults = default_optimizer_config()
  unknown = sorted(set(opt_cfg.keys()) - set(defaults.keys()) - set(OPTIONAL_KEYS))
  if unknown:
    raise ValueError(f"unknown optimizer config keys {unknown}; valid keys: "
                     f"{sorted(defaults.keys()) + list(OPTIONAL_KEYS)}.")
  groups = opt_cfg.get("param_groups", None) or []
  c = defaults
  c.update({k: v for k, v in opt_cfg.items() if k not in OPTIONAL_KEYS})
  check_choice("optimizer name", c.name, OPTIMIZERS)
  check_choice("schedule", c.schedule, SCHEDULES)
  if not isinstance(num_train_steps, int) or num_train_steps < 1:
    raise ValueError(f"num_train_steps={num_train_steps!r} must be an int >= 1.")
  k = 1 if c.grad_accum_steps is None else int(c.grad_accum_steps)
  if k < 1:
    raise ValueError(f"grad_accum_steps={c.grad_accum_steps} must be >= 1.")
  names = {c.name} | {g.get("name", c.name) for g in groups if not g.get("frozen", False)}
  if k > 1 and names != {"tiger"}:
    raise ValueError(
        f"optimizer.grad_accum_steps={k} is Tiger's in-momentum accumulation only (optimizers here: "
        f"{sorted(names)}); for gradient accumulation set config.microbatches={k} (the train step splits the "
        "batch) and leave grad_accum_steps=1.")
  check_choice("nonfinite_rule", c.nonfinite_rule, NONFINITE_RULES)
  shrink = bool(c.skip_nonfinite) and c.nonfinite_rule == "shrink"
  if shrink and (names != {"tiger"} or c.clip_grad_norm):
    raise ValueError(
        "nonfinite_rule='shrink' is Su's per-variable Tiger rule: it needs name='tiger' (every group) and "
        "clip_grad_norm=0 (a global-norm clip turns one NaN gradient into NaN everywhere).")
  num_updates = max(num_train_steps // k, 1)
  turns = list(opt_cfg.get("alternate", None) or [])
  if turns and (len(turns) < 2 or c.skip_nonfinite):
    raise ValueError(f"optimizer.alternate needs >= 2 override dicts (one per objective) and skip_nonfinite=False "
                     f"(a skipped update would shift the turn); got {len(turns)} and {c.skip_nonfinite}.")
  # One optimizer (the config itself), or one per turn (the config with that turn's overrides), each grouped.
  configs = [_with_overrides(c, t.to_dict() if isinstance(t, ml_collections.ConfigDict) else dict(t),
                             f"optimizer.alternate[{i}]") for i, t in enumerate(turns)] or [c]
  txs, schedules = [], []
  for ci in configs:
    tx_i, schedule_i = _core_optimizer(ci, num_updates, k, shrink)
    txs.append(_grouped(tx_i, ci, groups, num_updates, k, shrink) if groups else tx_i)
    schedules.append(schedule_i)
  tx, schedule = (alternating.alternate(*txs) if turns else txs[0]), schedules[0]

  if c.clip_grad_norm:
    if not c.clip_grad_norm > 0 or math.isnan(c.clip_grad_norm):
      raise ValueError(f"clip_grad_norm={c.clip_grad_norm} must be > 0 (or 0/None"
                       " for no clipping).")
    tx = optax.chain(optax.clip_by_global_norm(c.clip_grad_norm), tx)
  if c.skip_nonfinite and not shrink:
    tx = guard.skip_nonfinite(tx)
  lr_fn = schedule if k == 1 else (lambda step: schedule(step // k))
  return tx, lr_fn


def _core_optimizer(c: ml_collections.ConfigDict, num_train_steps: int, k: int, shrink: bool = False):
  """The optimizer itself (weight decay included) and its schedule, from a resolved config."""
  check_choice("schedule", c.schedule, SCHEDULES)
  check_nonneg("learning_rate", c.learning_rate)
  check_nonneg("weight_decay", c.weight_decay)
  if c.name in ("lion", "adamw"):  # the library accepts what optax does; a config must be sane
    check_beta("b1", c.b1)
    check_beta("b2", c.b2)
  lr_fn = make_schedule(c.learning_rate, num_train_steps, c.schedule,
                        c.warmup_steps, c.min_lr_ratio)
  mask = functools.partial(masks.decay_mask,
                           decay_embeddings=bool(c.decay_embeddings))
  mu_dtype = canonical_mu_dtype(c.mu_dtype)
  if c.lazy_embeddings and c.name not in ("lion", "tiger"):
    raise ValueError(f"lazy_embeddings=True is an option of lion and tiger, not of {c.name!r}.")

  if c.name == "lion":
    tx = lion(lr_fn, b1=c.b1, b2=c.b2, mu_dtype=mu_dtype, weight_decay=c.weight_decay, mask=mask,
              lazy_embeddings=bool(c.lazy_embeddings))
  elif c.name == "adamw":
    tx = optax.adamw(lr_fn, b1=c.b1, b2=c.b2, eps=c.eps, mu_dtype=mu_dtype,
                     weight_decay=c.weight_decay, mask=mask)
  elif c.name == "tiger":
    tx = tiger(lr_fn, beta=c.beta, weight_decay=c.weight_decay, mask=mask, mu_dtype=mu_dtype, accum_steps=k,
               rms_lr_scaling=bool(c.rms_lr_scaling), lazy_embeddings=bool(c.lazy_embeddings),
               shrink_nonfinite=shrink)
  else:  # sgd
    momentum = c.momentum or None
    tx = optax.chain(optax.add_decayed_weights(c.weight_decay, mask),
                     optax.sgd(lr_fn, momentum=momentum,
                               accumulator_dtype=mu_dtype))
  return tx, lr_fn


def _with_overrides(c: ml_collections.ConfigDict, g: dict, where: str, also=()) -> ml_collections.ConfigDict:
  """A copy of the resolved config `c` with the overrides `g` (keys among GROUP_KEYS)."""
  bad = sorted(set(g) - set(GROUP_KEYS))
  if bad:
    raise ValueError(f"{where} has keys {bad} it cannot set; allowed: {list(also) + list(GROUP_KEYS)}.")
  gc = ml_collections.ConfigDict(c.to_dict())
  gc.update(g)
  check_choice(f"{where}.name", gc.name, OPTIMIZERS)
  return gc


def _grouped(main_tx, c: ml_collections.ConfigDict, groups, num_train_steps: int, k: int, shrink: bool):
  """optax.multi_transform over the parameter groups (module docstring)."""
  transforms, patterns = {"main": main_tx}, []
  for i, group in enumerate(groups):
    g = dict(group.to_dict() if isinstance(group, ml_collections.ConfigDict) else group)
    if "pattern" not in g:
      raise ValueError(f"optimizer.param_groups[{i}] = {g} needs a 'pattern' (a regex on parameter paths "
                       "such as 'predictor/fc0/kernel').")
    try:
      rx = re.compile(g.pop("pattern"))
    except re.error as e:
      raise ValueError(f"optimizer.param_groups[{i}]: invalid pattern: {e}") from e
    frozen = bool(g.pop("frozen", False))
    if frozen and g:
      raise ValueError(f"optimizer.param_groups[{i}] is frozen; it takes no other keys, got {sorted(g)}.")
    name = f"group{i}"
    if frozen:
      transforms[name] = optax.set_to_zero()
    else:
      gc = _with_overrides(c, g, f"optimizer.param_groups[{i}]", ["pattern", "frozen"])
      transforms[name] = _core_optimizer(gc, num_train_steps, k, shrink)[0]
    patterns.append((rx, name))

  def labels(params):
    def label(path, _):
      p = masks.path_str(path)
      return next((name for rx, name in patterns if rx.search(p)), "main")
    return jax.tree_util.tree_map_with_path(label, params)

  return optax.multi_transform(transforms, labels)
