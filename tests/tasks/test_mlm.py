"""MLM / MAE as dropout (issue #8): masking statistics, the embedding correction against NumPy float64,
gather-based DropToken == attention-column masking (NumPy float64 transcription), MAE shapes, init_from with the
correction, the downstream data view, the full configs (the study: tests/experiments/)."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.helpers import load_config
from kexue_jax import checkpoint
from kexue_jax import tasks
from kexue_jax import train
from kexue_jax import vocab
from kexue_jax.data import pipeline
from kexue_jax.data import text_views
from kexue_jax.nn import classifiers
from kexue_jax.nn import token_drop
from kexue_jax.nn import transformer as tfm
from kexue_jax.tasks import mlm
from tests.nn.test_transformer import np_gelu, np_layernorm, np_mha


# ------------------------------------------------------------------------------------- Masking statistics.


def _byte_batch(B=32, L=64, num_pad=6, seed=0):
  rng = np.random.RandomState(seed)
  tokens = rng.randint(0, 256, size=(B, L)).astype(np.int32)
  tokens[:, 0] = vocab.CLS_ID
  tokens[: B // 2, L - num_pad:] = vocab.PAD_ID
  return tokens


def test_bert_mask_statistics_over_many_draws():
  tokens = _byte_batch()
  maskable = tokens < 256
  draws = 200
  inputs, selected = jax.vmap(lambda k: mlm.bert_mask(k, jnp.asarray(tokens), jnp.asarray(maskable)))(
      jax.random.split(jax.random.key(0), draws))
  inputs, selected = np.asarray(inputs), np.asarray(selected)
  tok = np.broadcast_to(tokens, inputs.shape)
  n_maskable = draws * maskable.sum()
  assert not selected[:, ~maskable].any()                                     # [CLS] / [PAD] never selected
  np.testing.assert_array_equal(inputs[~selected], tok[~selected])            # unselected untouched
  frac = selected.sum() / n_maskable
  assert abs(frac - 0.15) < 5 * np.sqrt(0.15 * 0.85 / n_maskable)
  sel_in, sel_tok = inputs[selected], tok[selected]
  n = sel_in.size
  p_mask = np.mean(sel_in == vocab.MASK_ID)
  p_same = np.mean(sel_in == sel_tok)
  p_other = np.mean((sel_in != vocab.MASK_ID) & (sel_in != sel_tok))
  # A random byte equals the original with probability 1/256.
  for got, want in ((p_mask, 0.8), (p_same, 0.1 + 0.1 / 256), (p_other, 0.1 * 255 / 256)):
    assert abs(got - want) < 5 * np.sqrt(want * (1 - want) / n), (got, want)
  assert sel_in[sel_in != vocab.MASK_ID].max() < 256                           # replacements are bytes
  # Random replacements are uniform over the 256 bytes (chi-square, 255 dof: mean 255, sd 22.6).
  repl = sel_in[(sel_in != vocab.MASK_ID) & (sel_in != sel_tok)]
  counts = np.bincount(repl, minlength=256)
  expected = len(repl) / 256 * np.ones(256)
  expected_adj = expected  # originals are uniform too, so excluding "same" keeps uniformity
  chi2 = ((counts - expected_adj) ** 2 / expected_adj).sum()
  assert chi2 < 255 + 5 * 22.6
  again, _ = mlm.bert_mask(jax.random.key(5), jnp.asarray(tokens), jnp.asarray(maskable))
  again2, _ = mlm.bert_mask(jax.random.key(5), jnp.asarray(tokens), jnp.asarray(maskable))
  np.testing.assert_array_equal(again, again2)                               # deterministic given the key


def test_keep_drop_indices():
  tokens = _byte_batch(B=8, L=20, num_pad=4)
  K = token_drop.num_kept(20, 0.25)
  assert K == 1 + round(0.75 * 19)
  draws = 400
  keep, drop = jax.vmap(lambda k: token_drop.keep_drop_indices(k, jnp.asarray(tokens), K))(
      jax.random.split(jax.random.key(1), draws))
  keep, drop = np.asarray(keep), np.asarray(drop)
  assert keep.shape == (draws, 8, K) and drop.shape == (draws, 8, 20 - K)
  np.testing.assert_array_equal(np.sort(np.concatenate([keep, drop], -1), -1),
                                np.broadcast_to(np.arange(20), (draws, 8, 20)))
  assert (keep[..., 0] == 0).all() and (np.diff(keep, axis=-1) > 0).all()
  # Padded rows (first 4): the 4 [PAD] positions are dropped first.
  assert np.isin(np.arange(16, 20), drop[:, :4]).all()
  # Unpadded rows: every byte position is dropped with probability (20 - K) / 19.
  freq = np.array([(drop[:, 4:] == j).any(-1).mean() for j in range(1, 20)])
  want = (20 - K) / 19
  assert np.abs(freq - want).max() < 5 * np.sqrt(want * (1 - want) / (draws * 4))
  with pytest.raises(ValueError, match="drop rate"):
    token_drop.num_kept(20, 1.0)


# ------------------------------------------------------------------------------- Embedding correction.


def np_correction(E, r, m, mask_frac=0.8, random_frac=0.1, mean_rows=256):
  """Su's formula row by row in float64: E_i <- (1-r) E_i + r (0.8 E_m + 0.1 E_i + 0.1 mean E)."""
  E = np.asarray(E, np.float64)
  mean = sum(E[j] for j in range(mean_rows)) / mean_rows
  keep = 1 - mask_frac - random_frac
  return np.stack([(1 - r) * E[i] + r * (mask_frac * E[m] + keep * E[i] + random_frac * mean)
                   for i in range(E.shape[0])])


