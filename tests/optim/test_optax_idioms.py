"""Our Lion and optax.lion run through the same checks, one parametrisation.

Written by us, mirroring what optax's own lion-related tests check (optax
v0.2.8: `_src/alias_test.py`, `_src/transform_test.py`, `_src/sharding_test.py`,
`contrib/_common_test.py`): convergence on the parabola and Rosenbrock targets
with no recompilation, extra update arguments, `inject_hyperparams`, update
dtype, state shape/dtype stability under `lax.cond`, `MultiSteps`, the
`scale_by_lion` modes, abstract and explicitly sharded inits, and the contrib
wrappers (`mechanize`, learning-rate schedules). Plus what a drop-in needs
beyond that: the injected state has optax's keys, restores both ways, and
edits to it under jit give optax's trajectory; `b1=1.0` and
`learning_rate=None` behave as in optax.
"""
import functools
import warnings

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kexue_jax import optim

LIONS = {"optax": optax.lion, "kexue": optim.lion}
SCALERS = {"optax": optax.scale_by_lion, "kexue": optim.scale_by_lion}
lions = pytest.mark.parametrize("lion", list(LIONS.values()), ids=list(LIONS))
scalers = pytest.mark.parametrize("scale_by_lion", list(SCALERS.values()),
                                  ids=list(SCALERS))


def parabola(dtype):
  init, final = (jnp.array([-1.0, 10.0, 1.0], dtype),
                 jnp.array([1.0, -1.0, 1.0], dtype))
  return init, final, lambda p: jnp.sum(jnp.square(p - final))


def rosenbrock(dtype):
  a, b = 1.0, 100.0
  init, final = jnp.array([0.0, 0.0], dtype), jnp.array([a, a * a], dtype)
  return init, final, lambda p: (a - p[0]) ** 2 + b * (p[1] - p[0] ** 2) ** 2


def matrix_parabola(dtype):
  init = jnp.zeros((2, 2), dtype)
  final = jnp.array([[3.0, -2.0], [1.0, 4.0]], dtype)
  return init, final, lambda p: jnp.sum(jnp.square(p - final))


def mixed_target(dtype):
  final = (jnp.array([1.0, -1.0, 2.0], dtype),
           jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype))
  init = (jnp.zeros((3,), dtype), jnp.zeros((2, 2), dtype))
  return init, final, lambda p: sum(jnp.sum(jnp.square(x - y))
                                    for x, y in zip(p, final))


def minimise(tx, target, steps, **update_kwargs):
  """`steps` jitted steps in a lax.scan; returns (final params, target's final,
  compiled step cache size after two direct calls)."""
  params, final, objective = target(jnp.float32)

  @jax.jit
  def step(params, state):
    grads = jax.grad(objective)(params)
    updates, state = tx.update(grads, state, params, **update_kwargs)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  state = optax.tree.map_params(tx, lambda v: v, state)  # tree_map_params works
  p1, s1 = step(params, state)
  step(p1, s1)
  cache = step._cache_size()  # pylint: disable=protected-access
  (params, _), _ = jax.lax.scan(lambda c, _: (step(*c), None),
                                (params, state), length=steps)
  return params, final, cache


# ------------------------------------------------------------ alias_test.py
@lions
@pytest.mark.parametrize("target", [parabola, rosenbrock])
def test_optimization(lion, target):
  params, final, cache = minimise(lion(1e-2, weight_decay=1e-4), target, 10_000)
  assert cache == 1, "the update recompiled on its second call"
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=3e-2,
                                                       atol=3e-2), params, final)


@lions
def test_accepts_extra_args(lion):
  tx = lion(1e-2, weight_decay=1e-4)
  params, _, objective = rosenbrock(jnp.float32)
  state = tx.init(params)

  @jax.jit
  def step(params, state):
    g = jax.grad(objective)(params)
    u, state = tx.update(g, state, params, unexpected_extra_arg=1)
    return optax.apply_updates(params, u), state

  for _ in range(2):
    params, state = step(params, state)
  assert bool(jnp.all(jnp.isfinite(params)))


INJECT_PARAMS = [-jnp.ones((2, 3)), jnp.ones((2, 5, 2))]
INJECT_GRADS = [jnp.ones((2, 3)), -jnp.ones((2, 5, 2))]


@lions
def test_can_be_wrapped_in_inject_hyperparams(lion):
  kw = dict(learning_rate=1e-2, weight_decay=1e-4)
  tx, tx_inject = lion(**kw), optax.inject_hyperparams(lion)(**kw)
  u, s = jax.jit(tx.update)(INJECT_GRADS, jax.jit(tx.init)(INJECT_PARAMS),
                            INJECT_PARAMS)
  u_i, s_i = jax.jit(tx_inject.update)(
      INJECT_GRADS, jax.jit(tx_inject.init)(INJECT_PARAMS), INJECT_PARAMS)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3), u_i, u)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4),
               s_i.inner_state, s)


