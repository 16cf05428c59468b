"""R-Drop (issue #7): the loss against NumPy float64, independent masks, gradients through both passes, the
semi-supervised term, the consistency diagnostic, the data views, smoke runs (the study: tests/experiments/)."""
import dataclasses
import glob
import itertools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import assert_trees_close, float64, load_config
from kexue_jax import config_lib
from kexue_jax import tasks
from kexue_jax import vocab
from kexue_jax.data import array_views
from kexue_jax.data import pipeline
from kexue_jax.data import text_views
from kexue_jax.nn import cnn as cnn_lib
from kexue_jax.tasks import classify

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MNIST1D = config_lib.load_sibling(os.path.join(REPO, "configs", "rdrop", "mnist1d.py"), "mnist1d.py")


# ------------------------------------------------------------------------------ NumPy float64 references.


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_kl(zp, zq):
  """KL(P || Q) = sum_k p_k log(p_k / q_k), written directly."""
  p, q = np.exp(np_log_softmax(zp)), np.exp(np_log_softmax(zq))
  return (p * np.log(p / q)).sum(-1)


def np_ce(z, y):
  return -np_log_softmax(z)[np.arange(len(y)), y]


def np_paper_loss(z1, z2, y, alpha):
  """Per-example L_i = CE1 + CE2 + alpha/2 [KL(P1||P2) + KL(P2||P1)] (paper; Su's article)."""
  return np_ce(z1, y) + np_ce(z2, y) + alpha / 2 * (np_kl(z1, z2) + np_kl(z2, z1))


def np_su_code_loss(z1, z2, y, alpha):
  """Su's Keras code: mean(CE over the 2B duplicated rows) + alpha/4 mean(KL12 + KL21)."""
  return np.mean(np.concatenate([np_ce(z1, y), np_ce(z2, y)])) + alpha / 4 * np.mean(np_kl(z1, z2) + np_kl(z2, z1))


@pytest.fixture
def fixed_logits():
  rng = np.random.default_rng(0)
  z1 = rng.normal(size=(6, 5)) * 2.0
  z2 = z1 + rng.normal(size=(6, 5))
  y = rng.integers(0, 5, size=6)
  return z1, z2, y


# ------------------------------------------------------------------------------------------------ The loss.


@pytest.mark.parametrize("alpha", [0.0, 1.0, 4.0])
def test_loss_matches_numpy(fixed_logits, alpha):
  z1, z2, y = fixed_logits
  loss, parts = classify.rdrop_loss(jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32), jnp.asarray(y),
                                    alpha)
  ref = np.mean(np_paper_loss(z1, z2, y, alpha)) / 2  # ours = 1/2 the paper's loss
  np.testing.assert_allclose(float(loss), ref, rtol=1e-6)
  np.testing.assert_allclose(float(loss), np_su_code_loss(z1, z2, y, alpha), rtol=1e-6)
  np.testing.assert_allclose(float(parts["ce"]), np.mean(np_ce(z1, y) + np_ce(z2, y)) / 2, rtol=1e-6)
  np.testing.assert_allclose(float(parts["kl"]), np.mean(np_kl(z1, z2) + np_kl(z2, z1)) / 2, rtol=1e-5)


def test_kl_pieces_match_numpy(fixed_logits):
  z1, z2, _ = fixed_logits
  np.testing.assert_allclose(classify.kl_B(jnp.asarray(z1), jnp.asarray(z2)), np_kl(z1, z2), rtol=1e-5)
  np.testing.assert_allclose(classify.symmetric_kl_B(jnp.asarray(z1), jnp.asarray(z2)),
                             (np_kl(z1, z2) + np_kl(z2, z1)) / 2, rtol=1e-5)
  np.testing.assert_allclose(classify.symmetric_kl_B(jnp.asarray(z1), jnp.asarray(z1)), 0.0, atol=1e-7)


