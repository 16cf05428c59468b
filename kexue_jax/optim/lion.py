"""Lion (EvoLved Sign Momentum) as optax transforms, drop-in for `optax.lion`.

Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms",
https://arxiv.org/abs/2302.06675 (Program 1). Per element, with m_0 = 0:

    c_t = b1 * m_{t-1} + (1 - b1) * g_t              # blend with the OLD momentum
    θ_t = θ_{t-1} - η_t * (sign(c_t) + λ_t * θ_{t-1})  # decoupled decay on θ_{t-1}, × η_t
    m_t = b2 * m_{t-1} + (1 - b2) * g_t              # momentum updated AFTER the step

sign(0) = 0, no ε, no bias correction (sign() removes any scale).

`lion(...)` has optax.lion's signature, defaults and *state tree* (the state of
`chain(scale_by_lion, add_decayed_weights(wd, mask), scale_by_learning_rate(lr))`,
built with optax's own state classes), so an optax.lion checkpoint restores
into it unchanged. The three steps run as one elementwise pass per leaf; η_t
and λ_t are both read at the ScaleByLionState count (optax keeps three equal
counters; all three are advanced here too).

Differences from optax.lion, all deliberate:
  * speed: with float32 momentum, c_t is computed from the new momentum,
    c_t = (b1/b2)·m_t + (1 - b1/b2)·g_t (same value for b2 > 0, up to f32
    rounding). This lets XLA update the donated momentum in place without first
    copying it; on CPU the step is ~4x faster than optax.lion's (see `blend`
    and benchmarks/RESULTS_optimizers.md). Not with bf16 momentum: there the
    rounded m_t would change c_t, and no exact copy-free form was found.
  * math in float32 (or wider if the inputs are wider); the momentum keeps the
    dtype it was initialised with (`mu_dtype`, else the param dtype) forever, so
    bf16 momentum is a stable `lax.scan` carry; updates come out in the param
    dtype (the grad dtype when no params are passed).
  * construction-time checks: what optax.lion accepts is accepted (b1 = 1.0,
    learning_rate=None, a negative lr, ...); settings outside the paper's
    ranges (betas outside [0, 1), lr < 0, λ < 0) give a `UserWarning`, unknown
    options raise.

optax idioms. `optax.inject_hyperparams(lion)(learning_rate=..., ...)` works
under `jax.jit`: the numeric arguments optax.lion has (learning_rate, b1, b2,
weight_decay) become the injected hyper-parameters, our extras only when the
caller sets them (their defaults are None), so an `inject_hyperparams(
optax.lion)` state restores into ours and editing `state.hyperparams` mid-run
changes the trajectory as it does for optax. (Injected b1/b2 are traced, so
the `blend` fold is off there: optax's arithmetic, optax's speed. For our
speed, keep the betas static: `inject_hyperparams(lion, static_args=("b1",
"b2"))` injects only learning_rate and weight_decay, as the same call on
optax.lion does.)
With `wd_coupling="schedule"` under inject_hyperparams pass
`peak_learning_rate`: the injected lr is a number, so the peak cannot be read
off a schedule. `learning_rate=None` leaves the update unscaled and unnegated
(sign(c) + λθ), as optax's does, for a `chain(..., scale(-lr))`.

Options beyond optax (all off by default):
  * `wd_coupling`: how the decay is scaled per step.
      "lr"       θ -= η_t λ_t θ               paper, optax, PyTorch (default)
      "schedule" θ -= (η_t / η_peak) λ_t θ    Loshchilov & Hutter 2019 (AdamW paper),
                  lucidrains' `decoupled_weight_decay`. Use it to tune λ
                  independently of the peak lr. η_peak = `peak_learning_rate`,
                  or the lr itself when it is a constant.
      "none"     θ -= λ_t θ                   raw per-step shrink, no lr factor.
  * `mask` / `weight_decay_mask` (alias, cf. optax PR #1635): which leaves are
    decayed; see `kexue_jax.optim.masks.decay_mask`.
  * `cautious=True`: Cautious Lion (Liang et al. 2024, arXiv 2411.16085): with
    u = sign(c_t), φ = 1[u·g_t > 0], the step is u·φ / max(mean(φ), eps) per
    tensor (eps = `cautious_eps`, 1e-3 as in timm). The decay is unchanged.
    Claimed ~1.1-1.5x faster pre-training at the same hyper-parameters.
  * `skip_nonfinite=True`: a step whose gradients hold any NaN/Inf is skipped
    (zero update, state kept); count in `num_skipped_steps(state)`. For
    mixed-precision runs or spiky losses. See `guard.py`.
  * `lazy_embeddings=True`: Su's first fix for the embedding anomaly
    (https://kexue.fm/archives/9736): in leaves whose path matches
    `embedding_pattern`, a row (axis 0: one token) whose gradient is exactly
    zero this step is left alone: no sign step, no decay, momentum kept (the
    rule of TF's LazyAdam). Without it a token seen once keeps stepping on its
    stale momentum, sign(m) fixed, until the decay balances it at |θ| = 1/λ.
  * `mode`/`smooth_beta`: optax's sign variants ("hard" is the paper). Note
    "smooth" (tanh) and "refined" are not scale invariant: at typical gradient
    scales (1e-3..1e-6) they act like SGD with momentum, not like Lion.
"""
from typing import Any, Callable, Optional, Union
import warnings