@pytest.mark.parametrize("r", [0.15, 0.4])
def test_embedding_correction_matches_numpy(r):
  E = np.random.RandomState(0).randn(vocab.VOCAB_SIZE, 16)
  want = np_correction(E, r, vocab.MASK_ID)
  np.testing.assert_allclose(mlm.embedding_correction(E, r), want, rtol=1e-12, atol=1e-12)
  got32 = mlm.embedding_correction(jnp.asarray(E, jnp.float32), r)
  assert got32.dtype == jnp.float32
  np.testing.assert_allclose(got32, want, rtol=1e-5, atol=1e-5)
  params = {"encoder": {"embed": {"embedding": E}, "block0": {"w": np.ones(3)}}, "head": {"k": np.zeros(2)}}
  out = mlm.correct_params(params, r)
  np.testing.assert_allclose(out["encoder"]["embed"]["embedding"], want, rtol=1e-12, atol=1e-12)
  assert out["encoder"]["block0"] is params["encoder"]["block0"] and out["head"] is params["head"]
  np.testing.assert_array_equal(params["encoder"]["embed"]["embedding"], E)  # input not modified
  with pytest.raises(ValueError, match="mask rate"):
    mlm.embedding_correction(E, 1.5)


@pytest.mark.parametrize("r", [0.15, 0.5])
def test_expected_masked_embedding_is_the_corrected_embedding(r):
  """Su's correction is the expectation of the embedded input over BERT masking at rate r:
  E[E_emb[bert_mask(x)_i]] = embedding_correction(E, r)[x_i] for every byte x_i (Monte Carlo, 5 SE)."""
  E = np.random.default_rng(0).normal(size=(vocab.VOCAB_SIZE, 4))
  tokens = jnp.asarray(np.random.default_rng(1).integers(0, 256, (1, 48)), jnp.int32)
  draws = 6000
  inputs = jax.vmap(lambda k: mlm.bert_mask(k, tokens, tokens < 256, rate=r)[0][0])(
      jax.random.split(jax.random.key(2), draws))
  emb_DLd = E[np.asarray(inputs)]
  got, se = emb_DLd.mean(0), emb_DLd.std(0) / np.sqrt(draws)
  want = np_correction(E, r, vocab.MASK_ID)[np.asarray(tokens[0])]
  assert (np.abs(got - want) < 5 * se + 1e-12).all()
  plain = E[np.asarray(tokens[0])]
  assert np.abs(got - plain).max() > 10 * se.max()     # the uncorrected embedding is not the expectation


# ------------------------------------------------------------------- DropToken == attention-column masking.


