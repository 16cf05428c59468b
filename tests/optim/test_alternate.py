"""optim.alternate (Su's semi-supervised R-Drop: two Adams used in turn) against a literal NumPy float64 Adam;
the `alternate` key of make_optimizer; a train step with two phases against NumPy float64."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from tests.helpers import assert_trees_close, float64
from kexue_jax import optim
from kexue_jax import train


def np_adam(lr, b1=0.9, b2=0.999, eps=1e-8):
  """Adam (Kingma & Ba 2015, Algorithm 1) as a closure over its own moments: g -> update (float64)."""
  m = v = 0.0
  t = 0

  def step(g):
    nonlocal m, v, t
    t += 1
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    return -lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
  return step


def test_alternate_adams_match_numpy_and_update_in_turn():
  """Update t goes through Adam t mod 2, which sees only its own gradients; the other state is untouched."""
  rng = np.random.default_rng(0)
  grads = rng.normal(size=(6, 5))
  with float64():
    tx = optim.alternate(optax.adam(1e-2), optax.adam(5e-3))
    state = tx.init(jnp.zeros(5))
    ref = (np_adam(1e-2), np_adam(5e-3))
    for t, g in enumerate(grads):
      update, new = tx.update(jnp.asarray(g), state)
      assert_trees_close(np.asarray(update), ref[t % 2](g))
      changed = [not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s0), jax.tree.leaves(s1)))
                 for s0, s1 in zip(state.inner_states, new.inner_states)]
      assert changed == [t % 2 == 0, t % 2 == 1] and int(new.phase) == (t + 1) % 2
      state = new
    assert [int(s[0].count) for s in state.inner_states] == [3, 3]


def _opt_cfg(**kw):
  return ml_collections.ConfigDict(dict(name="adamw", learning_rate=1e-2, b2=0.999, weight_decay=0.0,
                                        clip_grad_norm=0.0, warmup_steps=0, schedule="constant", **kw))


def test_make_optimizer_alternate_key():
  tx, lr_fn = optim.make_optimizer(_opt_cfg(alternate=[{}, {"learning_rate": 5e-3}]), 10)
  assert isinstance(tx.init(jnp.zeros(3)), optim.AlternateState) and float(lr_fn(3)) == pytest.approx(1e-2)
  for bad, match in (([{}], ">= 2 override dicts"), ([{}, {"pattern": "x"}], r"alternate\[1\] has keys")):
    with pytest.raises(ValueError, match=match):
      optim.make_optimizer(_opt_cfg(alternate=bad), 10)
  with pytest.raises(ValueError, match="skip_nonfinite=False"):
    optim.make_optimizer(_opt_cfg(alternate=[{}, {}], skip_nonfinite=True), 10)


class _TwoObjectives:
  """Least squares in turn: phase 0 ½ mean (x w − y)², phase 1 ½ mean (u w)² (a label-free term)."""
  unit, phases = "examples", 2

  def loss(self, variables, batch, rng, phase=0):
    del rng
    w = variables["params"]["w"]
    r = batch["x"] @ w - batch["y"] if phase == 0 else batch["u"] @ w
    return 0.5 * jnp.mean(r ** 2), {"metrics": {f"r{phase}": jnp.mean(r ** 2)}, "mutable": {}}


def test_train_step_runs_the_phases_in_turn_against_numpy():
  """Two train steps of a two-phase task with two Adams: phase 1's gradient is taken after phase 0's update."""
  rng = np.random.default_rng(1)
  x, y, u, w0 = rng.normal(size=(8, 3)), rng.normal(size=8), rng.normal(size=(8, 3)), rng.normal(size=3)
  with float64():
    tx, lr_fn = optim.make_optimizer(_opt_cfg(alternate=[{}, {"learning_rate": 5e-3}]), 10)
    step = jax.jit(train.make_train_step(_TwoObjectives(), tx, lr_fn, rng=jax.random.key(0), microbatches=1,
                                         guard_nonfinite=True))
    params = {"w": jnp.asarray(w0)}
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params), "extra": {}}
    batch = {"x": jnp.asarray(x), "y": jnp.asarray(y), "u": jnp.asarray(u)}
    adam0, adam1, w = np_adam(1e-2), np_adam(5e-3), w0.copy()
    for _ in range(2):
      state, metrics = step(state, batch)
      loss0, g0 = 0.5 * np.mean((x @ w - y) ** 2), x.T @ (x @ w - y) / len(y)
      w = w + adam0(g0)
      loss1, g1 = 0.5 * np.mean((u @ w) ** 2), u.T @ (u @ w) / len(y)
      w = w + adam1(g1)
      assert_trees_close(np.asarray(state["params"]["w"]), w)
      assert_trees_close(float(metrics["loss"]), loss0 + loss1)
      assert_trees_close(float(metrics["grad_norm"]), np.sqrt(g0 @ g0 + g1 @ g1))
      assert set(metrics) >= {"r0", "r1"}
