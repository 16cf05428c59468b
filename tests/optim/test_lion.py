"""Lion vs a float64 NumPy transcription of the paper, vs optax.lion, and its extras."""
import functools
import math

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from kexue_jax import optim
from tests.helpers import assert_trees_close, float64

B1, B2 = 0.9, 0.99


def make_params(seed=0, dtype=jnp.float32):
  """Nested, transformer-shaped tree: embedding, kernels, biases, norm scale, list."""
  r = np.random.RandomState(seed)
  shapes = {
      "embed": {"embedding": (11, 6)},
      "block": {"dense": {"kernel": (6, 5), "bias": (5,)},
                "norm": {"scale": (6,)}},
      "layers": [{"w": (5, 4)}, {"w": (4, 3), "b": (3,)}],
  }
  return jax.tree.map(lambda s: jnp.asarray(r.randn(*s), dtype), shapes,
                      is_leaf=lambda x: isinstance(x, tuple))


# Written out by hand (not via decay_mask) for the reference.
HAND_MASK = {
    "embed": {"embedding": False},  # decay_embeddings=False below
    "block": {"dense": {"kernel": True, "bias": False},
              "norm": {"scale": False}},
    "layers": [{"w": True}, {"w": True, "b": False}],
}


def grad_seq(params, steps, seed=1, dtype=np.float32):
  r = np.random.RandomState(seed)
  out = []
  for t in range(steps):
    g = jax.tree.map(lambda p: r.randn(*p.shape).astype(dtype), params)
    if t < 3:  # exact zeros first: c = 0 -> sign(0) = 0, only the decay acts
      g["block"]["norm"]["scale"] = np.zeros_like(g["block"]["norm"]["scale"])
    out.append(g)
  return out


# Schedules written twice: jnp (for the optimizer) and float64 NumPy (reference).
def lr_jnp(t):
  return 0.01 * (0.5 + 0.5 * jnp.cos(jnp.pi * t / 50.0))


def lr_np(t):
  return 0.01 * (0.5 + 0.5 * math.cos(math.pi * t / 50.0))


def wd_jnp(t):
  return 0.5 + 0.01 * t


def wd_np(t):
  return 0.5 + 0.01 * t


def numpy_lion(params, grads, lr, wd, mask, b1, b2, coupling="lr", peak=None,
               cautious=False, cautious_eps=1e-3):
  """Chen et al. 2023, Program 1, line by line, float64. Returns per-step
  (sign vector, params, momentum)."""
  theta = [np.asarray(p, np.float64) for p in jax.tree.leaves(params)]
  mask_l = jax.tree.leaves(mask)
  m = [np.zeros_like(x) for x in theta]
  history = []
  for t, g_tree in enumerate(grads):
    g = [np.asarray(x, np.float64) for x in jax.tree.leaves(g_tree)]
    signs = []
    for i in range(len(theta)):
      c = b1 * m[i] + (1 - b1) * g[i]
      u = np.sign(c)
      if cautious:  # Liang et al. 2024: phi = 1[u*g > 0], u * phi / max(mean(phi), eps)
        phi = (u * g[i] > 0).astype(np.float64)
        u = u * phi / max(phi.mean(), cautious_eps)
      signs.append(u)
      decay = wd(t) * theta[i] if mask_l[i] else 0.0
      if coupling == "lr":
        theta[i] = theta[i] - lr(t) * (u + decay)
      elif coupling == "schedule":
        theta[i] = theta[i] - lr(t) * u - lr(t) / peak * decay
      else:
        theta[i] = theta[i] - lr(t) * u - decay
      m[i] = b2 * m[i] + (1 - b2) * g[i]
    history.append(([s.copy() for s in signs], [x.copy() for x in theta],
                    [x.copy() for x in m]))
  return history


