"""SimSiam (issue #6): the loss and its gradients against hand-derived float64 references, stop-gradient through
the network, BN synchronisation on 8 devices, Su's toy model, the evaluation functions (kNN, linear probe,
effective rank, BN population statistics), optimizer parameter groups, smoke runs of every config;
issue #15: the mean_view target pass keeps the BN running statistics of the two view passes, the heads' BN
placements (Table 3), the SimCLR reference objective against a NumPy NT-Xent, the grad-ratio curve. The rank
statistics and the held-out probe: tests/evals/test_ssl.py."""
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from tests.helpers import assert_trees_close, load_config
from kexue_jax import checkpoint
from kexue_jax import metrics as metrics_lib
from kexue_jax import optim
from kexue_jax import sharding
from kexue_jax import tasks
from kexue_jax import train
from kexue_jax.evals import ssl
from kexue_jax.tasks import simsiam

CONFIGS = ("configs/simsiam/mnist1d.py", "configs/simsiam/cifar10_resnet18.py")


# ------------------------------------------------------------------------------ NumPy float64 references.


def np_unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_D(p, z):
  """D(p, z) = -<p/|p|, z/|z|> per row."""
  return -(np_unit(p) * np_unit(z)).sum(-1)


def np_dD_dp(p, z):
  """Hand-derived: dD/dp = -(z^ - (p^ . z^) p^) / |p| (and by symmetry dD/dz with p, z swapped)."""
  ph, zh = np_unit(p), np_unit(z)
  return -(zh - (ph * zh).sum(-1, keepdims=True) * ph) / np.linalg.norm(p, axis=-1, keepdims=True)


@pytest.fixture
def vectors():
  rng = np.random.default_rng(0)
  return [rng.normal(size=(6, 5)) for _ in range(4)]  # p1, p2, z1, z2


# ------------------------------------------------------------------------------------------------ The loss.


@pytest.mark.parametrize("stop_gradient", [True, False])
def test_loss_value_matches_numpy(vectors, stop_gradient):
  p1, p2, z1, z2 = vectors
  loss = simsiam.simsiam_loss(*(jnp.asarray(a, jnp.float32) for a in vectors), stop_gradient=stop_gradient)
  ref = 0.5 * np_D(p1, z2).mean() + 0.5 * np_D(p2, z1).mean()
  np.testing.assert_allclose(float(loss), ref, rtol=1e-6)
  np.testing.assert_allclose(simsiam.negative_cosine_B(jnp.asarray(p1), jnp.asarray(p1)), -1.0, rtol=1e-6)


def test_loss_gradients_match_hand_derivation(vectors):
  """With stop-gradient the targets get exactly zero gradient; the predictions get 1/(2B) dD/dp. Without it the
  targets get 1/(2B) dD/dz (hand-derived formula, float64)."""
  p1, p2, z1, z2 = vectors
  b = p1.shape[0]
  args = [jnp.asarray(a, jnp.float32) for a in vectors]
  for sg in (True, False):
    g = jax.grad(lambda *a: simsiam.simsiam_loss(*a, stop_gradient=sg), argnums=(0, 1, 2, 3))(*args)
    assert_trees_close(g[0], np_dD_dp(p1, z2) / (2 * b), rtol=1e-5)
    assert_trees_close(g[1], np_dD_dp(p2, z1) / (2 * b), rtol=1e-5)
    if sg:
      assert not np.any(np.asarray(g[2])) and not np.any(np.asarray(g[3]))  # blocked exactly
    else:
      assert_trees_close(g[2], np_dD_dp(z1, p2) / (2 * b), rtol=1e-5)  # D symmetric in its arguments
      assert_trees_close(g[3], np_dD_dp(z2, p1) / (2 * b), rtol=1e-5)
      assert np.abs(np.asarray(g[3])).max() > 1e-3


def np_nt_xent(z1, z2, t):
  """Literal NT-Xent: for every view i of the 2B, -log( exp(s_i,pos) / sum_{k != i} exp(s_ik) ), then the mean
  of the two directions of each pair."""
  u = np_unit(np.concatenate([z1, z2]))
  n, b = len(u), len(z1)
  out = np.zeros(n)
  for i in range(n):
    pos = (i + b) % n
    den = sum(np.exp(u[i] @ u[k] / t) for k in range(n) if k != i)
    out[i] = -np.log(np.exp(u[i] @ u[pos] / t) / den)
  return 0.5 * (out[:b] + out[b:])


