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
from kexue_jax.optim.lion import compute_dtype
from kexue_jax.optim.lion import full_mask
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
    skip_nonfinite: skip steps with non-finite gradients (see guard.py).
  """
  check_beta("beta", beta)
  check_nonneg("learning_rate", learning_rate)
  check_nonneg("weight_decay", weight_decay)
  if not isinstance(accum_steps, int) or accum_steps < 1:
    raise ValueError(f"accum_steps={accum_steps!r} must be an int >= 1 "
                     "(1 = no accumulation).")
  mu_dtype = canonical_mu_dtype(mu_dtype)
  mask = resolve_mask(mask, weight_decay_mask)
  masks.is_embedding("", embedding_pattern)  # validates the regex
  k = accum_steps
  no_decay = isinstance(weight_decay, (int, float)) and weight_decay == 0.0

  def init_fn(params):
    return TigerState(count=jnp.zeros([], jnp.int32),
                      mu=optax.tree.zeros_like(params, dtype=mu_dtype))

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    if params is None and (rms_lr_scaling or not no_decay):
      raise ValueError("tiger: weight decay / rms_lr_scaling need the params: "
                       "call tx.update(grads, state, params).")
    t = state.count
    step = t // k if k > 1 else t
    lr_t = learning_rate(step) if callable(learning_rate) else learning_rate
    wd_t = weight_decay(step) if callable(weight_decay) else weight_decay
    if k > 1:
      f = jnp.result_type(float)  # float32, or float64 under jax_enable_x64
      b1 = jnp.where(t % k == 0, beta, 1.0).astype(f)
      lr_t = jnp.where((t + 1) % k == 0, lr_t, 0.0).astype(f)
    else:
      b1 = beta
    gw = (1.0 - beta) / k

    is_none = lambda x: x is None
    g_leaves, treedef = jax.tree.flatten(updates, is_leaf=is_none)
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

    u_out, m_out = [], []
    for g, m, p, decay, kind in zip(g_leaves, m_leaves, p_leaves, d_leaves,
                                    kinds):
      if g is None:
        u_out.append(None)
        m_out.append(m)
        continue
      decay = bool(decay) and p is not None
      cdt = compute_dtype(
          g.dtype, m.dtype, *([p.dtype] if p is not None else []))
      m_new = b1 * m.astype(cdt) + gw * g.astype(cdt)
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
      u_out.append((-eta * u).astype(g.dtype if p is None else p.dtype))
      m_out.append(m_new.astype(m.dtype))
    return (treedef.unflatten(u_out),
            TigerState(count=optax.safe_increment(t),
                       mu=treedef.unflatten(m_out)))

  tx = optax.GradientTransformationExtraArgs(init_fn, update_fn)
  return guard.skip_nonfinite(tx) if skip_nonfinite else tx
