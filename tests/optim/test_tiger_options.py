"""Tiger's options: Su's per-variable NaN shrink rule vs a float64 transcription
of his tiger.py, and accum_steps injected under jit."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kexue_jax import optim

BETA, LR, WD = 0.965, 0.05, 0.3


def make_params(seed=0):
  r = np.random.RandomState(seed)
  return {"dense": {"kernel": jnp.asarray(r.randn(4, 3), jnp.float32),
                    "bias": jnp.asarray(r.randn(3), jnp.float32)},
          "norm": {"scale": jnp.asarray(1.0 + 0.1 * r.randn(4), jnp.float32)}}


def grads_with_nans(params, steps, bad, seed=1):
  """bad: {step: [leaf names to poison]} (NaN or Inf in one entry)."""
  r = np.random.RandomState(seed)
  out = []
  for t in range(steps):
    g = jax.tree.map(lambda x: np.asarray(r.randn(*x.shape), np.float32), params)
    for i, (sub, leaf) in enumerate(bad.get(t, [])):
      g[sub][leaf].flat[0] = np.nan if i % 2 == 0 else np.inf
    out.append(jax.tree.map(jnp.asarray, g))
  return out


def numpy_su_tiger(params, grads, k, centres, decayed):
  """Su's `_resource_apply` (github.com/bojone/tiger, tiger.py), float64, per
  variable, 0-based micro-step t: b1 = β if t%k==0 else 1; lr = η only when
  (t+1)%k==0; a variable with a NaN gradient gets b1 = 1, g = 0 and
  θ <- (θ - c)·0.99 + c instead of its step (here NaN or ±Inf)."""
  names = [("dense", "kernel"), ("dense", "bias"), ("norm", "scale")]
  th = {n: np.asarray(params[n[0]][n[1]], np.float64) for n in names}
  m = {n: np.zeros_like(v) for n, v in th.items()}
  shrunk_steps = 0
  for t, gt in enumerate(grads):
    b1 = BETA if t % k == 0 else 1.0
    lr = LR if (t + 1) % k == 0 else 0.0
    any_bad = False
    for n in names:
      g = np.asarray(gt[n[0]][n[1]], np.float64)
      bad = not np.all(np.isfinite(g))
      any_bad |= bad
      b1v, g = (1.0, np.zeros_like(g)) if bad else (b1, g)
      m[n] = b1v * m[n] + (1 - BETA) / k * g
      u = (np.sign(m[n]) + (WD * th[n] if decayed[n] else 0.0)) * lr
      th[n] = (th[n] - centres[n]) * 0.99 + centres[n] if bad else th[n] - u
    shrunk_steps += any_bad
  return th, m, shrunk_steps


@pytest.mark.parametrize("k", [1, 2])
def test_shrink_rule_matches_sus_code(k):
  params = make_params()
  bad = {1: [("dense", "kernel")], 2: [("norm", "scale"), ("dense", "bias")],
         5: [("dense", "kernel")]}
  grads = grads_with_nans(params, 8, bad)
  tx = optim.tiger(LR, beta=BETA, weight_decay=WD, mask=optim.decay_mask,
                   accum_steps=k, shrink_nonfinite=True)
  update, state, p = jax.jit(tx.update), tx.init(params), params
  for g in grads:
    u, state = update(g, state, p)
    p = optax.apply_updates(p, u)
  centres = {("dense", "kernel"): 0.0, ("dense", "bias"): 0.0,
             ("norm", "scale"): 1.0}
  decayed = {("dense", "kernel"): True, ("dense", "bias"): False,
             ("norm", "scale"): False}
  th, m, shrunk = numpy_su_tiger(params, grads, k, centres, decayed)
  for n, ref in th.items():
    np.testing.assert_allclose(p[n[0]][n[1]], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.inner_state.mu[n[0]][n[1]], m[n],
                               rtol=1e-5, atol=1e-7)
  assert int(optim.num_skipped_steps(state)) == shrunk == 3


def test_init_centres_default_and_override():
  params = make_params()
  assert optim.init_centres(params) == {
      "dense": {"kernel": 0.0, "bias": 0.0}, "norm": {"scale": 1.0}}
  # a user centre (prefix tree) replaces the default
  tx = optim.tiger(LR, weight_decay=0.0, shrink_nonfinite=True,
                   shrink_centre={"dense": 0.5, "norm": 2.0})
  g = jax.tree.map(lambda x: jnp.full_like(x, jnp.nan), params)
  u, _ = tx.update(g, tx.init(params), params)
  new = optax.apply_updates(params, u)
  for (sub, leaf), c in ((("norm", "scale"), 2.0), (("dense", "bias"), 0.5)):
    th = np.asarray(params[sub][leaf], np.float64)
    np.testing.assert_allclose(new[sub][leaf], (th - c) * 0.99 + c, rtol=1e-6)


def test_skip_and_shrink_are_exclusive():
  with pytest.raises(ValueError, match="not both"):
    optim.tiger(skip_nonfinite=True, shrink_nonfinite=True)
  with pytest.raises(ValueError, match="lazy_embeddings"):
    optim.tiger(lazy_embeddings=True, accum_steps=2)
  with pytest.raises(ValueError, match="shrink_ratio"):
    optim.tiger(shrink_nonfinite=True, shrink_ratio=1.5)


def test_inject_hyperparams_with_accumulation_under_jit():
  params = make_params(3)
  grads = grads_with_nans(params, 7, {}, seed=4)
  kw = dict(learning_rate=LR, beta=BETA, weight_decay=WD, accum_steps=3)
  tx_i = optax.inject_hyperparams(optim.tiger)(**kw)
  tx = optim.tiger(**kw)
  s_i, s = jax.jit(tx_i.init)(params), tx.init(params)
  upd_i = jax.jit(tx_i.update)
  assert set(s_i.hyperparams) >= {"learning_rate", "beta", "weight_decay",
                                  "accum_steps"}
  for g in grads:
    u_i, s_i = upd_i(g, s_i, params)
    u, s = tx.update(g, s, params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u_i,
                 u)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               s_i.inner_state, s)