def test_nt_xent_matches_numpy(vectors):
  _, _, z1, z2 = vectors
  got = simsiam.nt_xent_B(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), 0.5)
  np.testing.assert_allclose(got, np_nt_xent(z1, z2, 0.5), rtol=1e-5)
  _, task = _task("runlocal,objective=simclr")
  assert task.objective == "simclr" and not task.net.use_predictor
  v = jax.eval_shape(task.init, jax.random.key(0), _batch())
  assert "predictor" not in v["params"]
  with pytest.raises(ValueError, match="objective=simclr"):
    load_config("configs/simsiam/mnist1d.py", "runlocal,objective=simclr,predictor=frozen")


def test_zero_prediction_has_finite_gradient():
  p = jnp.zeros((2, 4)).at[1].set(1.0)
  z = jnp.ones((2, 4))
  g = jax.grad(lambda p: jnp.sum(simsiam.negative_cosine_B(p, z)))(p)
  assert np.isfinite(np.asarray(g)).all()


def _task(arg="runlocal", **task_overrides):
  c = load_config("configs/simsiam/mnist1d.py", arg)
  for k, v in task_overrides.items():
    c.task[k] = v
  return c, tasks.get_task(c)


def _batch(b=16, seed=0):
  rng = np.random.default_rng(seed)
  return {"x": jnp.asarray(rng.normal(size=(b, 40)), jnp.float32), "label": jnp.asarray(rng.integers(0, 10, b))}


def _params_grad(task, v, batch, rng):
  return jax.jit(jax.grad(lambda p: task.loss({**v, "params": p}, batch, rng)[0]))(v["params"])


def test_stop_gradient_through_the_network():
  """No predictor (h = id): with the symmetric loss, stop-gradient halves the gradient of D(z1, z2) exactly
  (SimSiam §4.2: 'stop-grad just rescales the gradient by 1/2'), through the whole network (BN included)."""
  batch, rng = _batch(), jax.random.key(3)
  _, t_sg = _task("runlocal,predictor=none")
  _, t_full = _task("runlocal,predictor=none,stopgrad=False")
  v = jax.jit(t_sg.init)(jax.random.key(0), batch)
  g_sg, g_full = _params_grad(t_sg, v, batch, rng), _params_grad(t_full, v, batch, rng)
  # atol scales with the largest gradient (a bias followed by BN has gradient 0 up to rounding noise)
  assert_trees_close(g_sg, jax.tree.map(lambda x: 0.5 * x, g_full), rtol=1e-4, scale="tree")
  assert max(float(jnp.abs(x).max()) for x in jax.tree.leaves(g_full)) > 1e-4


@pytest.mark.slow  # ~3 gradient compilations: 20-70 s on a loaded 2-core CPU
def test_stop_gradient_equals_constant_targets():
  """With the predictor, the stop-gradient loss has the gradient of the same loss with the targets replaced by
  constants computed in separate forward passes; without stop-gradient the gradient differs."""
  batch, rng = _batch(), jax.random.key(3)
  _, task = _task("runlocal")
  v = jax.jit(task.init)(jax.random.key(0), batch)
  k1, k2, _ = jax.random.split(rng, 3)

  def manual(p):  # targets computed in a separate pass and passed in as constants
    vv = {**v, "params": p}
    x1, x2 = task.views(k1, batch["x"]), task.views(k2, batch["x"])
    (_, _, p1), vv2 = task._apply_train(vv, x1)  # pylint: disable=protected-access
    (_, _, p2), _ = task._apply_train(vv2, x2)  # pylint: disable=protected-access
    (_, z1c, _), w = task._apply_train(jax.lax.stop_gradient(vv), x1)  # pylint: disable=protected-access
    (_, z2c, _), _ = task._apply_train(w, x2)  # pylint: disable=protected-access
    return simsiam.simsiam_loss(p1, p2, z1c, z2c, stop_gradient=False)

  g_manual = jax.jit(jax.grad(manual))(v["params"])
  g_task = _params_grad(task, v, batch, rng)
  assert_trees_close(g_task, g_manual, rtol=1e-4, scale="tree")  # atol scales with the largest gradient
  _, t_nosg = _task("runlocal,stopgrad=False")
  g_nosg = _params_grad(t_nosg, v, batch, rng)
  diff = max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g_task), jax.tree.leaves(g_nosg)))
  assert diff > 1e-4  # the target branch does carry gradient without stop-gradient


