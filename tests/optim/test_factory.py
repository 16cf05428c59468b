"""make_optimizer / default_optimizer_config: schedules vs closed forms, chain pieces."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from kexue_jax import optim

KEYS = {"name", "learning_rate", "b1", "b2", "beta", "rms_lr_scaling", "eps",
        "momentum", "weight_decay", "schedule", "warmup_steps", "min_lr_ratio",
        "clip_grad_norm", "decay_embeddings", "skip_nonfinite",
        "grad_accum_steps", "mu_dtype", "nonfinite_rule", "lazy_embeddings"}


def cfg(**kw):
  c = optim.default_optimizer_config()
  c.warmup_steps = 0  # the default (100) exceeds these tests' step counts
  c.update(kw)
  return c


def params():
  r = np.random.RandomState(0)
  return {"embed": {"embedding": jnp.asarray(r.randn(10, 4), jnp.float32)},
          "dense": {"kernel": jnp.asarray(r.randn(4, 3), jnp.float32),
                    "bias": jnp.asarray(r.randn(3), jnp.float32)}}


def test_default_config_keys_and_values():
  c = optim.default_optimizer_config()
  assert isinstance(c, ml_collections.ConfigDict)
  assert set(c.keys()) == KEYS
  assert (c.name, c.learning_rate, c.b1, c.b2) == ("lion", 3e-4, 0.9, 0.99)


def np_schedule(kind, t, peak, total, warmup, ratio):
  """Closed forms, float64."""
  if t < warmup:
    return peak * t / warmup
  end = ratio * peak
  frac = min((t - warmup) / max(total - warmup, 1), 1.0)
  if kind == "cosine":
    return end + (peak - end) * 0.5 * (1 + math.cos(math.pi * frac))
  if kind == "linear":
    return peak + (end - peak) * frac
  if kind == "constant":
    return peak
  tau = max(warmup, 1)
  return max(peak * math.sqrt(tau / max(t, tau)), end)


@pytest.mark.parametrize("kind", optim.SCHEDULES)
@pytest.mark.parametrize("warmup", [0, 10])
def test_schedules_match_closed_forms(kind, warmup):
  tx, lr = optim.make_optimizer(
      cfg(schedule=kind, warmup_steps=warmup, learning_rate=1e-3,
          min_lr_ratio=0.1), 100)
  for t in [0, 1, 5, 9, 10, 11, 37, 50, 99, 100, 150]:
    np.testing.assert_allclose(
        float(lr(t)), np_schedule(kind, t, 1e-3, 100, warmup, 0.1),
        rtol=1e-5, atol=1e-12, err_msg=f"{kind} t={t}")


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_every_optimizer_builds_and_steps(name):
  p = params()
  tx, _ = optim.make_optimizer(
      cfg(name=name, warmup_steps=0, schedule="constant", mu_dtype="bfloat16"),
      10)
  s = tx.init(p)
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  g = jax.tree.map(jnp.ones_like, p)
  for _ in range(2):
    u, s = step(p, s, g)
    p = optax.apply_updates(p, u)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))
  moments = [x for x in jax.tree.leaves(s) if x.ndim >= 1]
  assert any(x.dtype == jnp.bfloat16 for x in moments)


@pytest.mark.parametrize("decay_embeddings", [True, False])
def test_decay_mask_in_lion(decay_embeddings):
  """Zero gradients and momentum: sign(0) = 0, so the update is -lr·λ·θ on the
  decayed leaves and exactly 0 elsewhere (biases; embeddings if excluded)."""
  p = params()
  tx, _ = optim.make_optimizer(
      cfg(warmup_steps=0, schedule="constant", learning_rate=0.01,
          weight_decay=0.5, decay_embeddings=decay_embeddings), 10)
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, p), tx.init(p), p)
  np.testing.assert_allclose(u["dense"]["kernel"],
                             -0.01 * 0.5 * p["dense"]["kernel"], rtol=1e-6)
  np.testing.assert_array_equal(u["dense"]["bias"], 0.0)
  emb = u["embed"]["embedding"]
  if decay_embeddings:
    np.testing.assert_allclose(emb, -0.005 * p["embed"]["embedding"],
                               rtol=1e-6)
  else:
    np.testing.assert_array_equal(emb, 0.0)


def test_clip_grad_norm():
  p = params()
  tx, _ = optim.make_optimizer(
      cfg(name="sgd", momentum=0.0, weight_decay=0.0, schedule="constant",
          warmup_steps=0, learning_rate=1.0, clip_grad_norm=2.0), 10)
  g = jax.tree.map(lambda x: 3.0 * jnp.ones_like(x), p)
  norm = math.sqrt(sum(9.0 * x.size for x in jax.tree.leaves(p)))
  u, _ = tx.update(g, tx.init(p), p)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, -2.0 * b / norm,
                                                       rtol=1e-6), u, g)


@pytest.mark.parametrize("name", ["tiger"])
def test_grad_accumulation_and_nonfinite(name):
  p = params()
  tx, _ = optim.make_optimizer(
      cfg(name=name, grad_accum_steps=2, skip_nonfinite=True, warmup_steps=0,
          schedule="constant"), 10)
  s = tx.init(p)
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  g = jax.tree.map(jnp.ones_like, p)
  bad = jax.tree.map(lambda x: x.at[0].set(jnp.nan), g)
  nonzero = []
  for gg in [g, g, bad, g, g]:
    u, s = step(p, s, gg)
    nonzero.append(any(bool(jnp.any(x != 0)) for x in jax.tree.leaves(u)))
    p = optax.apply_updates(p, u)
  assert int(optim.num_skipped_steps(s)) == 1
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p))
  # Update on every 2nd micro-step. Tiger skips the NaN micro-batch only, the
  # next one takes its place.
  expected = {"tiger": [False, True, False, False, True]}[name]
  assert nonzero == expected


@pytest.mark.parametrize("change,match", [
    (dict(name="adam"), r"lion.*adamw.*tiger.*sgd"),
    (dict(schedule="step"), r"cosine.*constant.*linear.*rsqrt"),
    (dict(warmup_steps=20), "warmup_steps"),
    (dict(min_lr_ratio=2.0), "min_lr_ratio"),
    (dict(grad_accum_steps=0), "grad_accum_steps"),
    (dict(grad_accum_steps=2), "config.microbatches=2"),
    (dict(name="adamw", grad_accum_steps=4), "config.microbatches=4"),
    (dict(name="tiger", grad_accum_steps=2,
          param_groups=[{"pattern": "embed", "name": "adamw"}]), "microbatches"),
    (dict(nonfinite_rule="nan"), "nonfinite_rule"),
    (dict(skip_nonfinite=True, nonfinite_rule="shrink"), "tiger"),
    (dict(name="tiger", skip_nonfinite=True, nonfinite_rule="shrink"), "clip_grad_norm=0"),
    (dict(name="adamw", lazy_embeddings=True), "lazy_embeddings"),
    (dict(param_groups=[{"pattern": "embed", "name": "adam"}]), "param_groups"),
    (dict(weight_decay=-1.0), "weight_decay"),
    (dict(mu_dtype="int8"), "mu_dtype"),
    (dict(b1=1.0), "b1"),
])
def test_bad_config_raises(change, match):
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(cfg(**change), 10)


def test_unknown_key_raises():
  c = ml_collections.ConfigDict({"name": "lion", "lr": 1e-3})
  with pytest.raises(ValueError, match="lr"):
    optim.make_optimizer(c, 10)
  # partial configs start from the defaults
  tx, lr = optim.make_optimizer(ml_collections.ConfigDict(
      {"name": "adamw", "warmup_steps": 0}), 10)
  assert isinstance(tx, optax.GradientTransformation)
