"""Alternating optimizers: n optax transforms with states of their own, used in turn, one per update.

    i = t mod n:   (u_t, S^i_t) = tx_i.update(g_t, S^i_{t-1}),   S^j_t = S^j_{t-1} for j != i

optax.multi_transform splits the *parameters* among transforms; this splits the *updates*: every parameter goes
through tx_{t mod n}, and each tx keeps the moments (and the count) of its own gradients only. Su Jianlin's
semi-supervised R-Drop (https://kexue.fm/archives/8496; github.com/bojone/r-drop `sentiment_ssl.py`) is the use:
after every labelled cross-entropy step (Adam, lr 2e-5) one KL step on an unlabelled batch with a second Adam
(lr 1e-5) on the same weights. The train loop runs a task's `phases` objectives in turn inside each train step,
one update each (train.make_train_step), so objective i always meets tx_i.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class AlternateState(NamedTuple):
  phase: jax.Array         # int32 (): the transform the next update goes through
  inner_states: tuple      # the states of the transforms, in order


def alternate(*txs: optax.GradientTransformation) -> optax.GradientTransformation:
  """tx_0, ..., tx_{n-1} used in turn (module docstring); n >= 2."""
  if len(txs) < 2:
    raise ValueError(f"alternate needs at least two transforms, got {len(txs)}.")

  def init_fn(params):
    return AlternateState(jnp.zeros([], jnp.int32), tuple(tx.init(params) for tx in txs))

  def branch(i: int):
    def update_i(operands: tuple[Any, tuple, Any]):
      updates, inner, params = operands
      u, s = txs[i].update(updates, inner[i], params)
      return u, inner[:i] + (s,) + inner[i + 1:]
    return update_i

  def update_fn(updates, state, params=None):
    new_updates, inner = jax.lax.switch(state.phase, [branch(i) for i in range(len(txs))],
                                        (updates, state.inner_states, params))
    return new_updates, AlternateState((state.phase + 1) % len(txs), inner)

  return optax.GradientTransformation(init_fn, update_fn)