def test_mean_view_target_and_bad_switches():
  batch = _batch()
  _, task = _task("runlocal,target=mean_view,K=3")
  assert task.target_views == 2  # runlocal uses 2 views
  v = jax.eval_shape(task.init, jax.random.key(0), batch)
  loss, aux = jax.eval_shape(task.loss, v, batch, jax.random.key(1))  # values: test_simsiam_config_smoke
  stats = {f"{layer}/{k}" for layer in "hz" for k in ("std", "sv_rank", "cov_rank", "top3_var")}
  assert loss.shape == () and set(aux["metrics"]) == stats | {"p/std"}
  for key, value, match in (("predictor", "frozen", "param_groups"), ("target", "avg", "task.target"),
                            ("head_bn", "pred", "task.head_bn"),
                            ("views", "audio", "task.views")):
    c = load_config("configs/simsiam/mnist1d.py", "runlocal")
    c.task[key] = value
    with pytest.raises(ValueError, match=match):
      tasks.get_task(c)
  with pytest.raises(ValueError, match="predictor must be one of"):
    load_config("configs/simsiam/mnist1d.py", "runlocal,predictor=slow")
  c = load_config("configs/simsiam/mnist1d.py", "runlocal")
  c.model.num_classes = 10
  with pytest.raises(ValueError, match="num_classes=None"):
    tasks.get_task(c)


@pytest.mark.parametrize("head_bn", sorted(simsiam.HEAD_BN))
def test_head_bn_config_places_batchnorm(head_bn):
  """configs/simsiam/mnist1d.py:headbn=... builds the heads of the paper's Table 3 row (BN layers present)."""
  _, task = _task(f"runlocal,headbn={head_bn}")
  v = jax.eval_shape(task.init, jax.random.key(0), _batch())
  proj_hidden, proj_out, pred_hidden, pred_out = simsiam.HEAD_BN[head_bn]
  bs = v["batch_stats"]
  assert ("bn0" in bs.get("projector", {})) == proj_hidden and ("bn_out" in bs.get("projector", {})) == proj_out
  assert ("bn0" in bs.get("predictor", {})) == pred_hidden and ("bn_out" in bs.get("predictor", {})) == pred_out
  loss, _ = jax.eval_shape(task.loss, v, _batch(), jax.random.key(1))
  assert loss.shape == ()


def test_mean_view_target_pass_keeps_bn_running_stats():
  """target='mean_view': the BN running statistics after a step are those of the two view passes alone (the same
  as target='view' with the same key, and as two explicit passes), not updated a third time by the x_bar pass."""
  batch, rng = _batch(), jax.random.key(5)
  _, t_mean = _task("runlocal,target=mean_view")
  _, t_view = _task("runlocal")
  v = jax.jit(t_mean.init)(jax.random.key(0), batch)
  mut_mean = jax.jit(lambda v: t_mean.loss(v, batch, rng)[1]["mutable"])(v)
  mut_view = jax.jit(lambda v: t_view.loss(v, batch, rng)[1]["mutable"])(v)
  k1, k2, kt = jax.random.split(rng, 3)

  def passes(v, xs):
    for x in xs:
      _, v = t_mean._apply_train(v, x)  # pylint: disable=protected-access
    return {"batch_stats": v["batch_stats"]}

  x1, x2 = t_mean.views(k1, batch["x"]), t_mean.views(k2, batch["x"])
  two = jax.jit(lambda v: passes(v, (x1, x2)))(v)
  assert_trees_close(mut_mean, two, rtol=1e-6, scale="tree")
  assert_trees_close(mut_mean, mut_view, rtol=1e-6, scale="tree")
  # The discarded update is not a no-op: a third pass on the averaged views would have moved the statistics.
  x_bar = jnp.mean(jnp.stack([t_mean.views(k, batch["x"]) for k in jax.random.split(kt, t_mean.target_views)]), 0)
  three = jax.jit(lambda v: passes(v, (x1, x2, x_bar)))(v)
  assert max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(two), jax.tree.leaves(three))) > 1e-3


