"""Tiger ("Tight-fisted Optimizer"), Su Jianlin 2023, as an optax transform.

https://kexue.fm/archives/9512 , code https://github.com/bojone/tiger . Per element:

    m_t = β m_{t-1} + (1 - β) g_t
    θ_t = θ_{t-1} - η_t [sign(m_t) + λ θ_{t-1}]

i.e. Lion with b1 = b2 = β, but the sign is taken of the *new* momentum.
Defaults are Su's: β = 0.965 (NLP; he uses 0.945 for CV), λ = 0.01, η = 1e-3.

Parameter-RMS learning rate (`rms_lr_scaling=True`, §"学习率" of the post; his
tiger.py), LAMB/Amos-like, with θ = θ_{t-1}:
    biases / norm scales (ndim < 2)  η_t · 0.5
    matrices                          η_t · RMS(θ)                 (whole tensor)
    embeddings (path matches pattern) η_t · RMS(θ, last axis)      (per row)
With it, Su recommends peak η in [1e-3, 2e-3]. A zero-initialised matrix gets
RMS 0 and stays put, as in his code. His decay is 0 on biases/β/γ: pass
`mask=kexue_jax.optim.decay_mask` for his full recipe. The decay is scaled by
the same (RMS-scaled) η as the sign step, as in his code.

Gradient accumulation without an extra buffer (`accum_steps=k`): the
accumulation happens inside the momentum. With the micro-step counter t
(starting at 0), χ(x) = 1 if x is an integer else 0:
    m_t = [(β - 1) χ(t/k) + 1] m_{t-1} + (1 - β)/k · g_t
    θ_t = θ_{t-1} - χ((t+1)/k) η [sign(m_t) + λ θ_{t-1}]
In code: b1 = β if t % k == 0 else 1, gradient weight (1-β)/k, and the update
is applied (η ≠ 0) only when (t+1) % k == 0; other calls return zero updates.
Over one window of k micro-batches this gives m = β m_old + (1-β) mean_i(g_i)
and one step with sign(m): exactly `optax.MultiSteps(tiger(accum_steps=1), k)`
in exact arithmetic (in floating point the sum is ordered differently).
Schedules are evaluated at the update index t // k (as MultiSteps does); Su's
code evaluates its schedule at the micro-step t instead.

Memory: one parameter-sized buffer (m), with or without accumulation.
`accum_steps` may be injected (`optax.inject_hyperparams`): the window logic is
jnp arithmetic on the counter.

Non-finite gradients, two rules (both off by default):
  * `skip_nonfinite=True` (ours, `guard.py`): if ANY gradient entry in the whole
    tree is NaN/Inf, the whole step is skipped: zero update for every
    variable, state (momentum, counter) kept, the skip counted.
  * `shrink_nonfinite=True` (Su's, his tiger.py `_resource_apply`): per
    VARIABLE. A variable whose gradient holds a NaN (we also treat ±Inf so)
    keeps its momentum (β and the gradient are replaced by 1 and 0 for it) and
    is shrunk toward its init centre, θ <- (θ - c)·s + c with s =
    `shrink_ratio` (0.99) and c from `shrink_centre` (default
    `masks.init_centres`: 1 for norm gains, 0 otherwise), on every micro-step
    that sees the NaN, whatever the learning rate; all other variables step
    normally. The state is then wrapped in `guard.ShrinkNonFiniteState`, whose
    counter (read by `num_skipped_steps`) counts the micro-steps on which any
    variable was shrunk. A global-norm
    clip before Tiger spreads one NaN to every gradient (norm NaN), so every
    variable shrinks: disable clipping to keep Su's per-variable behaviour.
"""
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from kexue_jax.optim import guard
from kexue_jax.optim import masks
from kexue_jax.optim.lion import canonical_mu_dtype
from kexue_jax.optim.lion import check_beta
from kexue_jax.optim.lion import check_nonneg
from kexue_jax.optim.lion import _as_float
from kexue_jax.optim.lion import active_rows
from kexue_jax.optim.lion import compute_dtype
from kexue_jax.optim.lion import full_mask
from kexue_jax.optim.lion import full_values
from kexue_jax.optim.lion import lazy_leaves
from kexue_jax.optim.lion import resolve_mask


class TigerState(NamedTuple):
  count: jax.Array  # shape (), int32: micro-steps (calls to update) so far
  mu: optax.Updates