@lions
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_preserve_dtype(lion, dtype):
  tx = lion(1e-2, weight_decay=1e-4)
  params = jnp.array([1.0, 2.0], dtype)
  grads = jax.grad(lambda x: jnp.sum(x ** 2))(params)
  u, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
  assert u.dtype == grads.dtype


@lions
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_state_shape_dtype_shard_stability(lion, dtype):
  with jax.enable_x64(dtype == "float64"):
    dtype = jnp.dtype(dtype)
    tx = lion(1e-2, weight_decay=1e-4)
    params, _, objective = parabola(dtype)

    @jax.jit
    def step(params, state):
      g = jax.grad(objective)(params)
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      u, state = jax.lax.cond(cond, lambda: tx.update(g, state, params),
                              lambda: (params, state))
      return optax.apply_updates(params, u), state

    state = tx.init(params)
    for _ in range(2):
      params, new_state = step(params, state)
      assert params.dtype == dtype
      assert (jax.tree.map(lambda x: (x.shape, x.dtype), new_state)
              == jax.tree.map(lambda x: (x.shape, x.dtype), state))
      state = new_state


@lions
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_gradient_accumulation(lion, dtype):
  tx = optax.MultiSteps(lion(1e-2, weight_decay=1e-4), every_k_schedule=4)
  params = jnp.array([1.0, 2.0], dtype)
  grads = jax.grad(lambda x: jnp.sum(x ** 2))(params)
  u, _ = jax.jit(tx.update)(grads, jax.jit(tx.init)(params), params)
  np.testing.assert_array_equal(u, jnp.zeros_like(grads))


# -------------------------------------------------------- transform_test.py
@scalers
def test_scaler_finite_and_shaped(scale_by_lion):
  params = (jnp.array([1.0, 2.0]), jnp.array([3.0, 4.0]))
  g = (jnp.array([500.0, 5.0]), jnp.array([300.0, 3.0]))
  tx = scale_by_lion()
  state = jax.jit(tx.init)(params)
  u, state = jax.jit(tx.update)(g, state, params)
  for x in jax.tree.leaves((params, u, state)):
    assert bool(jnp.all(jnp.isfinite(x)))
  assert jax.tree.map(jnp.shape, u) == jax.tree.map(jnp.shape, params)


@scalers
@pytest.mark.parametrize("mode", ["hard", "smooth", "refined"])
def test_lion_modes_variants(scale_by_lion, mode):
  g = np.array([0.2, -2.0, 0.5, -0.8])
  b1, beta = 0.5, 2.0
  tx = scale_by_lion(b1=b1, b2=0.9, mode=mode, smooth_beta=beta)
  u, _ = tx.update(jnp.asarray(g, jnp.float32),
                   tx.init(jnp.asarray(g, jnp.float32)))
  x = (1.0 - b1) * g  # m_0 = 0; float64 reference
  expected = {"hard": np.sign(x), "smooth": np.tanh(beta * x),
              "refined": np.where(np.abs(x) < 1.0, x, np.sign(x))}[mode]
  np.testing.assert_allclose(u, expected, rtol=1e-6)


@scalers
def test_lion_invalid_mode_raises(scale_by_lion):
  g = jnp.array([0.1, -0.2])
  with pytest.raises(ValueError):  # optax at update time, ours at construction
    tx = scale_by_lion(mode="invalid_mode")
    tx.update(g, tx.init(g))


# --------------------------------------------------------- sharding_test.py
@lions
def test_init_with_abstract_input(lion):
  state = lion(1.0).init(jax.ShapeDtypeStruct((2, 4, 8), jnp.float32))
  assert state is not None


def _explicit_mesh_params():
  mesh = jax.make_mesh((8,), ("x",),
                       axis_types=(jax.sharding.AxisType.Explicit,))
  sharding = jax.sharding.NamedSharding(mesh, jax.P(None, "x"))
  return mesh, sharding


@lions
def test_state_sharding_type_init_match_update(lion):
  tx = lion(1.0)
  mesh, sharding = _explicit_mesh_params()
  with jax.set_mesh(mesh):
    params = jnp.zeros((2, 8, 4), jnp.float16, out_sharding=sharding)
    s0 = tx.init(params)
    _, s1 = tx.update(params, s0, params)
    assert jax.tree.map(jax.typeof, s0) == jax.tree.map(jax.typeof, s1)


@lions
def test_state_sharding_type_preserved_with_jit(lion):
  tx = lion(1.0)
  mesh, sharding = _explicit_mesh_params()
  with jax.set_mesh(mesh):
    params = jnp.zeros((2, 8, 4), jnp.float16, out_sharding=sharding)
    s0, s1 = tx.init(params), jax.jit(tx.init)(params)
    assert jax.tree.map(jax.typeof, s0) == jax.tree.map(jax.typeof, s1)
    _, s2 = tx.update(params, s0, params)
    _, s3 = jax.jit(tx.update)(params, s0, params)
    assert jax.tree.map(jax.typeof, s2) == jax.tree.map(jax.typeof, s3)