# ----------------------------------------------------------------------------------------- BN sync (8 devices).


def test_batchnorm_statistics_are_global_on_8_devices():
  """The jitted loss over a batch sharded 8 ways equals the single-device loss on the same global batch (loss,
  gradients and updated BN running averages), and differs from per-device BN (the mean over 8 slices)."""
  _, task = _task("runlocal")
  batch, rng = _batch(b=64), jax.random.key(2)
  v = jax.jit(task.init)(jax.random.key(0), batch)

  def f(v, batch):
    (loss, aux), g = jax.value_and_grad(lambda p: task.loss({**v, "params": p}, batch, rng), has_aux=True)(v["params"])
    return loss, g, aux["mutable"]

  single = jax.jit(f)(v, batch)
  mesh = sharding.make_mesh(dict(data=8, fsdp=1, tensor=1))
  batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  with jax.set_mesh(mesh):
    sharded_batch = jax.device_put(batch, batch_sh)
    assert len(sharded_batch["x"].sharding.device_set) == 8
    multi = jax.jit(f, in_shardings=(repl, batch_sh), out_shardings=repl)(jax.device_put(v, repl), sharded_batch)
  # float32 reduction order differs: the loss to 2e-5 of its value, gradients and BN statistics to 2e-5 of the
  # largest of their kind (a bias followed by BN has gradient 0 in exact arithmetic, and a BN whose input has
  # mean 0 a running mean of 0: rounding noise of the size of the terms it comes from).
  (loss_s, grads_s, stats_s), (loss_m, grads_m, stats_m) = single, multi
  assert_trees_close(loss_m, loss_s, rtol=2e-5)
  assert_trees_close(grads_m, grads_s, rtol=2e-5, scale="tree")
  assert_trees_close(stats_m, stats_s, rtol=2e-5, scale="tree")
  # Per-device BatchNorm (each device normalising its own 8 examples) would give another loss:
  loss_only = jax.jit(lambda v, b: task.loss(v, b, rng)[0])
  per_device = np.mean([float(loss_only(v, jax.tree.map(lambda a: a[i::8], batch))) for i in range(8)])
  assert abs(per_device - float(single[0])) > 1e-3


# ---------------------------------------------------------------------------------------------- Su's toy model.


def np_toy(stop_gradient, phi=0.6, theta=0.1, dt=1e-3, steps=20_000):
  """Euler on Su's equations written by hand: dphi = -(phi th - th) th, dth = -(phi th - th) phi [+ (phi th - th)]."""
  for _ in range(steps):
    r = phi * theta - theta
    dphi, dth = -r * theta, -r * phi + (0.0 if stop_gradient else r)
    phi, theta = phi + dt * dphi, theta + dt * dth
  return phi, theta


def test_su_toy_model():
  phi_s, th_s = simsiam.su_toy_dynamics(True)
  phi_f, th_f = simsiam.su_toy_dynamics(False)
  assert phi_s.shape == (20_001,)
  # Same trajectory end as the hand-written float64 Euler reference.
  np.testing.assert_allclose([float(phi_s[-1]), float(th_s[-1])], np_toy(True), rtol=1e-4)
  np.testing.assert_allclose([float(phi_f[-1]), float(th_f[-1])], np_toy(False), rtol=1e-3, atol=1e-5)
  # Stop-gradient: phi -> 1, theta -> sqrt(0.65) (theta^2 - phi^2 conserved up to the Euler error).
  assert abs(float(phi_s[-1]) - 1.0) < 1e-3
  assert abs(float(th_s[-1]) - math.sqrt(0.65)) < 2e-3
  inv = np.asarray(th_s, np.float64) ** 2 - np.asarray(phi_s, np.float64) ** 2
  assert np.abs(inv - inv[0]).max() < 2e-3
  # Full gradient: theta -> 0 (collapse), phi stalls near 0.61 (0.613, theta 0.0048 by a
  # float64 Euler integration of Su's ODE, kexue.fm/archives/7980).
  assert float(th_f[-1]) < 0.01 and abs(float(phi_f[-1]) - 0.613) < 0.01


