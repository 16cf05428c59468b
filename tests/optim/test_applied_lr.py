"""One gradient-accumulation mechanism, and the logged learning rate is the one
the optimizer applies, measured from the parameter change in the train step.

A linear loss L(w) = mean_i <w, x_i> has gradient mean_i x_i whatever w is, so
with plain SGD (no momentum, decay or clipping) Δw = -η_applied · mean(x) and
with Tiger (sign step, λ = 0) |Δw| = η_applied on the updates it applies."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from kexue_jax import optim
from kexue_jax import train


class LinearTask:
  unit = "examples"

  def loss(self, variables, batch, rng):
    del rng
    w = variables["params"]["w"]
    return jnp.mean(batch["x"] @ w), {"metrics": {}, "mutable": {}}


def np_cosine(t, peak, total, warmup, ratio):
  if t < warmup:
    return peak * t / warmup
  frac = min((t - warmup) / max(total - warmup, 1), 1.0)
  return peak * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * frac)))


def run_steps(cfg, steps, microbatches, batches):
  tx, lr_fn = optim.make_optimizer(cfg, steps)
  step_fn = jax.jit(train.make_train_step(
      LinearTask(), tx, lr_fn, rng=jax.random.key(0),
      microbatches=microbatches, guard_nonfinite=False))
  params = {"w": jnp.zeros((3,), jnp.float32)}
  state = {"step": jnp.zeros((), jnp.int32), "params": params,
           "opt_state": tx.init(params), "extra": {}}
  out = []
  for x in batches:
    w_old = np.asarray(state["params"]["w"], np.float64)
    state, metrics = step_fn(state, {"x": jnp.asarray(x)})
    dw = np.asarray(state["params"]["w"], np.float64) - w_old
    out.append((dw, float(metrics["learning_rate"]), x.mean(0)))
  return out


def base_cfg(**kw):
  c = optim.default_optimizer_config()
  c.update(schedule="cosine", learning_rate=0.1, warmup_steps=3,
           min_lr_ratio=0.1, weight_decay=0.0, clip_grad_norm=0.0)
  c.update(kw)
  return c


def test_microbatches_logged_lr_is_applied():
  steps, r = 12, np.random.RandomState(0)
  batches = [r.randn(8, 3).astype(np.float32) for _ in range(steps)]
  out = run_steps(base_cfg(name="sgd", momentum=0.0), steps, 4, batches)
  for t, (dw, logged, gbar) in enumerate(out):
    applied = -dw / gbar
    np.testing.assert_allclose(applied, logged, rtol=1e-5)
    np.testing.assert_allclose(logged, np_cosine(t, 0.1, steps, 3, 0.1),
                               rtol=1e-5)


def test_tiger_accumulation_schedule_counts_updates():
  """k = 4 micro-steps per update, 40 loop steps = 10 updates: the schedule
  spans the 10 updates (cosine ends at min_lr), the logged lr is the applied
  one on every window's last micro-step and earlier micro-steps apply 0."""
  k, steps, r = 4, 40, np.random.RandomState(1)
  batches = [r.randn(2, 3).astype(np.float32) for _ in range(steps)]
  cfg = base_cfg(name="tiger", grad_accum_steps=k, warmup_steps=2)
  out = run_steps(cfg, steps, 1, batches)
  for t, (dw, logged, _) in enumerate(out):
    expected = np_cosine(t // k, 0.1, steps // k, 2, 0.1)
    np.testing.assert_allclose(logged, expected, rtol=1e-5)
    if (t + 1) % k:
      np.testing.assert_array_equal(dw, 0.0)
    else:
      np.testing.assert_allclose(np.abs(dw), logged, rtol=1e-5)
  np.testing.assert_allclose(out[-1][1], np_cosine(9, 0.1, 10, 2, 0.1),
                             rtol=1e-6)


def test_skipped_steps_hold_the_logged_lr_back():
  """A non-finite step is skipped with the optimizer's counters: from then on
  the schedule runs one step behind the loop, and so does the logged lr."""
  steps, r = 10, np.random.RandomState(2)
  batches = [r.randn(4, 3).astype(np.float32) for _ in range(steps)]
  batches[4][0, 0] = np.nan
  out = run_steps(base_cfg(name="sgd", momentum=0.0, skip_nonfinite=True),
                  steps, 1, batches)
  for t, (dw, logged, gbar) in enumerate(out):
    if t == 4:
      np.testing.assert_array_equal(dw, 0.0)
      continue
    np.testing.assert_allclose(-dw / gbar, logged, rtol=1e-5)
    applied_t = t if t < 4 else t - 1
    np.testing.assert_allclose(logged, np_cosine(applied_t, 0.1, steps, 3, 0.1),
                               rtol=1e-5)