def run_tx(tx, params, grads, direction_tx=None):
  """Runs tx; also returns the raw direction of `direction_tx` on the same
  gradients (for exact sign comparison)."""
  update = jax.jit(tx.update)
  state = tx.init(params)
  dstate = direction_tx.init(params) if direction_tx else None
  dupdate = jax.jit(direction_tx.update) if direction_tx else None
  history = []
  for g in grads:
    g = jax.tree.map(jnp.asarray, g)
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    d = None
    if direction_tx:
      d, dstate = dupdate(g, dstate, params)
    history.append((d, params, state))
  return history


@pytest.mark.parametrize("coupling", ["lr", "schedule", "none"])
def test_matches_numpy_paper_reference(coupling):
  params = make_params()
  grads = grad_seq(params, 40)
  mask = functools.partial(optim.decay_mask, decay_embeddings=False)
  assert optim.decay_mask(params, decay_embeddings=False) == HAND_MASK
  peak = 0.02 if coupling == "schedule" else None
  tx = optim.lion(lr_jnp, B1, B2, weight_decay=wd_jnp, mask=mask,
                  wd_coupling=coupling, peak_learning_rate=peak)
  ours = run_tx(tx, params, grads, direction_tx=optim.scale_by_lion(B1, B2))
  ref = numpy_lion(params, grads, lr_np, wd_np, HAND_MASK, B1, B2, coupling,
                   peak)
  for (d, p, s), (r_sign, r_theta, r_m) in zip(ours, ref):
    for a, b in zip(jax.tree.leaves(d), r_sign):
      np.testing.assert_array_equal(np.asarray(a), b)  # sign vectors exact
    for a, b in zip(jax.tree.leaves(p), r_theta):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
    for a, b in zip(jax.tree.leaves(s[0].mu), r_m):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # The zero-gradient leaf: sign(0) = 0 on step 1, so only the decay moved it
  # (not decayed here), i.e. it is unchanged.
  np.testing.assert_array_equal(
      ours[0][1]["block"]["norm"]["scale"], params["block"]["norm"]["scale"])


def test_cautious_matches_numpy_reference():
  params = make_params(3)
  grads = grad_seq(params, 20, seed=4)
  b1, b2 = 0.98, 0.9  # momentum-dominated blend: many sign disagreements
  tx = optim.lion(0.01, b1, b2, weight_decay=0.3, mask=HAND_MASK,
                  cautious=True)
  ours = run_tx(tx, params, grads,
                direction_tx=optim.scale_by_lion(b1, b2, cautious=True))
  ref = numpy_lion(params, grads, lambda t: 0.01, lambda t: 0.3, HAND_MASK,
                   b1, b2, cautious=True)
  for (d, p, _), (r_u, r_theta, _) in zip(ours, ref):
    for a, b in zip(jax.tree.leaves(d), r_u):
      np.testing.assert_allclose(a, b, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(p), r_theta):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6)
  # Some but not all entries were masked (the test exercises the rescale).
  frac = np.mean([np.mean(x != 0) for x in ref[-1][0]])
  assert 0.2 < frac < 0.95


def test_cautious_with_agreeing_gradients_is_plain_lion():
  params = make_params(5)
  r = np.random.RandomState(6)
  signs = jax.tree.map(lambda p: np.sign(r.randn(*p.shape)), params)
  # Constant sign per element, random magnitudes: sign(c_t) = sign(g_t) always.
  grads = [jax.tree.map(lambda s: (s * (0.1 + r.rand(*s.shape))).astype(
      np.float32), signs) for _ in range(10)]
  plain = run_tx(optim.lion(0.01, weight_decay=0.1), params, grads)
  caut = run_tx(optim.lion(0.01, weight_decay=0.1, cautious=True), params,
                grads)
  for (_, a, sa), (_, b, sb) in zip(plain, caut):
    jax.tree.map(np.testing.assert_array_equal, a, b)
    jax.tree.map(np.testing.assert_array_equal, sa, sb)


