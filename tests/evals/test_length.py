"""kexue_jax/evals/length.py (+ length_methods.py): test sets, copy accuracy, n-gram baselines, the evaluation
protocols and MLM scoring at longer lengths, against float64 NumPy references and hand counts."""
import numpy as np
import pytest

from kexue_jax.evals import length as length_lib
from kexue_jax.evals import length_methods
from tests.helpers import load_config


def test_repeated_set_tiles_a_segment_beyond_train_length():
  rng = np.random.default_rng(0)
  n, length = 16, 128
  nonrep = rng.integers(0, 256, size=(12, length + 1)).astype(np.int32)
  rep, seg = length_lib.repeated_set(nonrep, n)
  assert rep.shape == nonrep.shape
  # L > N: every segment is at least N long (copies need distances >= N) and at most L/2 (>= 2 copies).
  assert seg.min() >= n and seg.max() <= length // 2
  for row, src, s in zip(rep, nonrep, seg):
    np.testing.assert_array_equal(row[:s], src[:s])                # the first copy is the held-out text
    np.testing.assert_array_equal(row[s:], row[:-s])               # then the text repeats with period s
  # L = N: segments within the trained range, N/4..N/2.
  rep1, seg1 = length_lib.repeated_set(nonrep[:, :n + 1], n)
  assert seg1.min() >= n // 4 and seg1.max() <= n // 2
  np.testing.assert_array_equal(rep1[0, seg1[0]:], rep1[0, :-seg1[0]])


def test_random_copy_set_and_copy_accuracy():
  n = 32
  rep, seg = length_lib.random_repeated_set(n, n, 10)
  assert rep.shape == (10, n + 1) and rep.min() >= 32 and rep.max() <= 126
  assert seg.min() >= n // 4 and seg.max() <= n // 2
  for row, s in zip(rep, seg):
    np.testing.assert_array_equal(row[s:], row[:-s])


def test_copy_accuracy_counts_only_targets_after_the_first_copy(monkeypatch):
  # A fake model that is right exactly on targets at positions >= 10: copy accuracy 1 when s <= 10.
  tokens = np.zeros((2, 21), np.int32)

  def fake_stats(model_cfg, params, tokens_bt, chunk=0):
    pos = np.arange(1, tokens_bt.shape[1])[None, :].repeat(len(tokens_bt), 0)
    return np.zeros(pos.shape, np.float32), (pos >= 10).astype(np.float32)

  monkeypatch.setattr(length_lib, "token_stats", fake_stats)
  acc = length_lib.copy_accuracy({}, None, tokens, np.array([10, 5]))
  # s = 10: targets 10..20 all right; s = 5: targets 5..20, of which 10..20 (11 of 16) are right.
  np.testing.assert_allclose(acc, [1.0, 11 / 16], atol=1e-4)


class _Docs:
  def __init__(self, texts):
    self.buffer = np.concatenate([np.frombuffer(t, np.uint8) for t in texts])
    self.lengths = np.array([len(t) for t in texts])
    self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])

  def window(self, doc, start, length):
    b = int(self.offsets[doc]) + start
    return self.buffer[b:b + length].astype(np.int32)


def test_nonrepeated_and_growing_sets_are_document_bytes():
  texts = [bytes(range(i, i + 100)) for i in range(5)] + [bytes([i % 251 for i in range(300)])]
  docs = _Docs(texts)
  win = length_lib.nonrepeated_set(docs, 20, 6)
  assert win.shape == (6, 21)
  for w in win:  # each window is a contiguous slice of some document
    assert any(w.tobytes() == np.frombuffer(t, np.uint8)[s:s + 21].astype(np.int32).tobytes()
               for t in texts for s in range(0, len(t) - 20))
  grow = length_lib.growing_set(docs, 16, 8, 1)   # only the 300-byte document has 8*16+1 bytes
  np.testing.assert_array_equal(grow[0], (np.arange(300) % 251)[-129:])


def test_ngram_baselines_match_hand_counts():
  # Training text "abababac": unigram argmax 'a'; bigram a->b, b->a, c->(none: argmax 0).
  train = _Docs([b"abababac"])
  test = np.frombuffer(b"abab", np.uint8).astype(np.int32)[None]
  out = length_lib.ngram_baselines(train, test)
  assert out["unigram_acc"] == pytest.approx(1 / 3)   # targets b, a, b: only 'a' right
  assert out["bigram_acc"] == pytest.approx(1.0)      # a->b, b->a, a->b


def _np_token_stats(logits_BLV, targets_BL):
  """float64 cross-entropy and argmax-correctness per target, written out from the logits."""
  z = np.asarray(logits_BLV, np.float64)
  logp = z - z.max(-1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
  ce = -np.take_along_axis(logp, np.asarray(targets_BL)[..., None], -1)[..., 0]
  return ce, (z.argmax(-1) == targets_BL).astype(np.float64)


def _close(got, want):
  """The evaluator stores 4 decimals (float32 compute): within half a unit of the last stored digit."""
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=5e-5)


def _tiny_lm(n_seed=0):
  import jax
  from kexue_jax import config_lib, models
  cfg = config_lib.to_dict(load_config("configs/length_extrapolation/rope.py", "scale=tiny").model)
  model = models.build_model(cfg)
  return cfg, model, model.init(jax.random.key(n_seed), np.zeros((1, 8), np.int32))["params"]