import jax
import jax.numpy as jnp
import optax

from kexue_jax.optim import guard
from kexue_jax.optim import masks

ScaleByLionState = optax.ScaleByLionState  # same class: checkpoints interchange

MODES = ("hard", "smooth", "refined")
WD_COUPLINGS = ("lr", "schedule", "none")

_NO_PARAMS_MSG = (
    "lion: weight decay needs the params: call tx.update(grads, state, params) "
    "(or build with weight_decay=0.0).")


# ----------------------------------------------------------------- validation
def _as_float(x) -> Optional[float]:
  """Python float of a concrete scalar, None for tracers/arrays/schedules."""
  if callable(x):
    return None
  try:
    return float(x)
  except Exception:  # pylint: disable=broad-except  (tracer or non-scalar)
    return None


def check_beta(name: str, value, strict: bool = True) -> None:
  """A concrete beta outside [0, 1) raises (strict) or warns; tracers pass."""
  v = _as_float(value)
  if v is not None and not 0.0 <= v < 1.0:
    msg = f"{name}={value!r} is outside [0, 1); pass e.g. {name}=0.9."
    if strict:
      raise ValueError(msg)
    warnings.warn(msg + " (Accepted as optax.lion does.)", stacklevel=3)


def check_nonneg(name: str, value, strict: bool = True) -> None:
  """A concrete negative (or NaN) value raises (strict) or warns; tracers and
  schedules pass."""
  v = _as_float(value)
  if v is not None and not v >= 0.0:  # also catches NaN
    msg = f"{name}={value!r} must be >= 0 (a constant or a schedule)."
    if strict:
      raise ValueError(msg)
    warnings.warn(msg + " (Accepted as optax.lion does.)", stacklevel=3)


def check_positive_or_none(name: str, value) -> None:
  v = _as_float(value) if value is not None else None
  if v is not None and not v > 0.0:
    raise ValueError(f"{name}={value!r} must be > 0 (or None for the default).")