def np_encoder_logits(p, tokens_L, valid_L, pool="first"):
  """1-layer pre-norm encoder in float64 with key-padding (attention-column) mask `valid_L`; logits of the
  [CLS] state (pool="first") or of the mean of the states at the valid (kept) positions (pool="mean")."""
  e = p["encoder"]
  b = e["block0"]
  ln = lambda name, x: np_layernorm(x, name["scale"], name["bias"])
  x = e["embed"]["embedding"][tokens_L]
  pos = np.arange(len(tokens_L))
  x = x + np_mha(b["attn"], ln(b["norm_attn"], x), pos, causal=False, valid_L=valid_L)
  x = x + np_gelu(ln(b["norm_mlp"], x) @ b["mlp"]["wi"]["kernel"]) @ b["mlp"]["wo"]["kernel"]
  h = ln(e["final_norm"], x)
  pooled = h[0] if pool == "first" else sum(h[l] for l in range(len(tokens_L)) if valid_L[l]) / valid_L.sum()
  return pooled @ p["head"]["out"]["kernel"] + p["head"]["out"]["bias"]


def _classifier(drop, pool="first"):
  enc = tfm.TransformerEncoder(vocab_size=vocab.VOCAB_SIZE, num_layers=1, embed_dim=8, num_heads=2, head_dim=4,
                               mlp_dim=16, norm="pre", tie_embedding=False)
  return classifiers.DropTokenClassifier(enc, num_classes=3, drop_token=drop, pool=pool)


@pytest.mark.parametrize("pool", ["first", "mean"])   # the study fine-tunes with pool="mean"
def test_droptoken_gather_equals_attention_column_masking(pool):
  B, L = 3, 12
  tokens = _byte_batch(B=B, L=L, num_pad=0, seed=3)
  model = _classifier(0.4, pool)
  variables = model.init({"params": jax.random.key(0)}, tokens)
  params = _perturbed(nn.unbox(variables["params"]))
  # The real training path: keep positions drawn from the 'droptoken' rng, sown for inspection.
  logits, inter = model.apply({"params": params}, tokens, train=True, rngs={"droptoken": jax.random.key(11)},
                              mutable=["intermediates"])
  keep = np.asarray(inter["intermediates"]["keep_BK"][0])
  assert keep.shape == (B, token_drop.num_kept(L, 0.4)) and (keep[:, 0] == 0).all()
  valid = np.zeros((B, L), bool)
  valid[np.arange(B)[:, None], keep] = True
  # Independent: all tokens, dropped columns masked (JAX encoder; the head pools the kept positions) and a NumPy
  # float64 transcription.
  h = model.encoder.apply({"params": params["encoder"]}, jnp.asarray(tokens), padding_mask_BL=jnp.asarray(valid),
                          method=model.encoder.hidden)
  pooled = h[:, 0] if pool == "first" else jnp.sum(h * valid[..., None], 1) / valid.sum(1, keepdims=True)
  masked = pooled @ params["head"]["out"]["kernel"] + params["head"]["out"]["bias"]
  np.testing.assert_allclose(logits, masked, rtol=1e-5, atol=1e-5)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  ref = np.stack([np_encoder_logits(p64, tokens[b], valid[b], pool) for b in range(B)])
  np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-4)
  # Inference uses every token (no drop, no rng needed) == the unmasked reference.
  full = model.apply({"params": params}, tokens, train=False)
  ref_full = np.stack([np_encoder_logits(p64, tokens[b], np.ones(L, bool), pool) for b in range(B)])
  np.testing.assert_allclose(full, ref_full, rtol=1e-4, atol=1e-4)
  assert not np.allclose(full, logits, atol=1e-3)


# ----------------------------------------------------------------------------------------------- Tasks.


def test_mae_task_predicts_exactly_the_dropped_bytes():
  c = load_config("configs/mlm_dropout/pretrain.py", "runlocal,mode=mae")
  task = tasks.get_task(c)
  tokens = jnp.asarray(_byte_batch(B=4, L=32, num_pad=0))
  variables = nn.unbox(jax.jit(task.init)(jax.random.key(0), {"tokens": tokens}))
  (loss, aux), g = jax.jit(jax.value_and_grad(
      lambda p: task.loss({"params": p}, {"tokens": tokens}, jax.random.key(1)), has_aux=True))(
          variables["params"])
  m = 32 - token_drop.num_kept(32, 0.15)
  assert np.isfinite(loss) and m == round(0.15 * 31)
  np.testing.assert_allclose(aux["metrics"]["predicted_frac"], m / 32, rtol=1e-6)
  ev = jax.jit(task.evaluate)(variables, {"tokens": tokens})
  assert float(ev["loss"][1]) == c.task.eval_draws * 4 * m      # every draw predicts M bytes of each window
  # The encoder never sees a [MASK] token (nor the dropped bytes): the [MASK] embedding row gets no gradient.
  assert float(jnp.abs(g["encoder"]["embed"]["embedding"][vocab.MASK_ID]).max()) == 0.0
  assert "dec_block0" in variables["params"] and "mask_embedding" in variables["params"]