def test_loss_gradient_flows_into_both_logits(fixed_logits):
  """d loss / d z1 and d z2 against central finite differences of the float64 reference."""
  z1, z2, y = fixed_logits
  alpha = 4.0
  g1, g2 = jax.grad(lambda a, b: classify.rdrop_loss(a, b, jnp.asarray(y), alpha)[0], argnums=(0, 1))(
      jnp.asarray(z1, jnp.float32), jnp.asarray(z2, jnp.float32))
  f = lambda a, b: np.mean(np_paper_loss(a, b, y, alpha)) / 2
  h = 1e-6
  for g, which in ((g1, 0), (g2, 1)):
    num = np.zeros_like(z1)
    for idx in np.ndindex(z1.shape):
      e = np.zeros_like(z1)
      e[idx] = h
      args_p, args_m = [z1, z2], [z1, z2]
      args_p[which], args_m[which] = args_p[which] + e, args_m[which] - e
      num[idx] = (f(*args_p) - f(*args_m)) / (2 * h)
    assert np.abs(num).max() > 1e-2
    assert_trees_close(np.asarray(g), num, rtol=1e-4)  # float32 gradient vs float64 differences
  # The KL part's gradient is not zero: alpha changes the gradient of both passes.
  g1_ce = jax.grad(lambda a: classify.rdrop_loss(a, jnp.asarray(z2, jnp.float32), jnp.asarray(y), 0.0)[0])(
      jnp.asarray(z1, jnp.float32))
  assert np.abs(np.asarray(g1 - g1_ce)).max() > 1e-2


# ---------------------------------------------------------------------------------------------- Two passes.


def _dropout_apply(rate):
  drop = nn.Dropout(rate)
  return lambda x, r: (drop.apply({}, x, deterministic=False, rngs={"dropout": r}), {})


@pytest.mark.parametrize("passes", ["duplicate", "split_keys"])
def test_two_passes_draw_independent_masks(passes):
  p, b, d = 0.3, 4, 8192
  z1, z2, _ = classify.two_pass_logits(_dropout_apply(p), jnp.ones((b, d)), jax.random.key(3), passes)
  m1, m2 = np.asarray(z1) != 0, np.asarray(z2) != 0
  for m in (m1, m2):
    np.testing.assert_allclose(m.mean(), 1 - p, atol=4 * np.sqrt(p * (1 - p) / m.size))
  # Independent masks agree on a unit with probability p^2 + (1-p)^2 (identical masks: 1).
  agree, expected = (m1 == m2).mean(), p ** 2 + (1 - p) ** 2
  np.testing.assert_allclose(agree, expected, atol=4 * np.sqrt(expected * (1 - expected) / m1.size))
  # Joint frequencies factorise: P(both kept) = (1-p)^2.
  np.testing.assert_allclose((m1 & m2).mean(), (1 - p) ** 2, atol=0.01)


def _mlp_config(dropout=0.3, alpha=4.0, passes="duplicate", **data):
  c = load_config("configs/rdrop/mnist1d.py", f"runlocal,dropout={dropout},alpha={alpha},passes={passes}")
  c.model.hidden_dims = (16, 16)
  for k, v in data.items():
    c.data[k] = v
  return c


def _batch(b=8, unlabelled=False, seed=0):
  rng = np.random.default_rng(seed)
  out = {"x": jnp.asarray(rng.normal(size=(b, 40)), jnp.float32), "label": jnp.asarray(rng.integers(0, 10, b))}
  if unlabelled:
    out["x_unlabelled"] = jnp.asarray(rng.normal(size=(b, 40)), jnp.float32)
  return out


def test_two_pass_forms_agree():
  """duplicate and split_keys: identical for a deterministic model; with dropout, the loss terms over 256 keys
  agree within 4 standard errors (same distribution of (z1, z2))."""
  with float64():  # two programs (one batch of 2B vs two of B): compared in float64
    w = np.random.default_rng(0).normal(size=(40, 10))
    det = lambda x, r: (x @ w, {})
    forms = jax.jit(lambda x, r: [classify.two_pass_logits(det, x, r, p)[:2] for p in ("duplicate", "split_keys")])
    (a1, a2), (b1, b2) = forms(np.asarray(_batch()["x"], np.float64), jax.random.key(0))
    assert a1.dtype == jnp.float64
    for a, b in ((a1, b1), (a2, b2), (a1, a2)):
      assert_trees_close(a, b)

  batch = _batch()
  t_dup = tasks.get_task(_mlp_config(dropout=0.5))
  t_split = tasks.get_task(_mlp_config(dropout=0.5, passes="split_keys"))
  v = jax.jit(t_dup.init)(jax.random.key(0), batch)
  keys = jax.random.split(jax.random.key(7), 256)
  terms = lambda t: jax.jit(lambda ks: jax.lax.map(lambda k: t.loss(v, batch, k)[1]["metrics"], ks))(keys)
  m_dup, m_split = terms(t_dup), terms(t_split)
  for name in ("ce", "kl"):
    a, b = np.asarray(m_dup[name], np.float64), np.asarray(m_split[name], np.float64)
    se = np.sqrt(a.var() / len(a) + b.var() / len(b))
    assert abs(a.mean() - b.mean()) < 4 * se, (name, a.mean(), b.mean(), se)
    assert a.std() > 0  # dropout is on


