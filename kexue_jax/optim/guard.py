"""Non-finite guard: skip a whole optimizer step when any gradient is NaN/Inf.

    ok_t = all_i isfinite(g_t[i])
    (u_t, S_t) = inner(g_t, S_{t-1})   if ok_t
                 (0,   S_{t-1})        otherwise      (every state leaf kept, counts included)

The skipped-step counter (int32) lives in the state so a training loop can log
it; `num_skipped_steps(opt_state)` finds it anywhere in a (nested) state.

Why not `optax.apply_if_finite`: that one gives up after `max_consecutive_errors`
and then applies the non-finite update; here a step is never applied with
non-finite gradients. The skip-and-keep-state rule follows Su's Tiger code
(https://github.com/bojone/tiger) and Praxis' Lion, but globally (any leaf)
instead of per variable, so the parameters stay mutually consistent.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class SkipNonFiniteState(NamedTuple):
  inner_state: Any
  num_skipped: jax.Array  # shape (), int32


def all_finite(tree: Any) -> jax.Array:
  """Scalar bool: every floating leaf of `tree` is finite (True for no leaves)."""
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  if not flags:
    return jnp.asarray(True)
  return jnp.all(jnp.stack(flags))


def skip_nonfinite(inner: optax.GradientTransformation
                   ) -> optax.GradientTransformationExtraArgs:
  """Wraps `inner` so that steps with non-finite gradients are skipped."""
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return SkipNonFiniteState(inner.init(params), jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None, **extra_args):
    ok = all_finite(updates)
    new_updates, new_inner = inner.update(updates, state.inner_state, params,
                                          **extra_args)
    new_updates = jax.tree.map(lambda u: jnp.where(ok, u, jnp.zeros_like(u)),
                               new_updates)
    new_inner = jax.tree.map(lambda n, o: jnp.where(ok, n, o).astype(o.dtype),
                             new_inner, state.inner_state)
    skipped = jnp.where(ok, state.num_skipped,
                        optax.safe_increment(state.num_skipped))
    return new_updates, SkipNonFiniteState(new_inner, skipped)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def num_skipped_steps(opt_state: Any) -> jax.Array:
  """Number of skipped (non-finite) steps recorded in `opt_state`.

  Looks through any nesting (chain tuples, `optax.MultiSteps`, `masked`, ...)
  for our `SkipNonFiniteState` (and optax's `ApplyIfFiniteState`, whose
  `total_notfinite` it reads). Several guards side by side are summed; a guard
  nested in another is counted once (the outer one).
  """
  kinds = (SkipNonFiniteState, optax.ApplyIfFiniteState)
  found = [x for x in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, kinds)) if isinstance(x, kinds)]
  if not found:
    raise ValueError(
        "num_skipped_steps: this optimizer state has no non-finite guard; build "
        "the optimizer with skip_nonfinite=True (lion/tiger/make_optimizer) or "
        "wrap it in kexue_jax.optim.skip_nonfinite(...).")
  counts = [x.num_skipped if isinstance(x, SkipNonFiniteState)
            else x.total_notfinite for x in found]
  return sum(jnp.asarray(c, jnp.int32) for c in counts)