@pytest.mark.parametrize("mode", ["mlm", "mae"])
def test_eval_masks_follow_the_example_index_and_average_over_draws(mode):
  """Evaluation masks are a function of (eval_seed, example index, draw): a batch split in two gives the same
  sums; the same windows at other indices get other masks (the old single key gave every batch one mask);
  `eval_draws` sums independent draws."""
  c = load_config("configs/mlm_dropout/pretrain.py", f"runlocal,mode={mode},eval_draws=3")
  task = tasks.get_task(c)
  tokens = jnp.asarray(np.tile(_byte_batch(B=1, L=32, num_pad=0), (8, 1)))   # 8 copies of one window
  variables = nn.unbox(jax.jit(task.init)(jax.random.key(0), {"tokens": tokens}))
  ev = jax.jit(task.evaluate)
  whole = ev(variables, {"tokens": tokens, "index": jnp.arange(8)})
  halves = [ev(variables, {"tokens": tokens[i:i + 4], "index": jnp.arange(i, i + 4)}) for i in (0, 4)]
  for name in ("loss", "accuracy"):
    np.testing.assert_allclose(sum(float(h[name][0]) for h in halves), float(whole[name][0]), rtol=1e-5)
    np.testing.assert_allclose(sum(float(h[name][1]) for h in halves), float(whole[name][1]), rtol=1e-6)
  # Same windows, other indices: other masks (the old per-batch key gave both halves the same sums).
  assert float(halves[0]["loss"][0]) != float(halves[1]["loss"][0])
  # The predicted positions: MLM = the selected bytes of each (index, draw) key, MAE = M per window and draw.
  if mode == "mae":
    want = 3 * 8 * (32 - token_drop.num_kept(32, 0.15))
  else:
    want = sum(int(mlm.bert_mask(jax.random.fold_in(jax.random.fold_in(jax.random.key(0), i), d), tokens[i:i + 1],
                                 tokens[i:i + 1] < 256)[1].sum()) for i in range(8) for d in range(3))
  assert float(whole["loss"][1]) == want
  one = tasks.get_task(load_config("configs/mlm_dropout/pretrain.py", f"runlocal,mode={mode},eval_draws=1"))
  first = jax.jit(one.evaluate)(variables, {"tokens": tokens, "index": jnp.arange(8)})
  if mode == "mlm":   # draw 0 of the three: its own selected positions
    assert float(first["loss"][1]) == sum(int(mlm.bert_mask(jax.random.fold_in(jax.random.fold_in(
        jax.random.key(0), i), 0), tokens[i:i + 1], tokens[i:i + 1] < 256)[1].sum()) for i in range(8))
  else:
    assert float(first["loss"][1]) * 3 == want
  c.task.eval_draws = 0
  with pytest.raises(ValueError, match="eval_draws"):
    tasks.get_task(c)


def test_cls_windows_eval_examples_carry_their_index():
  c = load_config("configs/mlm_dropout/pretrain.py", "runlocal")
  batches = list(pipeline.make_eval_iter(c.data, split="validation", global_batch_size=8, num_batches=3))
  np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), np.arange(24))
  assert "index" not in next(pipeline.make_train_iter(c.data, seed=0, global_batch_size=8))


