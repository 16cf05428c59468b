"""Non-finite guard: skip a whole optimizer step when any gradient is NaN/Inf.

    ok_t = all_i isfinite(g_t[i])
    (u_t, S_t) = inner(g_t, S_{t-1})   if ok_t
                 (0,   S_{t-1})        otherwise      (every state leaf kept, counts included)

The skipped-step counter (int32) lives in the state so a training loop can log
it; `num_skipped_steps(opt_state)` finds it anywhere in a (nested) state.

Why not `optax.apply_if_finite`: that one gives up after `max_consecutive_errors`
and then applies the non-finite update; here a step is never applied with
non-finite gradients. Praxis' Lion also skips; Su's Tiger code
(https://github.com/bojone/tiger) does NOT skip the step: per variable, one
whose gradient has a NaN keeps its momentum and is shrunk toward its init
centre, θ <- (θ - c)·0.99 + c, while the other variables take their normal
step. That rule is Tiger's `shrink_nonfinite` option (state
`ShrinkNonFiniteState`, defined here so `num_skipped_steps` finds it); this
guard is global (any leaf) so the parameters stay mutually consistent.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class SkipNonFiniteState(NamedTuple):
  inner_state: Any
  num_skipped: jax.Array  # shape (), int32


class ShrinkNonFiniteState(NamedTuple):
  """State of Tiger's `shrink_nonfinite` (Su's rule): the inner state still
  advances on such steps; `num_shrunk` counts the steps that shrank a variable."""
  inner_state: Any
  num_shrunk: jax.Array  # shape (), int32


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


def _guards(opt_state: Any, kinds) -> list:
  return [x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, kinds))
          if isinstance(x, kinds)]


def _count(x) -> jax.Array:
  if isinstance(x, SkipNonFiniteState):
    c = x.num_skipped
  elif isinstance(x, ShrinkNonFiniteState):
    c = x.num_shrunk
  else:
    c = x.total_notfinite
  return jnp.asarray(c, jnp.int32)


def num_skipped_steps(opt_state: Any) -> jax.Array:
  """Number of steps a non-finite guard acted on, recorded in `opt_state`.

  Looks through any nesting (chain tuples, `optax.MultiSteps`, `masked`, ...)
  for our `SkipNonFiniteState` (skipped steps), Tiger's `ShrinkNonFiniteState`
  (steps that shrank a variable, Su's rule) and optax's `ApplyIfFiniteState`
  (its `total_notfinite`). Several guards side by side are summed; a guard
  nested in another is counted once (the outer one).
  """
  found = _guards(opt_state, (SkipNonFiniteState, ShrinkNonFiniteState, optax.ApplyIfFiniteState))
  if not found:
    raise ValueError(
        "num_skipped_steps: this optimizer state has no non-finite guard; build "
        "the optimizer with skip_nonfinite=True (lion/tiger/make_optimizer) or "
        "wrap it in kexue_jax.optim.skip_nonfinite(...).")
  return sum(_count(x) for x in found)


def applied_step(opt_state: Any, step: jax.Array) -> jax.Array:
  """The step count the optimizer's schedules see at train step `step`.

  A skipped step keeps the whole inner state, its counters included, so after
  n skips the optimizer evaluates its schedules at `step - n`. Log
  `lr_fn(applied_step(opt_state, step))` to report the learning rate actually
  applied. Assumes one guard wrapping the whole update (as `make_optimizer`
  builds it); without a skipping guard this is `step`. (Su's shrink rule does
  not hold the counters back.)
  """
  found = _guards(opt_state, (SkipNonFiniteState, optax.ApplyIfFiniteState))
  return step - sum(_count(x) for x in found) if found else step
