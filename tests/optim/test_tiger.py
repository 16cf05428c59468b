"""Tiger vs a float64 NumPy transcription of Su's rule (kexue.fm/archives/9512)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kexue_jax import optim
from tests.helpers import assert_trees_close, float64


def make_params(seed=0, dtype=jnp.float32):
  r = np.random.RandomState(seed)
  shapes = {
      "embed": {"embedding": (9, 6)},
      "dense": {"kernel": (6, 5), "bias": (5,)},
      "norm": {"scale": (6,)},
      "out": [{"w": (5, 4)}],
  }
  return jax.tree.map(lambda s: jnp.asarray(r.randn(*s), dtype), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


# By hand for the reference: Su's name rules (bias|beta|gamma -> vector, no
# decay; "embeddings" -> per-row RMS; the rest -> whole-tensor RMS).
HAND_KIND = {"embed": {"embedding": "embedding"},
             "dense": {"kernel": "matrix", "bias": "vector"},
             "norm": {"scale": "vector"}, "out": [{"w": "matrix"}]}
HAND_DECAY = {"embed": {"embedding": True},
              "dense": {"kernel": True, "bias": False},
              "norm": {"scale": False}, "out": [{"w": True}]}


def grad_seq(params, steps, seed=1, dtype=np.float32):
  r = np.random.RandomState(seed)
  return [jax.tree.map(lambda p: r.randn(*p.shape).astype(dtype), params)
          for _ in range(steps)]


def lr_jnp(s):
  return 2e-3 * (0.5 + 0.5 * jnp.cos(jnp.pi * s / 30.0))


def lr_np(s):
  return 2e-3 * (0.5 + 0.5 * math.cos(math.pi * s / 30.0))


def numpy_tiger(params, grads, lr, wd, decay, kind, beta, k, rms):
  """Su's rule with his accumulation, 1-indexed t, float64:
      m_t = [(β-1) χ((t-1)/k) + 1] m_{t-1} + (1-β)/k g_t
      θ_t = θ_{t-1} - χ(t/k) η_s [sign(m_t) + λ θ_{t-1}] · r(θ_{t-1}),
  χ(x) = 1 iff x is an integer, s = (t-1)//k the update index, r = 0.5 /
  RMS(θ) / row-RMS(θ) for vector / matrix / embedding (1 without rms)."""
  theta = [np.asarray(p, np.float64) for p in jax.tree.leaves(params)]
  dec, kinds = jax.tree.leaves(decay), jax.tree.leaves(kind)
  m = [np.zeros_like(x) for x in theta]
  chi = lambda x: 1.0 if float(x).is_integer() else 0.0
  out = []
  for t, g_tree in enumerate(grads, start=1):
    g = [np.asarray(x, np.float64) for x in jax.tree.leaves(g_tree)]
    s = (t - 1) // k
    for i in range(len(theta)):
      m[i] = ((beta - 1) * chi((t - 1) / k) + 1) * m[i] + (1 - beta) / k * g[i]
      if not rms:
        r = 1.0
      elif kinds[i] == "vector":
        r = 0.5
      elif kinds[i] == "embedding":
        r = np.sqrt(np.mean(theta[i] ** 2, axis=-1, keepdims=True))
      else:
        r = np.sqrt(np.mean(theta[i] ** 2))
      step = np.sign(m[i]) + (wd * theta[i] if dec[i] else 0.0)
      theta[i] = theta[i] - chi(t / k) * lr(s) * r * step
    out.append(([x.copy() for x in theta], [x.copy() for x in m]))
  return out


def run(tx, params, grads):
  update = jax.jit(tx.update)
  state = tx.init(params)
  out = []
  for g in grads:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    out.append((u, params, state))
  return out


@pytest.mark.parametrize("k,rms", [(1, False), (1, True), (3, True)])
def test_matches_numpy_reference(k, rms):
  params = make_params()
  grads = grad_seq(params, 30)
  assert optim.param_kinds(params) == HAND_KIND
  assert optim.decay_mask(params) == HAND_DECAY
  tx = optim.tiger(lr_jnp, beta=0.965, weight_decay=0.3,
                   mask=optim.decay_mask, accum_steps=k, rms_lr_scaling=rms)
  ours = run(tx, params, grads)
  ref = numpy_tiger(params, grads, lr_np, 0.3, HAND_DECAY, HAND_KIND, 0.965,
                    k, rms)
  for t, ((u, p, s), (r_theta, r_m)) in enumerate(zip(ours, ref), start=1):
    for a, b in zip(jax.tree.leaves(p), r_theta):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s.mu), r_m):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    if t % k:  # accumulating micro-steps give exactly zero updates
      assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree.leaves(u))


def test_defaults_are_sus():
  # Tiger(learning_rate=1e-3, beta=0.965, weight_decay=0.01) in bojone/tiger.
  params = {"w": jnp.full((3, 3), 2.0)}
  g = {"w": jnp.asarray(np.random.RandomState(2).randn(3, 3), jnp.float32)}
  u, s = optim.tiger().update(g, optim.tiger().init(params), params)
  np.testing.assert_allclose(s.mu["w"], (1 - 0.965) * g["w"], rtol=1e-6)
  np.testing.assert_allclose(
      u["w"], -1e-3 * (np.sign(g["w"]) + 0.01 * 2.0), rtol=1e-6)


def test_accumulation_equals_multisteps():
  """Over a window of k micro-batches Su's rule gives
      m = β m_old + Σ_i (1-β)/k g_i = β m_old + (1-β) mean_i(g_i)
  and one step with sign(m), θ and RMS(θ) unchanged inside the window, which is
  MultiSteps(k) (mean of the k gradients, then one Tiger step at update index
  t // k). Equal in exact arithmetic; the sums are ordered differently, so compared in float64."""
  with float64():
    _accumulation_equals_multisteps()


def _accumulation_equals_multisteps():
  k = 3
  params = make_params(3, jnp.float64)
  grads = grad_seq(params, 4 * k, seed=4, dtype=np.float64)
  kw = dict(beta=0.9, weight_decay=0.2, mask=optim.decay_mask,
            rms_lr_scaling=True)
  ours = run(optim.tiger(lr_jnp, accum_steps=k, **kw), params, grads)
  ms = run(optax.MultiSteps(optim.tiger(lr_jnp, **kw), k, accumulator_dtype=jnp.float64), params, grads)
  for t, ((u_a, p_a, s_a), (u_b, p_b, s_b)) in enumerate(zip(ours, ms), 1):
    assert_trees_close((u_a, p_a), (u_b, p_b))
    if t % k == 0:
      assert_trees_close(s_a.mu, s_b.inner_opt_state.mu)


def test_one_buffer_even_with_accumulation():
  params = make_params(5)
  n = sum(x.size for x in jax.tree.leaves(params))
  nbytes = lambda s: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(s))
  assert nbytes(optim.tiger(accum_steps=4).init(params)) == 4 * n + 4
  # MultiSteps keeps a gradient accumulator on top of Lion's momentum.
  assert nbytes(optax.MultiSteps(optim.lion(1e-3), 4).init(params)) > 8 * n