def _perturbed(params, seed=7, scale=0.3):
  leaves, tdef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(tdef, [l + scale * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


def np_block(b, x, pos, valid):
  """Pre-norm bidirectional block in float64 (attention columns of invalid keys masked)."""
  ln = lambda name, y: np_layernorm(y, name["scale"], name["bias"])
  x = x + np_mha(b["attn"], ln(b["norm_attn"], x), pos, causal=False, valid_L=valid)
  return x + np_gelu(ln(b["norm_mlp"], x) @ b["mlp"]["wi"]["kernel"]) @ b["mlp"]["wo"]["kernel"]


def np_mae_logits(p, tokens_L, keep_K, drop_M):
  """MAEModel literally: encoder on the kept tokens at their positions, Dense, scatter into a row of mask
  vectors (a loop over the kept positions), decoder block over all L positions, logits at the dropped ones."""
  e = p["encoder"]
  kept = tokens_L[keep_K]
  h = np_block(e["block0"], e["embed"]["embedding"][kept], keep_K, kept != vocab.PAD_ID)
  h = np_layernorm(h, e["final_norm"]["scale"], e["final_norm"]["bias"]) @ p["enc_to_dec"]["kernel"]
  x = np.tile(p["mask_embedding"], (len(tokens_L), 1))
  for k, pos in enumerate(keep_K):
    x[pos] = h[k]
  x = np_block(p["dec_block0"], x, np.arange(len(tokens_L)), tokens_L != vocab.PAD_ID)
  x = np_layernorm(x, p["dec_norm"]["scale"], p["dec_norm"]["bias"])
  return x[drop_M] @ p["dec_head"]["kernel"]


def np_log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_mae_model_matches_a_numpy_scatter_reference():
  c = load_config("configs/mlm_dropout/pretrain.py", "runlocal,mode=mae,rate=0.25")
  task = tasks.get_task(c)
  B, L = 3, 16
  tokens = _byte_batch(B=B, L=L, num_pad=3, seed=4)
  variables = nn.unbox(task.init(jax.random.key(0), {"tokens": jnp.asarray(tokens)}))
  params = _perturbed(variables["params"])
  keep, drop = token_drop.keep_drop_indices(jax.random.key(3), jnp.asarray(tokens), token_drop.num_kept(L, 0.25))
  logits = task.model.apply({"params": params}, jnp.asarray(tokens), keep, drop)
  p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  keep, drop = np.asarray(keep), np.asarray(drop)
  ref = np.stack([np_mae_logits(p64, tokens[b], keep[b], drop[b]) for b in range(B)])
  scale = np.abs(ref).max()
  np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("mode", ["mlm", "mae"])
def test_pretraining_loss_targets_match_numpy(mode):
  """loss = mean over the predicted positions of -log softmax(logits)[original byte]: MLM the selected bytes
  (model run on the corrupted input), MAE the dropped bytes ([PAD] never a target); NumPy float64."""
  c = load_config("configs/mlm_dropout/pretrain.py", f"runlocal,mode={mode},rate=0.3")
  task = tasks.get_task(c)
  B, L = 4, 32
  tokens = _byte_batch(B=B, L=L, num_pad=5, seed=5)
  variables = nn.unbox(task.init(jax.random.key(0), {"tokens": jnp.asarray(tokens)}))
  variables = {"params": _perturbed(variables["params"], scale=0.1)}
  rng = jax.random.key(9)
  loss, aux = task.loss(variables, {"tokens": jnp.asarray(tokens)}, rng)
  mask_rng = jax.random.split(rng)[0]          # the loss's masking key (its other half feeds dropout, rate 0)
  if mode == "mlm":
    inputs, selected = mlm.bert_mask(mask_rng, jnp.asarray(tokens), jnp.asarray(tokens < 256), rate=0.3)
    logits = np.asarray(task.model.apply(variables, inputs), np.float64)
    rows, cols = np.nonzero(np.asarray(selected))
    targets, logp = tokens[rows, cols], np_log_softmax(logits[rows, cols])
  else:
    keep, drop = token_drop.keep_drop_indices(mask_rng, jnp.asarray(tokens), token_drop.num_kept(L, 0.3))
    logits = np.asarray(task.model.apply(variables, jnp.asarray(tokens), keep, drop), np.float64)
    drop = np.asarray(drop)
    rows, cols = np.nonzero(tokens[np.arange(B)[:, None], drop] < 256)
    targets, logp = tokens[rows, drop[rows, cols]], np_log_softmax(logits[rows, cols])
  assert len(targets) > 0 and (targets < 256).all()
  want = -np.mean([logp[i, t] for i, t in enumerate(targets)])
  np.testing.assert_allclose(float(loss), want, rtol=1e-5)
  np.testing.assert_allclose(float(aux["metrics"]["accuracy"]), np.mean(logp.argmax(-1) == targets), rtol=1e-6)
  np.testing.assert_allclose(float(aux["metrics"]["predicted_frac"]), len(targets) / (B * L), rtol=1e-6)


def test_bad_task_values_raise():
  c = load_config("configs/mlm_dropout/pretrain.py", "runlocal")
  c.task.mode = "bert"
  with pytest.raises(ValueError, match="task.mode"):
    tasks.get_task(c)
  f = load_config("configs/mlm_dropout/finetune.py", "runlocal")
  f.task.drop_token = 1.0
  with pytest.raises(ValueError, match="drop_token"):
    tasks.get_task(f)
  f = load_config("configs/mlm_dropout/finetune.py", "runlocal,correction=0.15")
  with pytest.raises(ValueError, match="init_from"):
    tasks.get_task(f)
  f = load_config("configs/mlm_dropout/finetune.py", "runlocal,correction=1.5")
  with pytest.raises(ValueError, match="task.correction_r"):
    tasks.get_task(f)
  f = load_config("configs/mlm_dropout/finetune.py", "runlocal")
  f.task.num_classes = 3
  with pytest.raises(ValueError, match="num_classes"):
    tasks.get_task(f)
  with pytest.raises(ValueError, match="drops no token"):   # round(0.99 * 31) = 31: nothing would be dropped
    token_drop.num_kept(32, 0.01)
  assert token_drop.num_kept(32, 0.5) == 1 + 16 and token_drop.num_kept(32, 0.0) == 32


def test_correction_refuses_an_mae_checkpoint(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"task": {"name": "mlm", "mode": "mae"}}))
  f = load_config("configs/mlm_dropout/finetune.py", f"runlocal,init={tmp_path},correction=0.15")
  with pytest.raises(ValueError, match="MAE-style checkpoint"):
    tasks.get_task(f)
  (tmp_path / "config.json").write_text(json.dumps({"task": {"name": "mlm", "mode": "mlm"}}))
  tasks.get_task(f)