# ----------------------------------------------------------- optax parity
PARITY_CASES = [
    dict(),
    dict(weight_decay=0.0, mu_dtype=jnp.float32),
    dict(lr=optax.linear_schedule(0.02, 0.001, 5),
         weight_decay=optax.linear_schedule(0.1, 0.3, 5)),
    dict(mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
         weight_decay=optax.constant_schedule(0.2)),
    dict(b1=0.95, b2=0.98, mask=HAND_MASK),
    dict(mode="smooth", smooth_beta=30.0),
    dict(mode="refined"),
    # With any bf16 operand optax rounds the products `b·m`, `(1-b)·g` to
    # bf16 before adding; we compute in f32 and round once at the end.
    dict(mu_dtype=jnp.bfloat16),
    dict(mu_dtype=jnp.float32, pdtype=jnp.bfloat16),
    dict(mu_dtype=jnp.bfloat16, pdtype=jnp.bfloat16),
    dict(pdtype=jnp.bfloat16),
]


def assert_close_parity(a, b, bf16):
  a = np.asarray(a, np.float32)
  b = np.asarray(jnp.asarray(b).astype(a.dtype) if not bf16 else b, np.float32)
  if not bf16:  # same f32 arithmetic as optax, then cast to the param dtype
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
  else:  # two bf16 roundings (2^-8 relative each) of summands <= max|b|
    np.testing.assert_allclose(a, b, rtol=2.0**-7,
                               atol=2.0**-7 * float(np.max(np.abs(b))))


@pytest.mark.parametrize("case", PARITY_CASES,
                         ids=lambda c: "-".join(sorted(c)) or "defaults")
def test_parity_with_optax(case):
  case = dict(case)
  lr = case.pop("lr", 0.01)
  pdtype = case.pop("pdtype", jnp.float32)
  mode = case.pop("mode", None)
  smooth_beta = case.pop("smooth_beta", 1.0)
  params = make_params(7, pdtype)
  grads = grad_seq(params, 4, seed=8)
  if mode is None:
    theirs = optax.lion(lr, **case)
    ours = optim.lion(lr, **case)
  else:  # optax exposes the modes on scale_by_lion only
    theirs = optax.chain(
        optax.scale_by_lion(mode=mode, smooth_beta=smooth_beta),
        optax.add_decayed_weights(1e-3), optax.scale_by_learning_rate(lr))
    ours = optim.lion(lr, mode=mode, smooth_beta=smooth_beta)
  s_theirs, s_ours = theirs.init(params), ours.init(params)
  assert jax.tree.structure(s_ours) == jax.tree.structure(s_theirs)
  jax.tree.map(lambda a, b: (a.dtype == b.dtype) or pytest.fail("dtype"),
               s_ours, s_theirs)
  upd_t, upd_o = jax.jit(theirs.update), jax.jit(ours.update)
  for g in grads:  # our update evaluated on optax's own state and params
    g = jax.tree.map(lambda x: jnp.asarray(x, pdtype), g)
    u_t, s_next = upd_t(g, s_theirs, params)
    u_o, s_o = upd_o(g, s_theirs, params)
    assert jax.tree.structure(s_o) == jax.tree.structure(s_next)
    jax.tree.map(lambda a, p: (a.dtype == p.dtype) or pytest.fail("dtype"),
                 u_o, params)
    bf16 = pdtype == jnp.bfloat16 or case.get("mu_dtype") == jnp.bfloat16
    jax.tree.map(lambda a, b: assert_close_parity(a, b, bf16), s_o, s_next)
    b1 = case.get("b1", B1)
    for a, b, gl, ml in zip(*map(jax.tree.leaves,
                                 (u_o, u_t, g, s_theirs[0].mu))):
      if bf16:  # where sign(c) is undetermined at bf16 precision, skip
        g64, m64 = np.asarray(gl, np.float64), np.asarray(ml, np.float64)
        c64 = (1 - b1) * g64 + b1 * m64
        ok = np.abs(c64) >= 2.0**-7 * (np.abs((1 - b1) * g64) +
                                       np.abs(b1 * m64))
        assert ok.mean() > 0.9
        a, b = np.asarray(a, np.float32)[ok], np.asarray(b, np.float32)[ok]
      assert_close_parity(a, b, bf16)
    params = optax.apply_updates(params, u_t)
    s_theirs = s_next