# ------------------------------------------------------ contrib/_common_test
def mechanized(lion):
  return optax.contrib.mechanize(lion(1.0, b1=0.99), weight_decay=0.0)


@lions
def test_mechanize_accepts_extra_args_without_recompiling(lion):
  tx = mechanized(lion)
  _, _, cache = minimise(tx, rosenbrock, 2, unexpected_extra_arg=1)
  assert cache == 1


@lions
@pytest.mark.parametrize("target", [parabola, rosenbrock, matrix_parabola,
                                    mixed_target])
def test_mechanize_converges(lion, target):
  params, final, _ = minimise(mechanized(lion), target, 30_000)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=3e-2,
                                                       atol=3e-2), params, final)


@lions
def test_mechanize_wraps_in_inject_hyperparams(lion):
  factory = functools.partial(optax.contrib.mechanize, lion(1.0, b1=0.99))
  tx = factory(weight_decay=0.0)
  tx_i = optax.inject_hyperparams(factory, static_args=("num_betas",))(
      weight_decay=0.0)  # as optax's test: num_betas is a shape
  u, s = jax.jit(tx.update)(INJECT_GRADS, jax.jit(tx.init)(INJECT_PARAMS),
                            INJECT_PARAMS)
  u_i, s_i = jax.jit(tx_i.update)(INJECT_GRADS, jax.jit(tx_i.init)(INJECT_PARAMS),
                                  INJECT_PARAMS)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), u_i, u)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-5),
               s_i.inner_state, s)


@lions
def test_accepts_learning_rate_schedule(lion):
  import inspect  # pylint: disable=g-import-not-at-top
  ann = inspect.signature(lion).parameters["learning_rate"].annotation
  assert ann in (optax.ScalarOrSchedule, optax.Schedule)
  p_s = p_c = parabola(jnp.float32)[0]
  objective = parabola(jnp.float32)[2]
  tx_s, tx_c = lion(optax.constant_schedule(1e-3)), lion(1e-3)
  s_s, s_c = tx_s.init(p_s), tx_c.init(p_c)
  for _ in range(10):
    u, s_s = tx_s.update(jax.grad(objective)(p_s), s_s, p_s)
    p_s = optax.apply_updates(p_s, u)
    u, s_c = tx_c.update(jax.grad(objective)(p_c), s_c, p_c)
    p_c = optax.apply_updates(p_c, u)
  np.testing.assert_allclose(p_s, p_c, rtol=1e-6)


# ----------------------------------------- drop-in beyond optax's own tests
def _inject(lion, **kw):
  return optax.inject_hyperparams(lion)(**kw)


def test_injected_state_has_optax_keys_and_extras_only_when_set():
  kw = dict(learning_rate=3e-3, weight_decay=0.1)
  s_o = _inject(optax.lion, **kw).init(INJECT_PARAMS)
  s_k = _inject(optim.lion, **kw).init(INJECT_PARAMS)
  assert set(s_k.hyperparams) == set(s_o.hyperparams) == {
      "learning_rate", "b1", "b2", "weight_decay"}
  assert jax.tree.structure(s_k) == jax.tree.structure(s_o)
  s_x = _inject(optim.lion, cautious=True, cautious_eps=1e-2, **kw).init(
      INJECT_PARAMS)
  assert set(s_x.hyperparams) == set(s_o.hyperparams) | {"cautious_eps"}


@pytest.mark.parametrize("extra", [{}, dict(cautious=True, cautious_eps=1e-2),
                                   dict(mode="smooth", smooth_beta=3.0),
                                   dict(wd_coupling="schedule",
                                        peak_learning_rate=1e-2)],
                         ids=["plain", "cautious", "smooth", "schedule"])
def test_inject_under_jit_every_option(extra):
  """Every numeric option injected and traced: no Python branch on a tracer."""
  tx = _inject(optim.lion, learning_rate=1e-2, weight_decay=0.1, **extra)
  ref = optim.lion(1e-2, weight_decay=0.1, **extra)
  u, _ = jax.jit(tx.update)(INJECT_GRADS, jax.jit(tx.init)(INJECT_PARAMS),
                            INJECT_PARAMS)
  u_r, _ = ref.update(INJECT_GRADS, ref.init(INJECT_PARAMS), INJECT_PARAMS)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u, u_r)