def test_init_from_pretraining_with_correction(tmp_path):
  """Pre-train 2 steps; fine-tune with lr 0: the encoder equals the (corrected) pre-trained one."""
  pre = load_config("configs/mlm_dropout/pretrain.py", "runlocal")
  pre.num_train_steps = 2
  train.run(pre, str(tmp_path / "pre"))
  src, _ = checkpoint.load_state(str(tmp_path / "pre"))
  ft = load_config("configs/mlm_dropout/finetune.py", f"runlocal,init={tmp_path / 'pre'},correction=0.15,drop=0.5")
  ft.num_train_steps = 1
  ft.optimizer.learning_rate = 0.0
  out = train.run(ft, str(tmp_path / "ft"))
  assert out["step"] == 1
  got, _ = checkpoint.load_state(str(tmp_path / "ft"))
  E = src["params"]["encoder"]["embed"]["embedding"]
  np.testing.assert_allclose(got["params"]["encoder"]["embed"]["embedding"], np_correction(E, 0.15, vocab.MASK_ID),
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_array_equal(got["params"]["encoder"]["block0"]["mlp"]["wi"]["kernel"],
                                src["params"]["encoder"]["block0"]["mlp"]["wi"]["kernel"])
  assert "head" in got["params"] and "dec_block0" not in got["params"]
  np.testing.assert_allclose(mlm.load_corrected_params(str(tmp_path / "pre"), 0.15)["encoder"]["embed"]["embedding"],
                             np_correction(E, 0.15, vocab.MASK_ID), rtol=1e-6, atol=1e-6)
  with pytest.raises(ValueError, match="no parameter"):
    checkpoint.load_params_mapped(got["params"], str(tmp_path / "pre"), mapping=(("decoder", "encoder"),))
  with pytest.raises(ValueError, match="no parameter under"):
    checkpoint.load_params_mapped(got["params"], str(tmp_path / "pre"), mapping=(("encoder", "enc"),))


def test_correction_rate_and_holdout_must_match_the_pretraining(tmp_path):
  """Su's higher-rate extension: pretrain.py:rate=0.4 then finetune.py:correction=0.4; another r, or another
  holdout than the pre-training's, is an error."""
  pre = load_config("configs/mlm_dropout/pretrain.py", "runlocal,rate=0.4,holdout=0.5")
  assert pre.task.mask_rate == 0.4 and pre.data.holdout_frac == 0.5
  (tmp_path / "config.json").write_text(json.dumps(pre.to_dict()))
  ft = load_config("configs/mlm_dropout/finetune.py", f"runlocal,init={tmp_path},correction=0.4,holdout=0.5")
  assert tasks.get_task(ft).correction_r == 0.4
  with pytest.raises(ValueError, match="mask_rate=0.4"):
    tasks.get_task(load_config("configs/mlm_dropout/finetune.py", f"runlocal,init={tmp_path},correction=0.15,"
                                                                   "holdout=0.5"))
  with pytest.raises(ValueError, match="holdout"):
    tasks.get_task(load_config("configs/mlm_dropout/finetune.py", f"runlocal,init={tmp_path},holdout=0.3"))


# ---------------------------------------------------------------------------------------------- Data.


def test_stdlib_packages_view_is_split_by_file_and_balanced():
  c = load_config("configs/mlm_dropout/finetune.py", "runlocal")
  classes = c.data.classes
  src_train = pipeline.get_data_source("python_stdlib_text", "train")
  src_eval = pipeline.get_data_source("python_stdlib_text", "validation+test")
  paths = lambda s: {bytes(s[i]["path"]).decode() for i in range(len(s))}
  assert not paths(src_train) & paths(src_eval)
  pw = text_views.PackageWindows(src_eval, classes, 31)
  for doc, label in zip(pw.texts, pw.labels):
    assert len(doc) >= 31
  ev = list(pipeline.make_eval_iter(c.data, split="validation+test", global_batch_size=4, num_batches=None))
  labels = np.concatenate([b["label"] for b in ev])
  np.testing.assert_array_equal(np.bincount(labels, minlength=len(classes)), np.full(len(classes), 4))
  tok = np.concatenate([b["tokens"] for b in ev])
  assert tok.shape[1] == 32 and (tok[:, 0] == vocab.CLS_ID).all() and (tok[:, 1:] < 256).all()
  # The label is the top-level package of the window's file: check one window against its source file.
  doc, start = pw.eval_windows(4)[0]
  ex = pw.read((doc, start))
  assert classes[int(ex["label"])] == classes[int(pw.labels[doc])]
  it = pipeline.make_train_iter(c.data, seed=0, global_batch_size=64)
  train_labels = np.concatenate([next(it)["label"] for _ in range(8)])
  assert set(train_labels) == set(range(len(classes)))                 # class-balanced sampling
  assert text_views.package_of(b"asyncio/tasks.py") == "asyncio" and text_views.package_of("os.py") is None


def test_train_per_class_draws_from_a_fixed_labelled_pool():
  c = load_config("configs/mlm_dropout/finetune.py", "runlocal,train_per_class=2")
  pw = text_views.PackageWindows(pipeline.get_data_source("python_stdlib_text", "train"), c.data.classes, 31)
  pool = {pw.read(ds)["tokens"].tobytes() for ds in pw.eval_windows(2)}
  assert len(pool) == 2 * len(c.data.classes)
  it = pipeline.make_train_iter(c.data, seed=0, global_batch_size=32)
  seen = [row.tobytes() for _ in range(4) for row in next(it)["tokens"]]
  assert set(seen) <= pool and len(set(seen)) > len(pool) // 2    # only pool windows, most of them drawn
  c.data.train_per_class = -1
  with pytest.raises(ValueError, match="train_per_class"):
    next(pipeline.make_train_iter(c.data, seed=0, global_batch_size=32))


def test_holdout_files_and_per_file_cap():
  """holdout=h: test files are the class files with is_holdout(path, h) from all splits, never in the labelled
  pool; at most `per_file` test windows a file; every window carries its file's source index."""
  c = load_config("configs/mlm_dropout/finetune.py", "runlocal,holdout=0.5,per_file=2")
  c.data.eval_per_class = 64
  src = pipeline.get_data_source("python_stdlib_text", c.data.eval_split)
  path = lambda i: bytes(src[int(i)]["path"])
  ev = list(pipeline.make_eval_iter(c.data, split=c.data.eval_split, global_batch_size=8, num_batches=None))
  files, labels = np.concatenate([b["file"] for b in ev]), np.concatenate([b["label"] for b in ev])
  assert all(text_views.is_holdout(path(f), 0.5) for f in set(files))
  assert all(c.data.classes[l] == text_views.package_of(path(f)) for f, l in zip(files, labels))
  assert np.bincount(files).max() <= 2
  assert len(set(files)) > 100                      # the builder's validation+test has 40 usable files
  for b in ev[:2]:                                  # the window is bytes of its file
    for tok, f in zip(b["tokens"], b["file"]):
      assert bytes(tok[1:].astype(np.uint8)) in bytes(src[int(f)]["text"])
  # Held-out fraction of the class files ~ h (binomial), and the held-out sets grow with h.
  class_paths = [path(i) for i in range(len(src)) if text_views.package_of(path(i)) in c.data.classes]
  held = np.array([text_views.is_holdout(p, 0.5) for p in class_paths])
  assert abs(held.mean() - 0.5) < 5 * np.sqrt(0.25 / len(held))
  assert all(text_views.is_holdout(p, 0.7) for p, h in zip(class_paths, held) if h)
  pool = text_views.PackageWindows(src, c.data.classes, 31, lambda p: not text_views.is_holdout(p, 0.5))
  assert not set(pool.file_ids) & set(files)
  c.data.eval_per_file = -1
  with pytest.raises(ValueError, match="eval_per_file"):
    list(pipeline.make_eval_iter(c.data, split=c.data.eval_split, global_batch_size=8))


def test_cls_windows_leaves_out_the_held_out_files():
  docs = [{"path": f"pkg{k}/m{i}.py".encode(), "text": bytes([65 + 6 * k + i]) * 40} for k in range(2)
          for i in range(6)]
  cfg = load_config("configs/mlm_dropout/pretrain.py", "runlocal,holdout=0.5")
  cfg.data.holdout_classes = ("pkg0",)
  tokens = np.stack([ex["tokens"] for ex in text_views.cls_windows(docs, cfg.data, train=False, seed=0)])
  seen = set(tokens[:, 1:].ravel().tolist())
  want = {d["text"][0] for d in docs if not (d["path"].startswith(b"pkg0/") and text_views.is_holdout(d["path"], 0.5))}
  assert seen == want and len(want) < len(docs)
  cfg.data.holdout_frac = 0.0
  with pytest.raises(ValueError, match="holdout_frac"):
    text_views.cls_windows(docs, cfg.data, train=False, seed=0)


@pytest.mark.parametrize("pool", ["first", "mean"])
def test_classifier_pooling_reads_cls_or_the_token_mean(pool):
  """logits = W pool(h) + b, with pool = h[:, 0] ([CLS]) or the mean over the tokens (NumPy float64)."""
  c = load_config("configs/mlm_dropout/finetune.py", f"runlocal,pool={pool}")
  task = tasks.get_task(c)
  tokens = np.asarray(np.random.default_rng(0).integers(0, 256, (3, 32)), np.int32)
  tokens[:, 0] = vocab.CLS_ID
  variables = nn.unbox(task.model.init(jax.random.PRNGKey(0), tokens))
  logits = np.asarray(task.model.apply(variables, tokens), np.float64)
  h = np.asarray(task.model.encoder.apply({"params": variables["params"]["encoder"]}, tokens,
                                          method=lambda m, t: m.hidden(t)), np.float64)
  w = np.asarray(variables["params"]["head"]["out"]["kernel"], np.float64)
  b = np.asarray(variables["params"]["head"]["out"]["bias"], np.float64)
  x = h[:, 0] if pool == "first" else h.mean(1)
  np.testing.assert_allclose(logits, x @ w + b, rtol=1e-4, atol=1e-5)
  c.task.pool = "max"
  with pytest.raises(ValueError, match="task.pool"):
    tasks.get_task(c)


def test_cls_windows():
  c = load_config("configs/mlm_dropout/pretrain.py", "runlocal")
  batch = next(pipeline.make_train_iter(c.data, seed=0, global_batch_size=8))
  assert batch["tokens"].shape == (8, 32) and (batch["tokens"][:, 0] == vocab.CLS_ID).all()
  assert (batch["tokens"][:, 1:] < 256).all()


# ---------------------------------------------------------------------------------------------- Configs.


def test_full_configs_are_bert_base_on_tfds():
  pre = load_config("configs/mlm_dropout/pretrain_full.py")
  assert (pre.model.num_layers, pre.model.embed_dim, pre.model.mlp_dim, pre.model.num_heads) == (12, 768, 3072, 12)
  assert pre.data.name.startswith("wikipedia/") and pre.model.dtype == "auto"
  ft = load_config("configs/mlm_dropout/finetune_full.py", "init=/x,drop=0.1,correction=0.15")
  assert ft.data.name == "ag_news_subset" and ft.init_from.workdir == "/x" and ft.task.drop_token == 0.1