def test_optax_checkpoint_restores_into_ours():
  """Two implementations of the same update: compared in float64 (see tests/helpers.float64)."""
  with float64():
    params = make_params(11, jnp.float64)
    grads = grad_seq(params, 6, seed=12, dtype=np.float64)
    sched = optax.cosine_decay_schedule(0.01, 10)
    theirs = optax.lion(sched, weight_decay=0.1, mask=HAND_MASK)
    ours = optim.lion(sched, weight_decay=0.1, mask=HAND_MASK)
    p_t, s_t = params, theirs.init(params)
    for g in grads[:3]:
      u, s_t = theirs.update(g, s_t, p_t)
      p_t = optax.apply_updates(p_t, u)
    blob = flax.serialization.to_bytes(s_t)  # a checkpoint written with optax
    s_o = flax.serialization.from_bytes(ours.init(params), blob)
    p_o = p_t
    for g in grads[3:]:
      u, s_t = theirs.update(g, s_t, p_t)
      p_t = optax.apply_updates(p_t, u)
      u, s_o = ours.update(g, s_o, p_o)
      p_o = optax.apply_updates(p_o, u)
    assert p_o["embed"]["embedding"].dtype == jnp.float64
    assert_trees_close((p_o, s_o), (p_t, s_t))


def test_weight_decay_mask_alias():
  params = make_params(13)
  g = grad_seq(params, 1)[0]
  a = optim.lion(0.01, weight_decay=0.5, mask=HAND_MASK)
  b = optim.lion(0.01, weight_decay=0.5, weight_decay_mask=HAND_MASK)
  ua, _ = a.update(g, a.init(params), params)
  ub, _ = b.update(g, b.init(params), params)
  jax.tree.map(np.testing.assert_array_equal, ua, ub)
  assert jax.tree.structure(a.init(params)) == jax.tree.structure(
      b.init(params))


# ------------------------------------------------------------ dtypes / scan
@pytest.mark.parametrize("pdtype,gdtype,mu_dtype", [
    (jnp.float32, jnp.float32, jnp.bfloat16),
    (jnp.bfloat16, jnp.float32, None),  # optax.lion's mu would drift to f32 here
])
def test_momentum_dtype_stable_in_scan_and_donated_jit(pdtype, gdtype,
                                                       mu_dtype):
  params = make_params(14, pdtype)
  tx = optim.lion(optax.cosine_decay_schedule(1e-2, 20), mu_dtype=mu_dtype,
                  weight_decay=0.1)
  state = tx.init(params)
  dtypes = jax.tree.map(lambda x: x.dtype, state)
  mu_dt = jnp.dtype(mu_dtype or pdtype)
  r = np.random.RandomState(21)
  gs = jax.tree.map(lambda x: jnp.asarray(r.randn(10, *x.shape), gdtype),
                    params)

  def step(carry, g):
    p, s = carry
    u, s = tx.update(g, s, p)
    assert all(a.dtype == b.dtype for a, b in zip(jax.tree.leaves(u),
                                                  jax.tree.leaves(p)))
    return (optax.apply_updates(p, u), s), None

  (p_end, s_end), _ = jax.lax.scan(step, (params, state), gs)
  assert all(m.dtype == mu_dt for m in jax.tree.leaves(s_end[0].mu))
  assert all(p.dtype == pdtype for p in jax.tree.leaves(p_end))
  assert int(s_end[0].count) == 10
  donated = jax.jit(lambda c, g: step(c, g)[0], donate_argnums=(0,))
  carry = (params, state)
  for t in range(2):
    carry = donated(carry, jax.tree.map(lambda x: x[t], gs))
  assert jax.tree.map(lambda x: x.dtype, carry[1]) == dtypes


# ------------------------------------------------------------- accumulation
def test_multisteps_equals_one_step_on_concatenated_batch():
  """Equal in exact arithmetic (the mean of k micro-batch gradients is the big batch's); compared in float64."""
  with float64():
    _multisteps_equals_one_step()