# --------------------------------------------------------------------------------------- Evaluation functions.


def np_effective_rank(z):
  s = np.linalg.svd(z, compute_uv=False)
  p = s / s.sum()
  p = p[p > 0]
  return np.exp(-(p * np.log(p)).sum())


def test_collapse_statistics_match_numpy():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(512, 64))
  np.testing.assert_allclose(float(ssl.collapse_std(jnp.asarray(z, jnp.float32))), np_unit(z).std(0).mean(), rtol=1e-5)
  np.testing.assert_allclose(float(ssl.effective_rank(jnp.asarray(z, jnp.float32))), np_effective_rank(z), rtol=1e-4)
  # Isotropic Gaussian: std ~ 1/sqrt(d); effective rank near d.
  assert abs(float(ssl.collapse_std(jnp.asarray(z))) * 8 - 1) < 0.05
  assert float(ssl.effective_rank(jnp.asarray(z))) > 50
  # Rank-1 (z_i = a_i v): erank 1; a constant vector: std 0.
  rank1 = rng.normal(size=(256, 1)) @ rng.normal(size=(1, 64))
  np.testing.assert_allclose(float(ssl.effective_rank(jnp.asarray(rank1, jnp.float32))), 1.0, rtol=1e-3)
  assert float(ssl.collapse_std(jnp.ones((32, 8)))) < 1e-6  # float32 rounding of an exact 0
  low = rng.normal(size=(256, 3)) @ rng.normal(size=(3, 64))
  np.testing.assert_allclose(float(ssl.effective_rank(jnp.asarray(low, jnp.float32))), np_effective_rank(low), rtol=1e-4)


def np_knn(train, ytr, test, k, temperature, num_classes):
  """Literal cosine kNN: for each query sort all similarities, take the top k, add exp(s/T) per label."""
  out = []
  trn = train / np.linalg.norm(train, axis=1, keepdims=True)
  for q in test:
    s = trn @ (q / np.linalg.norm(q))
    order = np.argsort(-s, kind="stable")[:k]
    votes = np.zeros(num_classes)
    for i in order:
      votes[ytr[i]] += 1.0 if temperature is None else np.exp(s[i] / temperature)
    out.append(int(np.argmax(votes)))
  return np.array(out)


@pytest.mark.parametrize("temperature", [0.1, None])
def test_knn_matches_numpy(temperature):
  rng = np.random.default_rng(1)
  centers = rng.normal(size=(4, 8)) * 2
  ytr, yte = rng.integers(0, 4, 300), rng.integers(0, 4, 70)
  train = centers[ytr] + rng.normal(size=(300, 8))
  test = centers[yte] + rng.normal(size=(70, 8))
  pred = ssl.knn_predict(train, ytr, test, k=15, temperature=temperature, num_classes=4, chunk=32)
  ref = np_knn(train, ytr, test, 15, temperature, 4)
  np.testing.assert_array_equal(pred, ref)
  acc = ssl.knn_accuracy(train, ytr, test, yte, k=15, temperature=temperature)
  assert acc == pytest.approx(np.mean(ref == yte)) and acc > 0.5


def test_linear_probe_is_the_regularised_optimum():
  """At the L-BFGS solution the float64 gradient of mean CE + l2/2 |W|^2 vanishes."""
  rng = np.random.default_rng(2)
  x = rng.normal(size=(200, 6))
  y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + 2 * (x[:, 2] > 0.3)
  xs, _ = ssl.standardize(x, x)
  params = ssl._fit_jit(xs.astype(np.float32), y, 4, l2=1e-2, steps=200)  # pylint: disable=protected-access
  w, b = np.asarray(params["w"], np.float64), np.asarray(params["b"], np.float64)
  logits = xs @ w + b
  prob = np.exp(logits - logits.max(1, keepdims=True))
  prob /= prob.sum(1, keepdims=True)
  onehot = np.eye(4)[y]
  grad_w = xs.T @ (prob - onehot) / len(y) + 1e-2 * w
  grad_b = (prob - onehot).mean(0)
  assert np.abs(grad_w).max() < 1e-4 and np.abs(grad_b).max() < 1e-4
  # Held-out scoring: tests/evals/test_ssl.py::test_linear_probe_scores_held_out_data.