@pytest.mark.parametrize("passes", ["duplicate", "split_keys"])
def test_parameter_gradient_flows_through_both_passes(passes):
  """grad L(z1(w), z2(w)) = grad via z1 (z2 held fixed) + grad via z2 (z1 held fixed), both non-zero."""
  task = tasks.get_task(_mlp_config(passes=passes))
  batch, rng = _batch(), jax.random.key(5)
  v = jax.jit(task.init)(jax.random.key(0), batch)
  full = jax.jit(jax.grad(lambda p: task.loss({"params": p}, batch, rng)[0]))(v["params"])

  def partial_grad(stop):
    def f(p):
      apply_fn = lambda x, r: task._apply({"params": p}, x, train=True, dropout=True, rng=r)  # pylint: disable=protected-access
      z1, z2, _ = classify.two_pass_logits(apply_fn, batch["x"], rng, passes)
      z1, z2 = (jax.lax.stop_gradient(z1), z2) if stop == 1 else (z1, jax.lax.stop_gradient(z2))
      return classify.rdrop_loss(z1, z2, batch["label"], task.alpha)[0]
    return jax.jit(jax.grad(f))(v["params"])

  via_z1, via_z2 = partial_grad(2), partial_grad(1)
  for g, a, b in zip(jax.tree.leaves(full), jax.tree.leaves(via_z1), jax.tree.leaves(via_z2)):
    np.testing.assert_allclose(g, a + b, rtol=1e-4, atol=1e-6)
  norm = lambda t: float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(t))))
  assert norm(via_z1) > 1e-3 and norm(via_z2) > 1e-3
  assert norm(jax.tree.map(lambda a, b: a - b, via_z1, via_z2)) > 1e-4  # different masks, different grads


# ---------------------------------------------------------------------------------------- Semi-supervised.


@pytest.mark.parametrize("beta", [0.0, 2.0])
def test_semi_supervised_loss_adds_kl_on_unlabelled(beta):
  """CE over the labelled rows only, + beta/2 x the unlabelled rows' KL (beta = 0: the two-pass loss of the labelled
  rows, with the unlabelled rows only in the forward pass)."""
  task = tasks.get_task(_mlp_config())
  task.beta = beta
  batch, rng = _batch(unlabelled=True), jax.random.key(9)
  v = jax.jit(task.init)(jax.random.key(0), batch)
  loss, aux = task.loss(v, batch, rng)
  # Reference from the same forward pass: the duplicated batch is [x; x_u; x; x_u].
  x_all = jnp.concatenate([batch["x"], batch["x_unlabelled"]] * 2)
  logits, _ = task.model.apply(v, x_all, train=True, rngs={"dropout": rng})
  z = np.asarray(logits, np.float64)
  b, y = 8, np.asarray(batch["label"])
  z1, z2, u1, u2 = z[:b], z[2 * b:3 * b], z[b:2 * b], z[3 * b:]
  kl_u = np.mean(np_kl(u1, u2) + np_kl(u2, u1)) / 2
  ref = np.mean(np_paper_loss(z1, z2, y, task.alpha)) / 2 + task.beta / 2 * kl_u
  np.testing.assert_allclose(float(aux["metrics"]["kl_unlabelled"]), kl_u, rtol=1e-4)
  np.testing.assert_allclose(float(loss), ref, rtol=1e-5)
  # The unlabelled inputs get gradient through the KL term alone (labels never touch them; no BatchNorm here).
  g = jax.grad(lambda xu: task.loss(v, {**batch, "x_unlabelled": xu}, rng)[0])(batch["x_unlabelled"])
  assert (float(jnp.abs(g).max()) > 0) == (beta > 0)