def _multisteps_equals_one_step():
  r = np.random.RandomState(15)
  k, micro = 4, 8
  x = r.randn(3, k * micro, 6)
  y = r.randn(3, k * micro, 2)
  params = {"w": jnp.asarray(r.randn(6, 2), jnp.float64),
            "b": jnp.zeros((2,), jnp.float64)}

  def loss(p, xb, yb):  # a mean over examples
    return jnp.mean(jnp.sum((xb @ p["w"] + p["b"] - yb) ** 2, -1))

  big = optim.lion(1e-2, weight_decay=0.2)
  acc = optax.MultiSteps(optim.lion(1e-2, weight_decay=0.2), k, accumulator_dtype=jnp.float64)

  @jax.jit
  def big_step(p, s, xb, yb):
    u, s = big.update(jax.grad(loss)(p, xb, yb), s, p)
    return optax.apply_updates(p, u), s

  @jax.jit
  def acc_step(p, s, xb, yb):
    u, s = acc.update(jax.grad(loss)(p, xb, yb), s, p)
    return u, s

  p_big, s_big = params, big.init(params)
  p_acc, s_acc = params, acc.init(params)
  for step in range(3):
    p_big, s_big = big_step(p_big, s_big, x[step], y[step])
    for i in range(k):
      sl = slice(i * micro, (i + 1) * micro)
      u, s_acc = acc_step(p_acc, s_acc, x[step, sl], y[step, sl])
      if i < k - 1:
        assert all(float(jnp.max(jnp.abs(v))) == 0 for v in jax.tree.leaves(u))
      p_acc = optax.apply_updates(p_acc, u)
    assert_trees_close(p_acc, p_big)
    assert_trees_close(s_acc.inner_opt_state[0].mu, s_big[0].mu)


# ----------------------------------------------------- constrained optimum
def test_box_property_with_constant_sign_gradients():
  """Lion with decoupled decay solves min f s.t. |θ|_inf <= 1/λ (Chen et al.,
  arXiv 2310.05898): with g of constant sign, θ -> -sign(g)/λ, never outside."""
  lam, lr = 2.0, 0.05
  r = np.random.RandomState(16)
  theta0 = {"w": jnp.asarray(r.uniform(-0.4, 0.4, (4, 5)), jnp.float32)}
  s = np.sign(r.randn(4, 5)).astype(np.float32)
  tx = optim.lion(lr, weight_decay=lam)
  p, state = theta0, tx.init(theta0)
  update = jax.jit(tx.update)
  for _ in range(300):
    g = {"w": jnp.asarray(s * r.uniform(0.1, 3.0, s.shape), jnp.float32)}
    u, state = update(g, state, p)
    p = optax.apply_updates(p, u)
    assert float(jnp.max(jnp.abs(p["w"]))) <= 1 / lam * (1 + 1e-6)
  # θ + s/λ shrinks by (1 - lr·λ) per step once sign(c) = sign(g).
  np.testing.assert_allclose(p["w"], -s / lam, atol=1e-5)


# -------------------------------------------------------------------- memory
def _bytes(tree, min_ndim=0):
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)
             if x.ndim >= min_ndim)


@pytest.mark.parametrize("pdtype,mu_dtype,ratio", [
    (jnp.float32, None, 0.5), (jnp.bfloat16, None, 0.5),
    (jnp.float32, jnp.bfloat16, 0.25)])
def test_state_bytes_vs_adamw(pdtype, mu_dtype, ratio):
  """AdamW keeps mu and nu in the param dtype (f32 here unless bf16 params)."""
  params = make_params(17, pdtype)
  n = sum(x.size for x in jax.tree.leaves(params))
  lion_s = optim.lion(1e-3, mu_dtype=mu_dtype).init(params)
  adam_s = optax.adamw(1e-3).init(params)
  # Parameter-shaped buffers: exactly the ratio.
  assert _bytes(lion_s, 1) == ratio * _bytes(adam_s, 1)
  # Totals: P·sizeof(mu) + one int32 count, vs 2·P·sizeof(param) + count.
  mu_size = jnp.dtype(mu_dtype or pdtype).itemsize
  assert _bytes(lion_s) == n * mu_size + 4
  assert _bytes(adam_s) == 2 * n * jnp.dtype(pdtype).itemsize + 4