def test_bf16_momentum_dtype_stable_and_nonfinite_skip():
  params = make_params(6)
  tx = optim.tiger(mu_dtype="bfloat16", accum_steps=2, skip_nonfinite=True,
                   rms_lr_scaling=True)
  grads = grad_seq(params, 4, seed=7)
  grads[1]["dense"]["kernel"][0, 0] = np.nan
  out = run(tx, params, grads)
  for u, p, s in out:
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(
        s.inner_state.mu))
    assert all(a.dtype == b.dtype for a, b in zip(jax.tree.leaves(u),
                                                  jax.tree.leaves(p)))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(p))
  assert int(optim.num_skipped_steps(out[-1][2])) == 1
  # skipped micro-step: state kept, so 3 micro-steps counted
  assert int(out[-1][2].inner_state.count) == 3


def test_sharded_equals_single_device():
  """Sharding changes reduction order only (RMS over a sharded tensor): compared in float64."""
  with float64():
    _sharded_equals_single_device()


def _sharded_equals_single_device():
  mesh = jax.make_mesh((4, 2), ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  P = jax.sharding.PartitionSpec
  r = np.random.RandomState(8)
  params = {"embedding": r.randn(16, 8), "kernel": r.randn(8, 4),
            "bias": r.randn(4)}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
  shard = {"embedding": P("data", "model"), "kernel": P("model", "data"),
           "bias": P()}
  shard = jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh, s), shard)
  grads = grad_seq(params, 4, seed=9, dtype=np.float64)
  tx = optim.tiger(1e-2, rms_lr_scaling=True, accum_steps=2)

  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  p1, s1 = params, tx.init(params)
  p8 = jax.device_put(params, shard)
  s8 = jax.jit(tx.init)(p8)
  f1, f8 = jax.jit(step), jax.jit(step, donate_argnums=(0, 1))
  for g in grads:
    p1, s1 = f1(p1, s1, g)
    p8, s8 = f8(p8, s8, jax.device_put(g, shard))
  assert_trees_close((p8, s8), (p1, s1))
  assert p8["embedding"].sharding.is_equivalent_to(shard["embedding"], 2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(beta=1.0), "beta"),
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(accum_steps=0), "accum_steps"),
    (dict(accum_steps=2.5), "accum_steps"),
    (dict(embedding_pattern="(["), "regular expression"),
    (dict(mu_dtype="int8"), "mu_dtype"),
])
def test_validation(kwargs, match):
  with pytest.raises(ValueError, match=match):
    optim.tiger(**kwargs)