@pytest.mark.parametrize("passes", ["duplicate", "single"])
def test_alternate_schedule_phases_match_numpy(passes):
  """Su's alternating scheme: phase 0 is the labelled loss of `passes` on the labelled rows alone, phase 1 is
  beta/2 x the unlabelled rows' KL between two passes (duplicated even when `passes` is single), against float64
  NumPy on the logits of the same forward passes; each phase's gradient reaches only its own inputs."""
  task = tasks.get_task(_mlp_config(alpha=0.0, passes=passes))
  task.phases = 2   # = task.semi_schedule="alternate" (the config test below builds it from the config)
  batch, rng, b = _batch(unlabelled=True), jax.random.key(9), 8
  v = jax.jit(task.init)(jax.random.key(0), batch)
  y = np.asarray(batch["label"])
  logits = lambda x: np.asarray(task.model.apply(v, x, train=True, rngs={"dropout": rng})[0], np.float64)
  loss0, aux0 = task.loss(v, batch, rng, phase=0)
  if passes == "single":
    ref0 = np.mean(np_ce(logits(batch["x"]), y))
  else:
    z = logits(jnp.concatenate([batch["x"]] * 2))
    ref0 = np.mean(np_ce(z[:b], y) + np_ce(z[b:], y)) / 2
  np.testing.assert_allclose(float(loss0), ref0, rtol=1e-6)
  loss1, aux1 = task.loss(v, batch, rng, phase=1)
  u = logits(jnp.concatenate([batch["x_unlabelled"]] * 2))
  kl_u = np.mean(np_kl(u[:b], u[b:]) + np_kl(u[b:], u[:b])) / 2
  np.testing.assert_allclose(float(aux1["metrics"]["kl_unlabelled"]), kl_u, rtol=1e-4)
  np.testing.assert_allclose(float(loss1), task.beta / 2 * kl_u, rtol=1e-4)
  assert set(aux0["metrics"]) & set(aux1["metrics"]) == set()   # merged by the train step
  for phase, own, other in ((0, "x", "x_unlabelled"), (1, "x_unlabelled", "x")):
    g = jax.grad(lambda xs: task.loss(v, {**batch, **xs}, rng, phase=phase)[0])(
        {k: batch[k] for k in ("x", "x_unlabelled")})
    assert float(jnp.abs(g[own]).max()) > 0 and float(jnp.abs(g[other]).max()) == 0


def test_alternate_schedule_from_the_config_trains_in_turn():
  """semi=alternate: a two-phase task, two AdamW (the KL one at SEMI_KL_LR_RATIO x the lr); one engine train
  step moves both optimizer states once, phase 0's (labelled) first; the joint arms' configs do not change."""
  arg = "runlocal,labelled=40,alpha=0,passes=duplicate"
  c = load_config("configs/rdrop/mnist1d.py", arg + ",semi=alternate")
  joint = load_config("configs/rdrop/mnist1d.py", arg)
  assert "semi_schedule" not in joint.task and "alternate" not in joint.optimizer
  assert c.optimizer.alternate[1]["learning_rate"] == c.optimizer.learning_rate * MNIST1D.SEMI_KL_LR_RATIO
  c.model.hidden_dims = (16, 16)
  task = tasks.get_task(c)
  assert task.phases == 2
  from kexue_jax import optim, train  # pylint: disable=g-import-not-at-top
  tx, lr_fn = optim.make_optimizer(c.optimizer, c.num_train_steps)
  batch = _batch(b=16, unlabelled=True)
  params = jax.jit(task.init)(jax.random.key(0), batch)["params"]
  state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params), "extra": {}}
  new, metrics = jax.jit(train.make_train_step(task, tx, lr_fn, rng=jax.random.key(1), microbatches=1,
                                               guard_nonfinite=True))(state, batch)
  counts = lambda s: [int(inner[0].count) for inner in s["opt_state"].inner_states]
  assert counts(state) == [0, 0] and counts(new) == [1, 1] and int(new["opt_state"].phase) == 0
  assert {"ce", "kl", "kl_unlabelled"} <= set(metrics) and bool(metrics["finite"])
  with pytest.raises(ValueError, match="semi must be"):
    load_config("configs/rdrop/mnist1d.py", "labelled=0,semi=alternate")


def test_single_pass_is_plain_dropout_and_rejects_alpha():
  task = tasks.get_task(_mlp_config(alpha=0.0, passes="single"))
  batch = _batch()
  v = jax.jit(task.init)(jax.random.key(0), batch)
  loss, aux = task.loss(v, batch, jax.random.key(2))
  logits, _ = task.model.apply(v, batch["x"], train=True, rngs={"dropout": jax.random.key(2)})
  np.testing.assert_allclose(float(loss), np.mean(np_ce(np.asarray(logits, np.float64), np.asarray(batch["label"]))),
                             rtol=1e-5)
  assert set(aux["metrics"]) == {"ce", "accuracy"}
  with pytest.raises(ValueError, match="rdrop_alpha=0"):
    tasks.get_task(_mlp_config(alpha=4.0, passes="single"))