# ------------------------------------------------------------------ sharding
def test_sharded_run_equals_single_device():
  """Sharding changes reduction order only: compared in float64 (bfloat16 momentum rounds the same values)."""
  with float64():
    _sharded_run_equals_single_device()


def _sharded_run_equals_single_device():
  assert jax.device_count() >= 8
  mesh = jax.make_mesh((4, 2), ("data", "model"),
                       axis_types=(jax.sharding.AxisType.Auto,) * 2)
  P = jax.sharding.PartitionSpec
  r = np.random.RandomState(18)
  params = {"w1": r.randn(16, 8), "w2": r.randn(8, 4), "b": r.randn(8),
            "scale": r.randn(4)}
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
  specs = {"w1": P("data", "model"), "w2": P("model", None), "b": P("data"),
           "scale": P()}
  shardings = jax.tree.map(lambda s: jax.sharding.NamedSharding(mesh, s),
                           specs)
  grads = [jax.tree.map(lambda x: jnp.asarray(r.randn(*x.shape), jnp.float64),
                        params) for _ in range(6)]
  tx = optim.lion(optax.cosine_decay_schedule(1e-2, 10), weight_decay=0.3,
                  mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
                  cautious=True, mu_dtype=jnp.bfloat16)

  def step(p, s, g):
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s

  # single device
  p1, s1 = params, tx.init(params)
  f1 = jax.jit(step)
  for g in grads:
    p1, s1 = f1(p1, s1, g)
  # sharded
  p8 = jax.device_put(params, shardings)
  s8 = jax.jit(tx.init)(p8)
  f8 = jax.jit(step, donate_argnums=(0, 1))
  for g in grads:
    p8, s8 = f8(p8, s8, jax.device_put(g, shardings))
  assert_trees_close((p8, s8), (p1, s1))
  assert p8["w1"].sharding.is_equivalent_to(shardings["w1"], 2)
  assert s8[0].mu["w1"].sharding.is_equivalent_to(shardings["w1"], 2)


# ------------------------------------------------------------ nonfinite guard
def test_skip_nonfinite_skips_and_counts():
  with float64():  # guarded vs plain Lion: two programs, compared in float64
    _skip_nonfinite_skips_and_counts()


def _skip_nonfinite_skips_and_counts():
  params = make_params(19, jnp.float64)
  grads = grad_seq(params, 6, seed=20, dtype=np.float64)
  grads[2]["layers"][0]["w"][1, 1] = np.nan
  grads[4]["embed"]["embedding"][0, 0] = np.inf
  sched = optax.linear_schedule(0.01, 0.0, 10)
  guarded = optim.lion(sched, weight_decay=0.1, skip_nonfinite=True)
  plain = optim.lion(sched, weight_decay=0.1)
  update, update_ref = jax.jit(guarded.update), jax.jit(plain.update)
  p, s = params, guarded.init(params)
  p_ref, s_ref = params, plain.init(params)
  for t, g in enumerate(grads):
    u, s = update(g, s, p)
    p = optax.apply_updates(p, u)
    if t in (2, 4):  # skipped: zero update, state (counts included) kept
      assert all(float(jnp.max(jnp.abs(x))) == 0 for x in jax.tree.leaves(u))
    else:  # same as plain Lion on the finite steps only
      u_ref, s_ref = update_ref(g, s_ref, p_ref)
      p_ref = optax.apply_updates(p_ref, u_ref)
    assert_trees_close((p, s.inner_state), (p_ref, s_ref))
  assert int(optim.num_skipped_steps(s)) == 2
  assert s.num_skipped.dtype == jnp.int32
  # found through wrappers too
  ms = optax.MultiSteps(guarded, 2).init(params)
  assert int(optim.num_skipped_steps(ms)) == 0
  with pytest.raises(ValueError, match="skip_nonfinite=True"):
    optim.num_skipped_steps(plain.init(params))