def _trajectory(tx, params, grads, edits):
  """Runs jitted updates; `edits[t]` = hyperparams to set before step t."""
  update = jax.jit(tx.update)
  state = tx.init(params)
  for t, g in enumerate(grads):
    for k, v in edits.get(t, {}).items():
      state.hyperparams[k] = jnp.asarray(v, state.hyperparams[k].dtype)
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
  return params, state


def _tree_problem(steps=12, seed=0):
  r = np.random.RandomState(seed)
  params = {"w": jnp.asarray(r.randn(6, 5), jnp.float32),
            "b": jnp.asarray(r.randn(5), jnp.float32)}
  grads = [jax.tree.map(lambda x: jnp.asarray(r.randn(*x.shape), jnp.float32),
                        params) for _ in range(steps)]
  return params, grads


def test_mid_run_hyperparam_edits_follow_optax():
  params, grads = _tree_problem()
  edits = {4: {"learning_rate": 3e-3}, 8: {"weight_decay": 0.5, "b1": 0.8}}
  kw = dict(learning_rate=1e-2, weight_decay=0.1)
  p_o, s_o = _trajectory(_inject(optax.lion, **kw), params, grads, edits)
  p_k, s_k = _trajectory(_inject(optim.lion, **kw), params, grads, edits)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6,
                                                       atol=1e-7), p_k, p_o)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
               s_k.inner_state, s_o.inner_state)
  # and the edits mattered
  p_n, _ = _trajectory(_inject(optax.lion, **kw), params, grads, {})
  assert not np.allclose(p_n["w"], p_o["w"])


@pytest.mark.parametrize("src,dst", [("optax", "kexue"), ("kexue", "optax")])
def test_injected_checkpoint_restores_both_ways(src, dst):
  params, grads = _tree_problem(8, seed=1)
  kw = dict(learning_rate=1e-2, weight_decay=0.1)
  tx_src, tx_dst = _inject(LIONS[src], **kw), _inject(LIONS[dst], **kw)
  p_mid, s_mid = _trajectory(tx_src, params, grads[:4], {})
  blob = flax.serialization.to_bytes(s_mid)
  restored = flax.serialization.from_bytes(tx_dst.init(params), blob)
  upd = jax.jit(tx_dst.update)
  p_a, s = p_mid, restored
  for g in grads[4:]:
    u, s = upd(g, s, p_a)
    p_a = optax.apply_updates(p_a, u)
  p_b, _ = _trajectory(tx_src, params, grads, {})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6,
                                                       atol=1e-7), p_a, p_b)


@lions
def test_b1_one_accepted(lion):
  """b1 = 1: c_t = m_{t-1}, so the first step has no sign step (m_0 = 0), only
  the decay; later steps follow the momentum alone."""
  params, grads = _tree_problem(3, seed=2)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    tx = lion(0.1, b1=1.0, weight_decay=0.5)
  u, s = tx.update(grads[0], tx.init(params), params)
  jax.tree.map(lambda a, p: np.testing.assert_allclose(
      a, -0.1 * 0.5 * np.asarray(p, np.float64), rtol=1e-6), u, params)
  u, _ = tx.update(grads[1], s, params)
  m1 = jax.tree.map(lambda g: 0.01 * np.asarray(g, np.float64), grads[0])
  jax.tree.map(lambda a, m, p: np.testing.assert_allclose(
      a, -0.1 * (np.sign(m) + 0.5 * np.asarray(p, np.float64)), rtol=1e-6),
               u, m1, params)


@lions
def test_learning_rate_none_in_a_chain(lion):
  params, grads = _tree_problem(5, seed=3)
  chained = optax.chain(lion(None, weight_decay=0.2), optax.scale(-0.01))
  plain = optax.lion(0.01, weight_decay=0.2)
  p_c, p_p = params, params
  s_c, s_p = chained.init(params), plain.init(params)
  for g in grads:
    u, s_c = chained.update(g, s_c, p_c)
    p_c = optax.apply_updates(p_c, u)
    u, s_p = plain.update(g, s_p, p_p)
    p_p = optax.apply_updates(p_p, u)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), p_c,
               p_p)


def test_static_betas_under_inject_match_optax():
  """inject_hyperparams(..., static_args=("b1", "b2")): our fast (folded) path
  under injection; same state as optax's same call, same trajectory."""
  params, grads = _tree_problem(10, seed=4)
  kw = dict(learning_rate=1e-2, weight_decay=0.1)
  inj = lambda f: optax.inject_hyperparams(f, static_args=("b1", "b2"))(**kw)
  edits = {5: {"learning_rate": 2e-3}}
  p_o, s_o = _trajectory(inj(optax.lion), params, grads, edits)
  p_k, s_k = _trajectory(inj(optim.lion), params, grads, edits)
  assert set(s_k.hyperparams) == set(s_o.hyperparams) == {"learning_rate",
                                                          "weight_decay"}
  assert jax.tree.structure(s_k) == jax.tree.structure(s_o)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-7), p_k, p_o)