def test_two_pass_alpha0_control_is_ce_on_both_passes():
  """The control arm of R-Drop (alpha = 0, two passes): the same duplicated batch as R-Drop, the mean CE over
  both passes and no KL in the loss, against float64 NumPy on the logits of that same forward pass."""
  task = tasks.get_task(_mlp_config(alpha=0.0, passes="duplicate"))
  batch, rng = _batch(), jax.random.key(11)
  v = jax.jit(task.init)(jax.random.key(0), batch)
  loss, aux = task.loss(v, batch, rng)
  logits, _ = task.model.apply(v, jnp.concatenate([batch["x"]] * 2), train=True, rngs={"dropout": rng})
  z = np.asarray(logits, np.float64)
  b, y = 8, np.asarray(batch["label"])
  z1, z2 = z[:b], z[b:]
  ref = np.mean(np.concatenate([np_ce(z1, y), np_ce(z2, y)]))  # Su's code at alpha = 0: mean CE over 2B rows
  np.testing.assert_allclose(float(loss), ref, rtol=1e-6)
  np.testing.assert_allclose(float(aux["metrics"]["ce"]), ref, rtol=1e-6)
  # The passes differ (the KL is logged and not small) but it carries no weight in the loss.
  kl = np.mean(np_kl(z1, z2) + np_kl(z2, z1)) / 2
  assert kl > 1e-3
  np.testing.assert_allclose(float(aux["metrics"]["kl"]), kl, rtol=1e-4)
  # ... and it is not the one-pass baseline: that is the CE of the first pass alone.
  assert abs(ref - np.mean(np_ce(z1, y))) > 1e-3 * ref


# ------------------------------------------------------------------------------------ Consistency diagnostic.