class _TwoBN(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn0")(x)
    x = nn.Dense(3, name="fc")(nn.relu(x))
    return nn.BatchNorm(use_running_average=not train, momentum=0.7, use_scale=False, use_bias=False, name="bn1")(x)


def test_population_batch_stats_match_numpy():
  """Running averages replaced by the whole-set statistics, layer by layer (two layers, two momenta)."""
  rng = np.random.default_rng(3)
  x = rng.normal(size=(500, 4)) * [1, 2, 3, 4] + [0, 1, -1, 5]
  m = _TwoBN()
  v = m.init(jax.random.key(0), jnp.asarray(x[:2], jnp.float32), train=False)
  v = {**v, "batch_stats": jax.tree.map(lambda a: a + 0.3, v["batch_stats"])}  # arbitrary old averages
  apply_train = lambda vv, xx: m.apply(vv, xx, train=True, mutable=["batch_stats"])[1]["batch_stats"]
  stats = ssl.population_batch_stats(apply_train, v, jnp.asarray(x, jnp.float32))
  mu0, var0 = x.mean(0), x.var(0)
  np.testing.assert_allclose(stats["bn0"]["mean"], mu0, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(stats["bn0"]["var"], var0, rtol=1e-4)
  p = v["params"]
  h = np.maximum((x - mu0) / np.sqrt(var0 + 1e-5) * np.asarray(p["bn0"]["scale"]) + np.asarray(p["bn0"]["bias"]), 0)
  h = h @ np.asarray(p["fc"]["kernel"], np.float64) + np.asarray(p["fc"]["bias"])
  np.testing.assert_allclose(stats["bn1"]["mean"], h.mean(0), rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(stats["bn1"]["var"], h.var(0), rtol=1e-3)


# ------------------------------------------------------------------------------------- Optimizer param groups.


def test_param_groups_frozen_and_constant_lr():
  params = {"predictor": {"w": jnp.ones((2, 2))}, "backbone": {"w": jnp.ones((2, 2))}}
  grads = jax.tree.map(lambda a: jnp.full_like(a, 0.5), params)
  base = dict(name="sgd", momentum=0.0, weight_decay=0.0, warmup_steps=0, schedule="cosine", min_lr_ratio=0.0,
              learning_rate=0.1, clip_grad_norm=0.0)
  for groups, pred_lr in (([dict(pattern="^predictor/", frozen=True)], lambda t: 0.0),
                          ([dict(pattern="^predictor/", schedule="constant")], lambda t: 0.1)):
    tx, lr = optim.make_optimizer(ml_collections.ConfigDict({**base, "param_groups": groups}), 10)
    state = tx.init(params)
    for t in range(4):
      upd, state = tx.update(grads, state, params)
      np.testing.assert_allclose(upd["predictor"]["w"], -pred_lr(t) * 0.5, rtol=1e-6, atol=1e-9)
      np.testing.assert_allclose(upd["backbone"]["w"], -float(lr(t)) * 0.5, rtol=1e-6)
      assert float(lr(t)) < 0.1 or t == 0
  bad = (([dict(schedule="constant")], "pattern"), ([dict(pattern="x", frozen=True, learning_rate=1.0)], "frozen"),
         ([dict(pattern="x", clip_grad_norm=1.0)], "cannot set"), ([dict(pattern="(")], "invalid pattern"))
  for groups, match in bad:
    with pytest.raises(ValueError, match=match):
      optim.make_optimizer(ml_collections.ConfigDict({**base, "param_groups": groups}), 10)


# ------------------------------------------------------------------------------------------------- Smoke.

VARIANT_ARGS = ["runlocal", "runlocal,stopgrad=False", "runlocal,predictor=none", "runlocal,target=mean_view",
                "runlocal,objective=simclr"]


# The CIFAR stand-in ResNet and the no-stop-gradient variant compile for ~30-60 s on a loaded 2-core CPU: those
# run with --runslow here (tests/test_configs.py trains every config for 2 steps through train.run anyway, and
# the no-stop-gradient gradient is checked in test_stop_gradient_through_the_network).
SMOKE = [pytest.param(p, "runlocal", marks=[pytest.mark.slow] if "cifar" in p else []) for p in CONFIGS] + [
    pytest.param("configs/simsiam/mnist1d.py", a, marks=[pytest.mark.slow] if "stopgrad" in a else [])
    for a in VARIANT_ARGS[1:]]


@pytest.mark.parametrize("path,arg", SMOKE)
def test_simsiam_config_smoke(path, arg):
  """One compiled loss/grad and one evaluation of every simsiam config (and switch) at runlocal are finite."""
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  c = load_config(path, arg)
  task = tasks.get_task(c)
  batch = jax.tree.map(jnp.asarray, next(pipeline.make_train_iter(c.data, seed=0, global_batch_size=c.batch_size)))
  v = jax.jit(task.init)(jax.random.key(0), batch)
  (loss, aux), g = jax.jit(jax.value_and_grad(
      lambda p: task.loss({**v, "params": p}, batch, jax.random.key(1)), has_aux=True))(v["params"])
  assert np.isfinite(float(loss)) and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
  assert all(np.isfinite(float(m)) for m in aux["metrics"].values())
  assert set(aux["mutable"]) == {"batch_stats"}
  out = jax.jit(task.evaluate)(v, batch)
  assert all(np.isfinite(float(s)) for s, _ in out.values())


def test_train_run_frozen_predictor_and_grad_norms(tmp_path):
  """Through the engine: the frozen predictor keeps its initial parameters while the backbone moves, BN
  statistics are carried in the state, and per-group gradient norms are logged."""
  c = load_config("configs/simsiam/mnist1d.py", "runlocal,predictor=frozen")
  c.num_train_steps = 2
  c.log_every_steps = 1
  train.run(c, str(tmp_path))
  state, step = checkpoint.load_state(tmp_path)
  assert step == 2
  from kexue_jax.evals import frozen_features  # pylint: disable=g-import-not-at-top
  zeros = (np.zeros((4, 40), np.float32), np.zeros(4))
  ev = frozen_features.Evaluator(c, zeros, zeros)
  init = ev.init_variables(c.seed)
  for a, b in zip(jax.tree.leaves(init["params"]["predictor"]), jax.tree.leaves(state["params"]["predictor"])):
    np.testing.assert_array_equal(np.asarray(a), b)
  moved = [float(np.abs(np.asarray(a) - b).max()) for a, b in
           zip(jax.tree.leaves(init["params"]["backbone"]), jax.tree.leaves(state["params"]["backbone"]))]
  assert max(moved) > 0
  assert any(float(np.abs(np.asarray(a) - b).max()) > 0 for a, b in
             zip(jax.tree.leaves(init["batch_stats"]), jax.tree.leaves(state["extra"]["batch_stats"])))
  recs = [r for r in metrics_lib.read_metrics(tmp_path) if "train/loss" in r]
  assert all(r["train/grad_norm/predictor"] > 0 and r["train/grad_norm/encoder"] > 0 for r in recs)
  # The fast-predictor / slow-encoder curve: one point per logged step (a frozen predictor still has a gradient).
  curve = simsiam.grad_ratio_curve(metrics_lib.read_metrics(tmp_path))
  assert curve["step"] == [1, 2]
  np.testing.assert_allclose(curve["grad_ratio"], [r["train/grad_norm/predictor"] / r["train/grad_norm/encoder"]
                                                   for r in recs], rtol=1e-12)
  assert all(f"train/{layer}/cov_rank" in r for r in recs for layer in "hz")  # backbone and projector apart
  # Without a predictor there is no fast variable: no curve.
  assert simsiam.grad_ratio_curve([{"step": 1, "train/grad_norm/encoder": 1.0}]) is None
  assert json.loads((tmp_path / "config.json").read_text())["optimizer"]["param_groups"][0]["frozen"]