def _rms(x, axis=None, keepdims=False):
  return jnp.sqrt(jnp.mean(jnp.square(x), axis=axis, keepdims=keepdims))


def tiger(
    learning_rate: optax.ScalarOrSchedule = 1e-3,
    beta: float = 0.965,
    weight_decay: optax.ScalarOrSchedule = 0.01,
    mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    *,
    mu_dtype: Optional[Any] = None,
    accum_steps: int = 1,
    rms_lr_scaling: bool = False,
    embedding_pattern: str = masks.DEFAULT_EMBEDDING_PATTERN,
    weight_decay_mask: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    skip_nonfinite: bool = False,
    shrink_nonfinite: bool = False,
    shrink_ratio: float = 0.99,
    shrink_centre: Optional[Union[Any, Callable[[optax.Params], Any]]] = None,
    lazy_embeddings: bool = False,
) -> optax.GradientTransformationExtraArgs:
  """Tiger; see the module docstring for the maths.

  Args:
    learning_rate: η, constant or schedule of the update index (t // k).
    beta: momentum rate β (Su: 0.965 NLP, 0.945 CV).
    weight_decay: λ, constant or schedule.
    mask: which leaves are decayed (tree/prefix/callable, as optax).
    mu_dtype: momentum dtype (None: the param dtype).
    accum_steps: k, buffer-free gradient accumulation (1 = off).
    rms_lr_scaling: Su's per-parameter lr (0.5 / RMS(θ) / per-row RMS).
    embedding_pattern: regex on the key path that marks embedding tables.
    weight_decay_mask: alias of `mask`.
    skip_nonfinite: skip the whole step on any non-finite gradient (ours).
    shrink_nonfinite: Su's per-variable rule (module docstring).
    shrink_ratio: s in θ <- (θ - c)·s + c.
    shrink_centre: c per leaf: a tree (or prefix) of floats or a callable
      params -> tree; None = `masks.init_centres`.
    lazy_embeddings: freeze zero-gradient rows of embedding tables (Su's fix
      (a) for the embedding anomaly, https://kexue.fm/archives/9736; see
      `lion`). Not with accum_steps > 1 (the row test is per micro-step).
  """
  check_beta("beta", beta)
  check_nonneg("learning_rate", learning_rate)
  check_nonneg("weight_decay", weight_decay)
  k_val = _as_float(accum_steps)
  if k_val is not None and (isinstance(accum_steps, bool) or k_val < 1
                            or not float(k_val).is_integer()
                            or isinstance(accum_steps, float)):
    raise ValueError(f"accum_steps={accum_steps!r} must be an int >= 1 "
                     "(1 = no accumulation).")
  if lazy_embeddings and k_val is not None and k_val > 1:
    raise ValueError("lazy_embeddings=True with accum_steps > 1 is not "
                     "supported: a row idle on one micro-step may have had "
                     "gradients earlier in the window. Use one of them.")
  if skip_nonfinite and shrink_nonfinite:
    raise ValueError("pass skip_nonfinite=True (skip the whole step) or "
                     "shrink_nonfinite=True (Su's per-variable shrink), not "
                     "both.")
  s_val = _as_float(shrink_ratio)
  if s_val is not None and not 0.0 <= s_val <= 1.0:
    raise ValueError(f"shrink_ratio={shrink_ratio!r} must be in [0, 1] "
                     "(Su: 0.99).")
  mu_dtype = canonical_mu_dtype(mu_dtype)
  mask = resolve_mask(mask, weight_decay_mask)
  masks.is_embedding("", embedding_pattern)  # validates the regex
  k = accum_steps
  static_k1 = k_val == 1  # no accumulation logic traced at all
  no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0.0

  def init_fn(params):
    state = TigerState(count=jnp.zeros([], jnp.int32),
                       mu=optax.tree.zeros_like(params, dtype=mu_dtype))
    if shrink_nonfinite:
      return guard.ShrinkNonFiniteState(state, jnp.zeros([], jnp.int32))
    return state

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if shrink_nonfinite:
      outer, state = state, state.inner_state
    if params is None and (rms_lr_scaling or not no_decay or shrink_nonfinite):
      raise ValueError("tiger: weight decay / rms_lr_scaling / "
                       "shrink_nonfinite need the params: call "
                       "tx.update(grads, state, params).")
    t = state.count
    step = t if static_k1 else t // k
    lr_t = learning_rate(step) if callable(learning_rate) else learning_rate
    wd_t = weight_decay(step) if callable(weight_decay) else weight_decay
    if static_k1:
      b1 = beta
    else:
      f = jnp.result_type(float)  # float32, or float64 under jax_enable_x64
      b1 = jnp.where(t % k == 0, beta, 1.0).astype(f)
      lr_t = jnp.where((t + 1) % k == 0, lr_t, 0.0).astype(f)
    gw = (1.0 - beta) / k

    is_none = lambda x: x is None
    g_paths, treedef = jax.tree_util.tree_flatten_with_path(
        updates, is_leaf=is_none)
    g_leaves = [g for _, g in g_paths]
    n = len(g_leaves)
    m_leaves = treedef.flatten_up_to(state.mu)
    p_leaves = (treedef.flatten_up_to(params) if params is not None
                else [None] * n)
    if no_decay:
      d_leaves = [False] * n
    elif mask is None:
      d_leaves = [True] * n
    else:
      d_leaves = treedef.flatten_up_to(
          full_mask(mask, params, is_leaf=is_none))
    kinds = (treedef.flatten_up_to(
        masks.param_kinds(params, embedding_pattern)) if rms_lr_scaling
             else [None] * n)
    lazy = lazy_leaves(lazy_embeddings, embedding_pattern,
                       [masks.path_str(path) for path, _ in g_paths], g_leaves)
    if shrink_nonfinite:
      centres = (masks.init_centres(params) if shrink_centre is None else
                 shrink_centre(params) if callable(shrink_centre)
                 else shrink_centre)
      c_leaves = treedef.flatten_up_to(
          full_values(centres, params, is_leaf=is_none))
    else:
      c_leaves = [None] * n

    u_out, m_out, bad_out = [], [], []
    for g, m, p, decay, kind, is_lazy, centre in zip(
        g_leaves, m_leaves, p_leaves, d_leaves, kinds, lazy, c_leaves):
      if g is None:
        u_out.append(None)
        m_out.append(m)
        continue
      decay = bool(decay) and p is not None
      cdt = compute_dtype(
          g.dtype, m.dtype, *([p.dtype] if p is not None else []))
      g32, b1_leaf = g.astype(cdt), b1
      if shrink_nonfinite:  # Su: b1 -> 1, g -> 0 for this variable
        bad = jnp.logical_not(jnp.all(jnp.isfinite(g32)))
        bad_out.append(bad)
        g32 = jnp.where(bad, jnp.zeros_like(g32), g32)
        b1_leaf = jnp.where(bad, 1.0, b1)
      m_new = b1_leaf * m.astype(cdt) + gw * g32
      u = jnp.sign(m_new)
      if decay:
        u = u + wd_t * p.astype(cdt)
      if kind is None:
        eta = lr_t
      elif kind == "vector":
        eta = 0.5 * lr_t
      elif kind == "embedding":
        eta = lr_t * _rms(p.astype(cdt), axis=-1, keepdims=True)
      else:
        eta = lr_t * _rms(p.astype(cdt))
      u = -eta * u
      if is_lazy:
        rows = active_rows(g)
        u = jnp.where(rows, u, jnp.zeros_like(u))
        m_new = jnp.where(rows, m_new, m.astype(cdt))
      if shrink_nonfinite:  # θ_new = (θ - c)·s + c, as a delta
        p32 = p.astype(cdt)
        u = jnp.where(bad, (p32 - centre) * shrink_ratio + centre - p32, u)
      u_out.append(u.astype(g.dtype if p is None else p.dtype))
      m_out.append(m_new.astype(m.dtype))
    new_state = TigerState(count=optax.safe_increment(t),
                           mu=treedef.unflatten(m_out))
    if shrink_nonfinite:
      any_bad = jnp.any(jnp.stack(bad_out)) if bad_out else jnp.asarray(False)
      new_state = guard.ShrinkNonFiniteState(
          new_state, jnp.where(any_bad, optax.safe_increment(outer.num_shrunk),
                               outer.num_shrunk))
    return treedef.unflatten(u_out), new_state

  tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
  return guard.skip_nonfinite(tx) if skip_nonfinite else tx