def check_choice(name: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not one of {list(choices)}.")


def canonical_mu_dtype(mu_dtype):
  if mu_dtype is None:
    return None
  try:
    dt = jnp.dtype(mu_dtype)
  except TypeError as e:
    raise ValueError(f"mu_dtype={mu_dtype!r} is not a dtype; use None, "
                     "'bfloat16' or 'float32'.") from e
  if not jnp.issubdtype(dt, jnp.floating):
    raise ValueError(f"mu_dtype={mu_dtype!r} must be a floating dtype.")
  return jax.dtypes.canonicalize_dtype(dt)


def resolve_mask(mask, weight_decay_mask):
  if weight_decay_mask is not None:
    if mask is not None:
      raise ValueError("pass `mask` or its alias `weight_decay_mask`, not both.")
    return weight_decay_mask
  return mask


def full_mask(mask, tree, is_leaf=None) -> Any:
  """Static bool for every leaf of `tree` from a prefix-tree or callable mask."""
  mask_tree = mask(tree) if callable(mask) else mask
  return jax.tree.map(bool, full_values(mask_tree, tree, is_leaf=is_leaf),
                      is_leaf=is_leaf)


def full_values(values, tree, is_leaf=None) -> Any:
  """Per-leaf value of `tree` from a prefix tree `values` (e.g. one float per
  sub-tree), broadcast to every leaf below it."""
  return jax.tree.map(lambda v, sub: jax.tree.map(lambda _: v, sub,
                                                  is_leaf=is_leaf),
                      values, tree, is_leaf=is_leaf)


# ------------------------------------------------------------ per-leaf maths
def compute_dtype(*dtypes):
  dt = jnp.float32
  for d in dtypes:
    dt = jnp.promote_types(dt, d)
  return dt


def fold_blend(b1, b2, m_dtype, compute_dt) -> bool:
  """Whether to compute c_t from the NEW momentum (see `blend`): only for
  concrete betas with b2 > 0 and b1 < 1 (at b1 = 1, c_t = m_{t-1} exactly, and
  the folded form would leave rounding noise where it is 0), and a momentum
  stored in the compute dtype."""
  b1 = _as_float(b1) if not isinstance(b1, jax.Array) else None
  b2 = _as_float(b2) if not isinstance(b2, jax.Array) else None
  return (b1 is not None and b2 is not None and b2 > 0 and b1 < 1
          and jnp.dtype(m_dtype) == compute_dt)


def blend(g, m, m_new, b1, b2):
  """c_t = b1·m_{t-1} + (1-b1)·g_t.

  With `m_new` (= m_t = b2·m_{t-1} + (1-b2)·g_t) given, the same quantity is
  computed as c_t = (b1/b2)·m_t + (1 - b1/b2)·g_t (exact algebra for b2 > 0,
  differing only in f32 rounding). Why: with the state donated, m_t is written
  over m_{t-1}'s buffer; if the sign step still reads m_{t-1}, XLA must first
  copy the whole momentum, and on CPU that costs ~3x the update itself. Reading
  m_t instead orders the two loops (momentum, then params) with no copy.
  Used only when the momentum is stored in the compute dtype: a bf16 m_t would
  lose precision in c_t.
  """
  if m_new is not None:
    r = b1 / b2
    return r * m_new + (1.0 - r) * g
  return (1.0 - b1) * g + b1 * m  # optax's expression order


def lion_direction(c, g, *, mode="hard", smooth_beta=None, cautious=False,
                   cautious_eps=None):
  """sign(c) (or optax's smooth/refined variant), optionally cautious-masked
  against the gradient g. None means the default (smooth_beta 1, eps 1e-3)."""
  if mode == "hard":
    u = jnp.sign(c)
  elif mode == "smooth":
    u = jnp.tanh((1.0 if smooth_beta is None else smooth_beta) * c)
  else:  # "refined"
    u = jnp.where(jnp.abs(c) < 1.0, c, jnp.sign(c))
  if cautious:
    eps = 1e-3 if cautious_eps is None else cautious_eps
    phi = (u * g > 0).astype(u.dtype)
    u = u * phi / jnp.maximum(jnp.mean(phi), eps)
  return u


def ema(g, m, b):
  return (1 - b) * g + b * m  # optax.tree.update_moment's expression


def lion_leaf(g, m, b1, b2, cdt, **direction_kw):
  """(direction u_t, new momentum m_t), both in the compute dtype `cdt`."""
  g32, m32 = g.astype(cdt), m.astype(cdt)
  m_new = ema(g32, m32, b2)
  c = blend(g32, m32, m_new if fold_blend(b1, b2, m.dtype, cdt) else None, b1, b2)
  return lion_direction(c, g32, **direction_kw), m_new


def active_rows(g):
  """[V, 1, ...] bool: rows (axis 0) of `g` with any nonzero entry."""
  return jnp.any(g != 0, axis=tuple(range(1, g.ndim)), keepdims=True)


def lazy_leaves(lazy: bool, pattern, paths, g_leaves):
  """Per leaf: whether zero-gradient rows are frozen (embedding tables only)."""
  if not lazy:
    return [False] * len(g_leaves)
  return [g is not None and g.ndim >= 2 and masks.is_embedding(path, pattern)
          for path, g in zip(paths, g_leaves)]


# --------------------------------------------------------------- transforms
def scale_by_lion(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
    mu_dtype: Optional[jax.typing.DTypeLike] = None,
    *,
    mode: str = "hard",
    smooth_beta: jax.typing.ArrayLike = 1.0,
    cautious: bool = False,
    cautious_eps: Optional[float] = None,
) -> optax.GradientTransformation:
  """u_t = sign(b1·m_{t-1} + (1-b1)·g_t);  m_t = b2·m_{t-1} + (1-b2)·g_t.

  Same signature/defaults/state (`optax.ScaleByLionState(count, mu)`) as
  `optax.scale_by_lion`, plus `cautious` (eps None = 1e-3). See the module
  docstring.
  """
  check_beta("b1", b1, strict=False)
  check_beta("b2", b2, strict=False)
  check_choice("mode", mode, MODES)
  check_positive_or_none("cautious_eps", cautious_eps)
  mu_dtype = canonical_mu_dtype(mu_dtype)
  direction_kw = dict(mode=mode, smooth_beta=smooth_beta, cautious=cautious,
                      cautious_eps=cautious_eps)

  def init_fn(params):
    mu = optax.tree.zeros_like(params, dtype=mu_dtype)
    return ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=mu)

  def update_fn(updates, state, params=None):
    is_none = lambda x: x is None
    g_leaves, treedef = jax.tree.flatten(updates, is_leaf=is_none)
    m_leaves = treedef.flatten_up_to(state.mu)
    p_leaves = (treedef.flatten_up_to(params) if params is not None
                else [None] * len(g_leaves))
    u_out, m_out = [], []
    for g, m, p in zip(g_leaves, m_leaves, p_leaves):
      if g is None:
        u_out.append(None)
        m_out.append(m)
        continue
      cdt = compute_dtype(g.dtype, m.dtype)
      u, m_new = lion_leaf(g, m, b1, b2, cdt, **direction_kw)
      u_out.append(u.astype(g.dtype if p is None else p.dtype))
      m_out.append(m_new.astype(m.dtype))
    return (treedef.unflatten(u_out),
            ScaleByLionState(count=optax.safe_increment(state.count),
                             mu=treedef.unflatten(m_out)))

  return optax.GradientTransformation(init_fn, update_fn)