def test_tail_protocol_matches_float64_reference():
  cfg, model, params = _tiny_lm()
  n, length = 16, 48
  nonrep = np.random.default_rng(0).integers(0, 256, size=(3, length + 1)).astype(np.int32)
  rep, seg = length_lib.repeated_set(nonrep, n)
  out = length_lib.evaluate_length(cfg, params, nonrep, rep, seg, train_length=n)
  for key, tokens in (("nonrep", nonrep), ("rep", rep)):
    ce, cor = _np_token_stats(model.apply({"params": params}, tokens[:, :-1]), tokens[:, 1:])
    tail = [i for i in range(length) if i >= n]   # the query at position i (0-based) predicts token i + 1
    _close(out[key]["acc"], cor.mean(1))
    _close(out[key]["loss"], ce.mean(1))
    _close(out[key]["tail_acc"], cor[:, tail].mean(1))
    _close(out[key]["tail_loss"], ce[:, tail].mean(1))
  # copy targets of the repeated set (cor: the loop's last): the target at position p >= s is a copy
  _close(out["rep"]["copy_acc"], [cor[k, np.arange(1, length + 1) >= s].mean() for k, s in enumerate(seg)])
  at_n = length_lib.evaluate_length(cfg, params, nonrep[:, :n + 1], rep[:, :n + 1], seg, train_length=n)
  assert "tail_acc" not in at_n["nonrep"]   # L = N: no query beyond the training length


def test_logn_dagger_gain_lives_in_the_tail():
  """log n-dagger leaves queries i < N unchanged, so its tail gain is its all-positions gain x L / (L - N)."""
  cfg, _, params = _tiny_lm(1)
  n, length = 16, 64
  tokens = np.random.default_rng(1).integers(0, 256, size=(2, length + 1)).astype(np.int32)
  ce0, _ = length_lib.token_stats(cfg, params, tokens)
  ce1, _ = length_lib.token_stats(dict(cfg, attention=dict(cfg["attention"], logn="retrofit")), params, tokens)
  ce0, ce1 = np.asarray(ce0, np.float64), np.asarray(ce1, np.float64)
  eps = 1e-6 * np.abs(ce0).max()   # float32 rounding of the values compared
  np.testing.assert_allclose(ce1[:, :n], ce0[:, :n], rtol=0, atol=eps)   # queries 0..N-1 untouched
  gain_all, gain_tail = (ce0 - ce1).mean(1), (ce0 - ce1)[:, n:].mean(1)
  assert np.abs(ce1 - ce0)[:, n:].max() > 100 * eps   # the retrofit changes the tail
  np.testing.assert_allclose(gain_tail, gain_all * length / (length - n), rtol=0, atol=2 * eps)


def test_mlm_length_scoring_matches_float64_reference():
  import jax
  from kexue_jax.tasks import mlm
  c = load_config("configs/length_extrapolation/logn_mlm.py", "runlocal,logn")
  task = mlm.MLMTask(c)
  rng = np.random.default_rng(2)
  tokens = np.concatenate([np.full((4, 1), 256), rng.integers(0, 256, size=(4, 63))], 1).astype(np.int32)
  variables = task.init(jax.random.key(0), {"tokens": tokens[:1, :16]})   # trained at 16, scored at 64
  got = length_lib.mlm_window_stats(c, variables["params"], tokens)
  for k, row in enumerate(tokens):
    # The documented evaluation masks: window k masked from fold_in(fold_in(key(eval_seed), k), draw 0).
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(c.task.eval_seed), k), 0)
    inputs, sel = mlm.bert_mask(key, row[None], row[None] < 256, rate=0.15)
    ce, cor = _np_token_stats(task.model.apply(variables, inputs)[0], row)
    sel = np.asarray(sel[0])
    assert sel.sum() > 0 and not sel[0]   # bytes only, never [CLS]
    _close(got["acc"][k], cor[sel].mean())
    _close(got["loss"][k], ce[sel].mean())


def test_mlm_set_is_cls_plus_document_bytes():
  docs = _Docs([bytes(range(i, i + 100)) for i in range(4)])
  s = length_lib.mlm_set(docs, 20, 3)
  assert s.shape == (3, 20) and (s[:, 0] == 256).all() and s[:, 1:].max() < 256
  assert all(np.array_equal(np.diff(r[1:]), np.ones(18)) for r in s)   # contiguous bytes of one document


def test_model_config_applies_a_method_and_leaves_the_trained_config_alone():
  n = 128
  base = dict(name="transformer_lm", num_layers=4, attention=dict(position="rope", logn_base_length=n))
  pi = length_methods.model_config(base, length_methods.Method("pi", "rope", length_methods.scaling("pi", n)), n)
  assert pi["attention"] == dict(base["attention"], scaling=dict(kind="pi", factor=8.0, train_length=n))
  # HWFA2: only the full (window None) layers switch to ReRoPE with w = N/2; a global change reaches every layer.
  win, full = dict(position="rope", window=64), dict(position="rope", window=None, logn="train")
  h = dict(base, layer_attention=[win, full, full, win])
  swap = length_methods.Method("hwfa2+rerope", "hwfa2", layer_fn=length_methods.hwfa2_rerope)
  out = length_methods.model_config(h, swap, n)["layer_attention"]
  assert [l["position"] for l in out] == ["rope", "rerope", "rerope", "rope"]
  assert out[1]["rerope_window"] == 64 and out[0]["window"] == 64
  assert h["layer_attention"][1]["position"] == "rope"  # the trained config is not mutated
  leaky = length_methods.Method("leaky", "rope", length_methods.leaky_rerope(32, 16))
  assert all(l["position"] == "leaky_rerope" for l in length_methods.model_config(h, leaky, n)["layer_attention"])
  assert length_methods.rerope_windows(512) == [64, 128, 256, 384, 512]
