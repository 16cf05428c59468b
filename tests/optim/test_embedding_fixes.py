"""Su's embedding anomaly under Lion/Tiger (https://kexue.fm/archives/9736) and
the fixes as options: lazy rows, AdamW for embeddings via the factory's param
groups; the model's tied embeddings; the Amos-derived lr/wd recipe."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from kexue_jax import optim

V, D = 5, 3


def table_params(seed=0):
  r = np.random.RandomState(seed)
  return {"embed": {"embedding": jnp.asarray(0.02 * r.randn(V, D), jnp.float32)},
          "dense": {"kernel": jnp.asarray(r.randn(D, 2), jnp.float32)}}


def rare_token_grads(steps, seed=1):
  """Row 0 (a rare token) gets a gradient at step 0 only; rows 1.. every step."""
  r = np.random.RandomState(seed)
  out = []
  for t in range(steps):
    emb = r.randn(V, D)
    if t > 0:
      emb[0] = 0.0
    out.append({"embed": {"embedding": jnp.asarray(emb, jnp.float32)},
                "dense": {"kernel": jnp.asarray(r.randn(D, 2), jnp.float32)}})
  return out


def run(tx, params, grads):
  update = jax.jit(tx.update)
  state = tx.init(params)
  for g in grads:
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
  return params, state


def numpy_lazy_lion(params, grads, lr, wd, b1=0.9, b2=0.99, lazy=True):
  """float64 Lion; with `lazy`, embedding rows with an all-zero gradient keep
  their parameters and momentum (TF LazyAdam's rule)."""
  th = {k: np.asarray(v, np.float64) for k, v in
        {"e": params["embed"]["embedding"], "k": params["dense"]["kernel"]}.items()}
  m = {k: np.zeros_like(v) for k, v in th.items()}
  for gt in grads:
    g = {"e": np.asarray(gt["embed"]["embedding"], np.float64),
         "k": np.asarray(gt["dense"]["kernel"], np.float64)}
    for k in th:
      c = b1 * m[k] + (1 - b1) * g[k]
      new_th = th[k] - lr * (np.sign(c) + wd * th[k])
      new_m = b2 * m[k] + (1 - b2) * g[k]
      if lazy and k == "e":
        rows = np.any(g[k] != 0, axis=1, keepdims=True)
        new_th = np.where(rows, new_th, th[k])
        new_m = np.where(rows, new_m, m[k])
      th[k], m[k] = new_th, new_m
  return th, m


def test_anomaly_rare_row_drifts_to_one_over_lambda():
  """Without a fix, the once-seen row keeps stepping on its stale momentum
  (sign fixed) until the decay balances it: |θ| -> 1/λ (to within lr)."""
  lr, wd = 0.01, 2.0
  params, grads = table_params(), rare_token_grads(1500)
  p, _ = run(optim.lion(lr, weight_decay=wd), params, grads)
  row = np.asarray(p["embed"]["embedding"][0])
  np.testing.assert_allclose(np.abs(row), 1.0 / wd, atol=2 * lr)
  assert np.abs(np.asarray(params["embed"]["embedding"][0])).max() < 0.1


@pytest.mark.parametrize("lazy", [False, True])
def test_lazy_rows_match_numpy(lazy):
  lr, wd = 0.01, 0.5
  params, grads = table_params(2), rare_token_grads(30, seed=3)
  p, s = run(optim.lion(lr, weight_decay=wd, lazy_embeddings=lazy), params,
             grads)
  th, m = numpy_lazy_lion(params, grads, lr, wd, lazy=lazy)
  np.testing.assert_allclose(p["embed"]["embedding"], th["e"], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(p["dense"]["kernel"], th["k"], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(s[0].mu["embed"]["embedding"], m["e"], rtol=1e-5,
                             atol=1e-7)


@pytest.mark.parametrize("name", ["lion", "tiger"])
def test_lazy_rows_fix_the_anomaly(name):
  lr, wd = 0.01, 2.0
  params, grads = table_params(), rare_token_grads(400)
  tx = (optim.lion(lr, weight_decay=wd, lazy_embeddings=True) if name == "lion"
        else optim.tiger(lr, weight_decay=wd, lazy_embeddings=True))
  p, _ = run(tx, params, grads)
  once = run(tx, params, grads[:1])[0]  # the row moves on its one step only
  np.testing.assert_array_equal(p["embed"]["embedding"][0],
                                once["embed"]["embedding"][0])


def test_lazy_only_touches_embedding_leaves():
  """A zero-gradient row of a non-embedding matrix still gets the decay."""
  params = table_params(4)
  g = jax.tree.map(jnp.zeros_like, params)
  tx = optim.lion(0.1, weight_decay=0.5, lazy_embeddings=True)
  u, _ = tx.update(g, tx.init(params), params)
  np.testing.assert_array_equal(u["embed"]["embedding"], 0.0)
  np.testing.assert_allclose(u["dense"]["kernel"],
                             -0.1 * 0.5 * np.asarray(params["dense"]["kernel"]),
                             rtol=1e-6)


def test_factory_adamw_for_embeddings():
  """Fix (c): param_groups route the embedding to AdamW, the rest to Lion."""
  c = optim.default_optimizer_config()
  c.update(warmup_steps=0, schedule="constant", clip_grad_norm=0.0,
           weight_decay=0.5, learning_rate=0.01)
  c.param_groups = [{"pattern": "embed", "name": "adamw", "learning_rate": 1e-3,
                     "weight_decay": 0.01, "b2": 0.999}]
  tx, _ = optim.make_optimizer(c, 10)
  params, grads = table_params(5), rare_token_grads(20, seed=6)
  p, _ = run(tx, params, grads)
  mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)
  emb_ref, _ = run(optax.adamw(1e-3, b1=0.9, b2=0.999, eps=1e-8,
                               weight_decay=0.01, mask=mask),
                   params["embed"], [g["embed"] for g in grads])
  rest_ref, _ = run(optim.lion(0.01, weight_decay=0.5), params["dense"],
                    [g["dense"] for g in grads])
  np.testing.assert_allclose(p["embed"]["embedding"], emb_ref["embedding"],
                             rtol=1e-6)
  np.testing.assert_allclose(p["dense"]["kernel"], rest_ref["kernel"],
                             rtol=1e-6)


def test_factory_lazy_embeddings_key():
  c = optim.default_optimizer_config()
  c.update(warmup_steps=0, schedule="constant", clip_grad_norm=0.0,
           weight_decay=0.5, learning_rate=0.01, lazy_embeddings=True)
  tx, _ = optim.make_optimizer(c, 10)
  params, grads = table_params(2), rare_token_grads(30, seed=3)
  p, _ = run(tx, params, grads)
  th, _ = numpy_lazy_lion(params, grads, 0.01, 0.5, lazy=True)
  np.testing.assert_allclose(p["embed"]["embedding"], th["e"], rtol=1e-5,
                             atol=1e-6)


def test_model_ties_embeddings_by_default():
  """Fix (b) lives in the model: tied input/output embeddings give every row a
  gradient each step (through the softmax), so no row is stale."""
  from kexue_jax.nn import transformer  # pylint: disable=g-import-not-at-top
  fields = transformer.TransformerLM.__dataclass_fields__
  assert fields["tie_embedding"].default is True


def test_amos_recipe_reproduces_sus_bert_example():
  hp = optim.amos_lion_hparams(alpha0=1.11e-3, init_std=0.036)
  # Su (kexue.fm/archives/9473): lr ≈ 4e-5, λ ≈ 0.015 for BERT-base.
  assert hp["learning_rate"] == pytest.approx(1.11e-3 * 0.036)
  assert hp["weight_decay"] == pytest.approx(1.11e-3 / 0.072)
  assert round(hp["learning_rate"], 6) == 4e-5
  assert round(hp["weight_decay"], 3) == 0.015
  with pytest.raises(ValueError, match="init_std"):
    optim.amos_lion_hparams(1e-3, 0.0)


def test_embedding_row_max_abs_monitor():
  """The anomaly's symptom, max_j |E[v, j]| per row, on embedding leaves only."""
  params = table_params(7)
  params["tok_embed"] = jnp.asarray(np.random.RandomState(8).randn(4, 2, 3),
                                    jnp.float32)
  out = optim.embedding_row_max_abs(params)
  assert set(out) == {"embed/embedding", "tok_embed"}
  np.testing.assert_array_equal(
      out["embed/embedding"],
      np.abs(np.asarray(params["embed"]["embedding"])).max(axis=1))
  np.testing.assert_array_equal(
      out["tok_embed"], np.abs(np.asarray(params["tok_embed"])).max(axis=(1, 2)))
  # after the anomaly run the rare row stands out at ~1/λ
  p, _ = run(optim.lion(0.01, weight_decay=2.0), table_params(),
             rare_token_grads(1500))
  r = np.asarray(optim.embedding_row_max_abs(p)["embed/embedding"])
  assert abs(r[0] - 0.5) < 0.02 and r[0] > r[1:].max()