def lion(
    learning_rate: optax.ScalarOrSchedule,
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.99,
    mu_dtype: Optional[Any] = None,
    weight_decay: optax.ScalarOrSchedule = 1e-3,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    *,
    weight_decay_mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    wd_coupling: str = "lr",
    peak_learning_rate: Optional[float] = None,
    cautious: bool = False,
    cautious_eps: Optional[float] = None,
    skip_nonfinite: bool = False,
    lazy_embeddings: bool = False,
    embedding_pattern: str = masks.DEFAULT_EMBEDDING_PATTERN,
    mode: str = "hard",
    smooth_beta: Optional[float] = None,
) -> optax.GradientTransformationExtraArgs:
  """The Lion optimizer; see the module docstring for the maths and options.

  Args:
    learning_rate: η_t, a constant or a schedule of the step count; None = no
      scaling (the update is sign(c) + λθ, for a chain ending in a scale).
    b1: blend of old momentum and gradient inside sign() (paper: 0.9).
    b2: momentum EMA rate (paper: 0.99; LM runs used (0.95, 0.98)).
    mu_dtype: momentum dtype (None: the param dtype). bf16 halves the state.
    weight_decay: λ_t, constant or schedule (same step count as η_t). Lion
      wants λ 3-10x AdamW's and η 3-10x smaller (automl/lion README).
    mask: bool tree (or prefix) / callable params -> tree; True = decayed.
    weight_decay_mask: alias of `mask`.
    wd_coupling: "lr" | "schedule" | "none" (see module docstring).
    peak_learning_rate: η_peak for wd_coupling="schedule" (required when
      learning_rate is a schedule, or injected by optax.inject_hyperparams).
    cautious, cautious_eps: Cautious Lion (arXiv 2411.16085); eps None = 1e-3.
    skip_nonfinite: skip steps with non-finite gradients, counting them.
    lazy_embeddings: freeze zero-gradient rows of embedding tables (9736 fix a).
    embedding_pattern: regex on the "/"-joined key path marking embeddings.
    mode, smooth_beta: optax's sign variants (smooth_beta None = 1.0).

  Returns:
    An `optax.GradientTransformationExtraArgs` whose state is
    `(ScaleByLionState, <add_decayed_weights state>, <scale_by_learning_rate
    state>)` exactly as `optax.lion`'s (wrapped in `SkipNonFiniteState` when
    `skip_nonfinite=True`).
  """
  check_beta("b1", b1, strict=False)
  check_beta("b2", b2, strict=False)
  if learning_rate is not None:
    check_nonneg("learning_rate", learning_rate, strict=False)
  check_nonneg("weight_decay", weight_decay, strict=False)
  check_choice("wd_coupling", wd_coupling, WD_COUPLINGS)
  check_choice("mode", mode, MODES)
  check_positive_or_none("cautious_eps", cautious_eps)
  masks.is_embedding("", embedding_pattern)  # validates the regex
  mu_dtype = canonical_mu_dtype(mu_dtype)
  mask = resolve_mask(mask, weight_decay_mask)
  direction_kw = dict(mode=mode, smooth_beta=smooth_beta, cautious=cautious,
                      cautious_eps=cautious_eps)

  peak = None
  if wd_coupling != "lr" and learning_rate is None:
    raise ValueError(f"wd_coupling={wd_coupling!r} scales the decay against "
                     "the lr; it needs learning_rate (got None).")
  if wd_coupling == "schedule":
    if peak_learning_rate is not None:
      peak = peak_learning_rate
    elif not callable(learning_rate):
      peak = learning_rate  # a constant (possibly injected): η_t/η_peak = 1
    else:
      raise ValueError(
          "wd_coupling='schedule' scales the decay by lr_t / lr_peak: pass "
          "peak_learning_rate=<the schedule's peak> when learning_rate is a "
          "schedule.")
    check_positive_or_none("peak_learning_rate", peak)
  elif peak_learning_rate is not None:
    raise ValueError("peak_learning_rate is only used with "
                     f"wd_coupling='schedule' (got wd_coupling={wd_coupling!r}).")

  no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0.0
  # optax's own transforms, used only for their (state-compatible) init.
  wd_tx = optax.add_decayed_weights(weight_decay, mask)
  lr_tx = optax.scale_by_learning_rate(learning_rate)

  def init_fn(params):
    mu = optax.tree.zeros_like(params, dtype=mu_dtype)
    return (ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=mu),
            wd_tx.init(params), lr_tx.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    lion_state, wd_state, lr_state = state
    count = lion_state.count
    lr_t = learning_rate(count) if callable(learning_rate) else learning_rate
    wd_t = weight_decay(count) if callable(weight_decay) else weight_decay
    if wd_coupling == "schedule":
      shrink = lr_t * (wd_t / peak)
    elif wd_coupling == "none":
      shrink = wd_t

    def scaled(u, p, decay):
      """-η_t·(u + λ_t·θ) (optax's order of operations), or the variants."""
      if learning_rate is None:  # optax: no scale_by_learning_rate at all
        return u + wd_t * p if decay else u
      if not decay:
        return -lr_t * u
      if wd_coupling == "lr":
        return -lr_t * (u + wd_t * p)
      return -lr_t * u - shrink * p

    if not no_decay and params is None:
      raise ValueError(_NO_PARAMS_MSG)
    is_none = lambda x: x is None
    g_paths, treedef = jax.tree_util.tree_flatten_with_path(
        updates, is_leaf=is_none)
    g_leaves = [g for _, g in g_paths]
    n = len(g_leaves)
    m_leaves = treedef.flatten_up_to(lion_state.mu)
    p_leaves = (treedef.flatten_up_to(params) if params is not None
                else [None] * n)
    if no_decay:
      d_leaves = [False] * n
    elif mask is None:
      d_leaves = [True] * n
    else:
      d_leaves = treedef.flatten_up_to(
          full_mask(mask, params, is_leaf=is_none))
    lazy = lazy_leaves(lazy_embeddings, embedding_pattern,
                       [masks.path_str(path) for path, _ in g_paths], g_leaves)

    u_out, m_out = [], []
    for g, m, p, decay, is_lazy in zip(g_leaves, m_leaves, p_leaves, d_leaves,
                                       lazy):
      if g is None:
        u_out.append(None)
        m_out.append(m)
        continue
      decay = bool(decay) and p is not None
      cdt = compute_dtype(g.dtype, m.dtype, *([p.dtype] if decay else []))
      u, m_new = lion_leaf(g, m, b1, b2, cdt, **direction_kw)
      u = scaled(u, p.astype(cdt) if decay else None, decay)
      if is_lazy:
        rows = active_rows(g)
        u = jnp.where(rows, u, jnp.zeros_like(u))
        m_new = jnp.where(rows, m_new, m.astype(cdt))
      u_out.append(u.astype(g.dtype if p is None else p.dtype))
      m_out.append(m_new.astype(m.dtype))

    new_state = (
        ScaleByLionState(count=optax.safe_increment(count),
                         mu=treedef.unflatten(m_out)),
        jax.tree.map(optax.safe_increment, wd_state),
        jax.tree.map(optax.safe_increment, lr_state))
    return treedef.unflatten(u_out), new_state

  tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
  return guard.skip_nonfinite(tx) if skip_nonfinite else tx