def test_consistency_sums_match_numpy():
  rng = np.random.default_rng(1)
  z0, za, zb = (rng.normal(size=(7, 4)) * 2 for _ in range(3))
  pbar = np.exp(np_log_softmax(rng.normal(size=(7, 4)) * 2))
  y = rng.integers(0, 4, 7)
  out = classify.consistency_sums(*(jnp.asarray(a, jnp.float32) for a in (z0, pbar, za, zb)), jnp.asarray(y))
  p0 = np.exp(np_log_softmax(z0))
  ref = {"consistency_kl": (pbar * np.log(pbar / p0)).sum(-1),
         "consistency_disagree": (pbar.argmax(-1) != z0.argmax(-1)).astype(float),
         "mc_accuracy": (pbar.argmax(-1) == y).astype(float),
         "mc_loss": -np.log(pbar[np.arange(7), y]),
         "dropout_kl": (np_kl(za, zb) + np_kl(zb, za)) / 2}
  assert set(out) == set(ref)
  for k, v in ref.items():
    np.testing.assert_allclose(float(out[k][0]), v.sum(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert float(out[k][1]) == 7


def test_evaluate_dropout_kl_on_a_known_case():
  """The consistency gap (`dropout_kl`, the R-Drop term between two dropout passes on eval data) of an MLP whose
  single hidden unit is `a` when kept and 0 when dropped, read by a head with logits [0, h]: two passes give
  logits [0, a] or [0, 0]; their symmetric KL is s(a) when the masks differ (probability 2p(1-p)) and 0
  otherwise, so the batch mean is 2p(1-p) s(a) within its Bernoulli standard error."""
  p, a, n = 0.5, 3.0, 4096
  c = _mlp_config(dropout=p)
  c.model.hidden_dims, c.model.num_classes = (1,), 2
  task = tasks.get_task(c)
  task.mc_passes = 2
  x = np.zeros((n, 40), np.float32)
  x[:, 0] = a * (1 - p)  # kept: a (1-p) / (1-p) = a
  batch = {"x": jnp.asarray(x), "label": jnp.zeros((n,), jnp.int32)}
  v = jax.jit(task.init)(jax.random.key(0), batch)
  weights = {"fc0": {"kernel": np.eye(40, 1), "bias": np.zeros(1)}, "head": {"kernel": np.array([[0.0, 1.0]]),
                                                                           "bias": np.zeros(2)}}
  params = jax.tree.map(lambda old, w: old.replace_boxed(jnp.asarray(w, jnp.float32)) if hasattr(
      old, "replace_boxed") else jnp.asarray(w, jnp.float32), v["params"], weights,
      is_leaf=lambda t: hasattr(t, "replace_boxed"))
  out = {k: float(s) / float(m) for k, (s, m) in jax.jit(task.evaluate)({"params": params}, batch).items()}
  # NumPy float64: s(a) = 1/2 sum_k (p1_k - p2_k)(log p1_k - log p2_k) with p1 = softmax([0, a]), p2 = [1/2, 1/2].
  s_a = 0.5 * np.sum((np.exp(np_log_softmax(np.array([0.0, a]))) - 0.5) * (np_log_softmax(np.array([0.0, a]))
                                                                           - np.log(0.5)))
  q = 2 * p * (1 - p)
  se = s_a * np.sqrt(q * (1 - q) / n)
  assert abs(out["dropout_kl"] - q * s_a) < 4 * se, (out["dropout_kl"], q * s_a, se)
  # The dropout-off prediction is softmax([0, a (1-p)]): its loss on label 0 checks the weights took effect.
  np.testing.assert_allclose(out["loss"], -np_log_softmax(np.array([0.0, a * (1 - p)]))[0], rtol=1e-5)


def test_evaluate_monte_carlo():
  batch = _batch(16)
  for dropout in (0.0, 0.5):
    task = tasks.get_task(_mlp_config(dropout=dropout))
    task.mc_passes = 5
    v = jax.jit(task.init)(jax.random.key(0), batch)
    out = {k: float(s) / float(c) for k, (s, c) in jax.jit(task.evaluate)(v, batch).items()}
    logits, _ = task.model.apply(v, batch["x"])
    z = np.asarray(logits, np.float64)
    np.testing.assert_allclose(out["loss"], np.mean(np_ce(z, np.asarray(batch["label"]))), rtol=1e-5)
    if dropout == 0:  # every pass is the deterministic one
      assert out["consistency_kl"] == pytest.approx(0, abs=1e-6) and out["consistency_disagree"] == 0
      assert out["mc_accuracy"] == out["accuracy"] and out["dropout_kl"] == pytest.approx(0, abs=1e-6)
    else:
      assert out["consistency_kl"] > 1e-4 and out["dropout_kl"] > 1e-3
      # Pbar is the mean of 5 dropout passes: check it by hand with the same keys.
      keys = jax.random.split(jax.random.key(task.eval_seed), 5)
      probs = np.mean([np.exp(np_log_softmax(np.asarray(task.model.apply(
          v, batch["x"], dropout=True, rngs={"dropout": k})[0], np.float64))) for k in keys], axis=0)
      np.testing.assert_allclose(out["consistency_kl"], np.mean((probs * np.log(probs / np.exp(np_log_softmax(z)))).sum(-1)),
                                 rtol=1e-3)


# ---------------------------------------------------------------------------------------------- Data views.


class _FakeSource:
  def __init__(self, n):
    self.x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)

  def __len__(self):
    return len(self.x)

  def __getitem__(self, i):
    return {"x": self.x[i], "label": np.int64(i % 10)}


def test_semi_view_splits_labelled_and_unlabelled():
  cfg = _mlp_config(num_labelled=6).data
  ds = array_views.classification_semi(_FakeSource(20), cfg, train=True, seed=3)
  first = [ds[i] for i in range(6 * 4)]
  lab = [int(e["x"][0]) for e in first]
  unl = [int(ds[i]["x_unlabelled"][0]) for i in range(14 * 2)]
  for epoch in range(4):  # every labelled epoch is a permutation of the first 6 examples
    assert sorted(lab[6 * epoch:6 * epoch + 6]) == list(range(6))
  assert lab[:6] != lab[6:12]  # reshuffled per epoch
  assert sorted(unl[:14]) == list(range(6, 20)) and sorted(unl[14:]) == list(range(6, 20))
  assert all(int(e["label"]) == int(e["x"][0]) % 10 for e in first)
  again = array_views.classification_semi(_FakeSource(20), cfg, train=True, seed=3)
  assert [int(again[i]["x"][0]) for i in range(24)] == lab  # a pure function of (seed, index)
  ev = array_views.classification_semi(_FakeSource(20), cfg, train=False, seed=0)
  assert len(ev) == 20 and "x_unlabelled" not in ev[0]


def test_inmemory_view_matches_classification():
  src = _FakeSource(12)
  cfg = _mlp_config().data
  ev = array_views.classification_inmemory(src, cfg, train=False, seed=0)
  for i in range(12):
    np.testing.assert_array_equal(ev[i]["x"], src[i]["x"])
    assert int(ev[i]["label"]) == i % 10
  tr = array_views.classification_inmemory(src, cfg, train=True, seed=0)
  assert sorted(int(tr[i]["x"][0]) for i in range(12, 24)) == list(range(12))


def test_text_bytes_view():
  src = [{"sentence": b"a good film", "label": 1}, {"sentence": "bad", "label": 0}]
  cfg = _mlp_config(seq_len=8, text_key="sentence").data
  ev = text_views.text_bytes(src, cfg, train=False, seed=0)
  np.testing.assert_array_equal(ev[0]["tokens"], [vocab.CLS_ID] + list(b"a good "))
  np.testing.assert_array_equal(ev[1]["tokens"], [vocab.CLS_ID] + list(b"bad") + [vocab.PAD_ID] * 4)
  assert [int(ev[i]["label"]) for i in range(2)] == [1, 0]
  tr = text_views.text_bytes(src, cfg, train=True, seed=0)
  assert sorted(int(tr[i]["label"]) for i in range(2, 4)) == [0, 1]


def test_text_and_standin_views():
  toks = text_views.bytes_to_tokens("hé", 6)
  np.testing.assert_array_equal(toks, [vocab.CLS_ID, 104, 195, 169, vocab.PAD_ID, vocab.PAD_ID])
  assert len(text_views.bytes_to_tokens(b"x" * 100, 8)) == 8
  ex = {"x": np.linspace(-1, 1, 40).astype(np.float32), "label": 3}
  img = array_views._StandinImages((8, 8, 3))(ex)  # pylint: disable=protected-access
  assert img["x"].shape == (8, 8, 3) and img["x"].dtype == np.float32 and int(img["label"]) == 3
  tok = text_views._StandinTokens(48)(ex)  # pylint: disable=protected-access
  assert tok["tokens"].shape == (48,) and tok["tokens"][0] == vocab.CLS_ID
  assert tok["tokens"][1:41].max() <= 255 and (tok["tokens"][41:] == vocab.PAD_ID).all()


def _cnn_has_dropout():
  return "dropout_rate" in {f.name for f in dataclasses.fields(cnn_lib.CNN1D)}


@pytest.mark.skipif(not _cnn_has_dropout(), reason="CNN1D has no dropout_rate yet")
def test_cnn1d_dropout_flag():
  """dropout_rate=0 is the old module; dropout is on iff `dropout` (default `train`), BN independent of it."""
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 40)), jnp.float32)
  m0 = cnn_lib.CNN1D(num_classes=10, channels=(4, 6), strides=(1, 2))
  m = cnn_lib.CNN1D(num_classes=10, channels=(4, 6), strides=(1, 2), dropout_rate=0.5)
  v = m0.init(jax.random.key(0), x)
  assert jax.tree.structure(v) == jax.tree.structure(m.init(jax.random.key(0), x))
  rngs = {"dropout": jax.random.key(1)}
  base = m0.apply(v, x)[0]
  np.testing.assert_array_equal(m.apply(v, x)[0], base)  # eval: no dropout
  np.testing.assert_array_equal(m0.apply(v, x, dropout=True, rngs=rngs)[0], base)  # rate 0: nothing to drop
  mc = m.apply(v, x, dropout=True, rngs=rngs)[0]  # MC dropout with BN running averages
  assert float(jnp.abs(mc - base).max()) > 1e-3
  (t0, _), s0 = m0.apply(v, x, train=True, mutable=["batch_stats"])
  (t1, _), s1 = m.apply(v, x, train=True, dropout=False, mutable=["batch_stats"])
  np.testing.assert_array_equal(t0, t1)
  (t2, _), _ = m.apply(v, x, train=True, mutable=["batch_stats"], rngs=rngs)
  assert float(jnp.abs(t2 - t0).max()) > 1e-3