# --------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs,match", [
    (dict(b1=1.0), "b1"),
    (dict(b2=-0.1), "b2"),
    (dict(learning_rate=-1e-3), "learning_rate"),
    (dict(weight_decay=-0.1), "weight_decay"),
])
def test_what_optax_accepts_warns_but_builds(kwargs, match):
  """optax.lion accepts these; ours too, with a warning naming the argument."""
  kwargs = {"learning_rate": 1e-3, **kwargs}
  params = make_params()
  g = grad_seq(params, 1)[0]
  theirs = optax.lion(**kwargs)
  with pytest.warns(UserWarning, match=match):
    ours = optim.lion(**kwargs)
  u_t, _ = theirs.update(g, theirs.init(params), params)
  u_o, _ = ours.update(g, ours.init(params), params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u_o,
               u_t)


@pytest.mark.parametrize("kwargs,match", [
    (dict(wd_coupling="adamw"), "wd_coupling"),
    (dict(mode="soft"), "mode"),
    (dict(mu_dtype="int32"), "mu_dtype"),
    (dict(mu_dtype="float17"), "mu_dtype"),
    (dict(mask=HAND_MASK, weight_decay_mask=HAND_MASK), "not both"),
    (dict(learning_rate=optax.constant_schedule(1e-3), wd_coupling="schedule"),
     "peak_learning_rate"),
    (dict(peak_learning_rate=1e-3), "only used with"),
    (dict(cautious_eps=0.0), "cautious_eps"),
    (dict(learning_rate=None, wd_coupling="none"), "needs learning_rate"),
    (dict(lazy_embeddings=True, embedding_pattern="(["), "regular expression"),
])
def test_validation(kwargs, match):
  kwargs = {"learning_rate": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=match):
    optim.lion(**kwargs)


def test_scale_by_lion_validation_and_no_params_error():
  with pytest.warns(UserWarning, match="b1"):
    optim.scale_by_lion(b1=1.5)
  with pytest.raises(ValueError, match="cautious_eps"):
    optim.scale_by_lion(cautious=True, cautious_eps=-1.0)
  tx = optim.lion(1e-3)
  p = make_params()
  with pytest.raises(ValueError, match="params"):
    tx.update(p, tx.init(p))
  # no decay -> no params needed
  tx0 = optim.lion(1e-3, weight_decay=0.0)
  u, _ = tx0.update(p, tx0.init(p))
  assert jax.tree.structure(u) == jax.tree.structure(p)


def test_schedule_coupling_infers_peak_from_constant_lr():
  """wd_coupling="schedule" with a constant lr: η_t/η_peak = 1, so the decay is
  the raw λ per step, i.e. the same as wd_coupling="none"."""
  params = make_params(22)
  g = grad_seq(params, 1, seed=23)[0]
  a = optim.lion(0.01, weight_decay=0.2, wd_coupling="schedule")
  b = optim.lion(0.01, weight_decay=0.2, wd_coupling="none")
  ua, _ = a.update(g, a.init(params), params)
  ub, _ = b.update(g, b.init(params), params)
  jax.tree.map(np.testing.assert_array_equal, ua, ub)
  np.testing.assert_allclose(  # zero-gradient leaf: only the decay, λ·θ
      ua["block"]["norm"]["scale"], -0.2 * params["block"]["norm"]["scale"],
      rtol=1e-6)


def test_decay_mask_patterns():
  params = make_params(24)
  m = optim.decay_mask(params, exclude_pattern=r"layers/1")
  assert m["layers"][1] == {"w": False, "b": False}
  assert m["layers"][0]["w"] and m["embed"]["embedding"]
  with pytest.raises(ValueError, match="regular expression"):
    optim.decay_mask(params, exclude_pattern="(")