# ------------------------------------------------------------------------------------------ The config grid.


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_mnist1d_config_expresses_the_rdrop_grid(model):
  """Every arm of #16's grid (alpha in {0 one-pass, 0 two-pass, 0.5, 1, 2, 4} x p in {0.1, 0.3}, full data and
  n = 1000) and the semi-supervised arm are config arguments; the step count defaults to the measured one."""
  arms = [(0.0, "single"), (0.0, "duplicate")] + [(a, "duplicate") for a in (0.5, 1.0, 2.0, 4.0)]
  for (alpha, passes), p, n in itertools.product(arms, (0.1, 0.3), (0, 1000)):
    c = load_config("configs/rdrop/mnist1d.py", f"model={model},alpha={alpha},passes={passes},dropout={p},"
                                                f"train_size={n},seed=3")
    assert (c.task.rdrop_alpha, c.task.passes, c.model.dropout_rate, c.seed) == (alpha, passes, p, 3)
    assert c.data.train_split == ("train" if n == 0 else "train[:1000]")
    assert c.num_train_steps == MNIST1D.STEPS[(model, n or 4000)]
    tasks.get_task(c)  # the task accepts every arm (alpha=0 one-pass included)
  c = load_config("configs/rdrop/mnist1d.py", f"model={model},steps=123,lr=0.5,width=7,eval_every=50")
  assert c.num_train_steps == 123 and c.optimizer.learning_rate == 0.5 and c.eval_every_steps == 50
  assert c.model.get("hidden_dims", c.model.get("channels"))[0] == 7
  # An unmeasured size takes the nearest measured one's count.
  assert load_config("configs/rdrop/mnist1d.py", f"model={model},train_size=1100").num_train_steps == (
      MNIST1D.STEPS[(model, 1000)])


def test_mnist1d_config_semi_supervised_arm():
  for labelled in MNIST1D.SEMI_LABELLED:
    semi = load_config("configs/rdrop/mnist1d.py", f"model=cnn,labelled={labelled},alpha=0,passes=duplicate")
    base = load_config("configs/rdrop/mnist1d.py", f"model=cnn,labelled={labelled},unlabelled=False,alpha=0,"
                                                   "passes=single")
    assert semi.data.preprocess == "classification_semi" and semi.data.num_labelled == labelled
    assert base.data.train_split == f"train[:{labelled}]"
    assert semi.task.unlabelled_alpha == 4.0 and semi.num_train_steps == base.num_train_steps
    for beta in MNIST1D.SEMI_BETAS:   # the smaller-β arms: only the KL weight differs
      other = load_config("configs/rdrop/mnist1d.py", f"model=cnn,labelled={labelled},alpha=0,passes=duplicate,"
                                                      f"beta={beta:g}")
      assert other.task.unlabelled_alpha == beta and other.num_train_steps == semi.num_train_steps
      assert other.data.to_dict() == semi.data.to_dict() and other.model.to_dict() == semi.model.to_dict()


# ------------------------------------------------------------------------------------------------- Smoke.

RDROP_CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "rdrop", "*.py"))
                       if not os.path.basename(p).startswith("_"))
VARIANTS = [(p, "runlocal") for p in RDROP_CONFIGS] + [
    ("configs/rdrop/mnist1d.py", "runlocal,labelled=40"),
    ("configs/rdrop/mnist1d.py", "runlocal,model=cnn")]
# Compiling the Transformer / ViT stand-ins takes ~10-25 s on a loaded 2-core CPU: those run with --runslow here,
# and tests/test_configs.py trains every config (these included) for 2 steps through train.run anyway.
SMOKE = [pytest.param(p, a, marks=[pytest.mark.slow] if "mnist1d" not in p else []) for p, a in VARIANTS]


def _setup(path, arg):
  c = load_config(path, arg)
  if c.model.name == "cnn1d" and not _cnn_has_dropout():
    pytest.skip("CNN1D has no dropout_rate yet")
  task = tasks.get_task(c)
  batch = jax.tree.map(jnp.asarray, next(pipeline.make_train_iter(c.data, seed=0, global_batch_size=c.batch_size)))
  eval_batch = jax.tree.map(jnp.asarray, next(iter(pipeline.make_eval_iter(
      c.data, split=c.data.eval_split, global_batch_size=c.batch_size, num_batches=1))))
  return c, task, batch, eval_batch


@pytest.mark.parametrize("path,arg", VARIANTS)
def test_rdrop_config_builds(path, arg):
  """Every rdrop config at runlocal: config, task and data build; init / loss / evaluate trace (no compile)."""
  c, task, batch, eval_batch = _setup(path, arg)
  assert batch["label"].shape == (c.batch_size,)
  v = jax.eval_shape(task.init, jax.random.key(0), batch)
  loss, aux = jax.eval_shape(lambda v: task.loss(v, batch, jax.random.key(1)), v)
  assert loss.shape == () and ("kl" in aux["metrics"]) == (c.task.passes != "single")
  assert ("kl_unlabelled" in aux["metrics"]) == ("x_unlabelled" in batch)
  out = jax.eval_shape(lambda v: task.evaluate(v, eval_batch), v)
  assert {"accuracy", "loss", "consistency_kl", "consistency_disagree", "mc_accuracy"} <= set(out)


@pytest.mark.parametrize("path,arg", SMOKE)
def test_rdrop_config_smoke(path, arg):
  """One compiled loss/grad and one evaluation of every rdrop config at runlocal are finite."""
  c, task, batch, eval_batch = _setup(path, arg)
  v = jax.jit(task.init)(jax.random.key(0), batch)
  (loss, aux), g = jax.jit(jax.value_and_grad(
      lambda p: task.loss({**v, "params": p}, batch, jax.random.key(1)), has_aux=True))(v["params"])
  assert np.isfinite(float(loss)) and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(g))
  assert all(np.isfinite(float(m)) for m in aux["metrics"].values())
  out = jax.jit(task.evaluate)(v, eval_batch)
  assert all(np.isfinite(float(s)) and float(n) == c.batch_size for s, n in out.values())
