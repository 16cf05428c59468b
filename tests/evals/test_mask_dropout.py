"""kexue_jax/evals/mask_dropout.py: the drift measurement against a literal NumPy float64 computation window by
window (scipy's rel_entr for the KL, the CR1 formula for the file-clustered SE) on a tiny MLM, and the mask
identity by exact enumeration."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from kexue_jax import tasks
from kexue_jax import vocab
from kexue_jax.evals import mask_dropout
from kexue_jax.tasks import mlm
from tests.helpers import load_config


def _reference(task, params, tokens, files, draws, batch):
  """Per window: its byte positions' values; then means over all byte positions and the per-window KL gain."""
  forward = jax.jit(lambda p, t: task.model.apply({"params": p}, t, return_hidden=True))
  corrected = mlm.correct_params(params, task.rate, mask_frac=task.mask_frac, random_frac=task.random_frac)
  cols = {k: [] for k in ("cc", "mp", "mc", "klp", "klc", "ap", "ac")}
  gains = []
  for i in range(0, len(tokens), batch):
    tok = jnp.asarray(tokens[i:i + batch])
    run = lambda p, t: tuple(np.asarray(x, np.float64) for x in forward(p, t))
    (lg_p, h_p), (lg_c, h_c) = run(params, tok), run(corrected, tok)
    masked = [run(params, mlm.bert_mask(jax.random.key(1000 + k), tok, tok < vocab.NUM_BYTES, rate=task.rate,
                                        mask_frac=task.mask_frac, random_frac=task.random_frac)[0])
              for k in range(draws)]
    softmax = lambda lg: special.softmax(lg, axis=-1)
    p_bar, h_bar = sum(softmax(m[0]) for m in masked) / draws, sum(m[1] for m in masked) / draws
    for w in range(len(tok)):
      b = np.asarray(tok[w]) < vocab.NUM_BYTES
      cos = lambda x, y: 1 - np.einsum("ld,ld->l", x, y) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
      kl_p = special.rel_entr(p_bar[w], softmax(lg_p[w])).sum(-1)
      kl_c = special.rel_entr(p_bar[w], softmax(lg_c[w])).sum(-1)
      for k, v in (("cc", cos(h_c[w], h_p[w])), ("mp", cos(h_bar[w], h_p[w])), ("mc", cos(h_bar[w], h_c[w])),
                   ("klp", kl_p), ("klc", kl_c), ("ap", lg_p[w].argmax(-1) == np.asarray(tok[w])),
                   ("ac", lg_c[w].argmax(-1) == np.asarray(tok[w]))):
        cols[k].append(np.asarray(v, np.float64)[b])
      gains.append(np.mean(kl_p[b] - kl_c[b]))
  return {k: np.concatenate(v).mean() for k, v in cols.items()}, np.array(gains)


def test_drift_matches_a_literal_float64_computation():
  c = load_config("configs/mlm_dropout/pretrain.py", "runlocal,seq_len=16")
  task = tasks.get_task(c)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, vocab.NUM_BYTES, (7, 16)).astype(np.int32)
  tokens[:, 0] = vocab.CLS_ID
  tokens[3, 12:] = vocab.PAD_ID   # a short window: its padding is not a byte position
  files = np.array([0, 0, 1, 1, 1, 2, 2])
  params = nn.unbox(task.init(jax.random.key(0), {"tokens": jnp.asarray(tokens[:2])})["params"])
  params = jax.tree.map(np.asarray, params)   # as a checkpoint loads them
  out = mask_dropout.drift(task, params, tokens, files, mc_draws=3, batch=4)   # two batches, the last partial
  ref, gain = _reference(task, params, tokens, files, 3, 4)
  names = ("cos_dist_corrected_vs_plain", "cos_dist_mc_vs_plain", "cos_dist_mc_vs_corrected", "kl_mc_vs_plain",
           "kl_mc_vs_corrected", "acc_unmasked_plain", "acc_unmasked_corrected")
  # The same jitted float32 network on both sides; float64 arithmetic after it (log_softmax vs scipy's softmax).
  np.testing.assert_allclose([out[k] for k in names], [ref[k] for k in ("cc", "mp", "mc", "klp", "klc", "ap", "ac")],
                             rtol=1e-5)
  assert out["kl_mc_vs_plain"] > 0 and out["cos_dist_corrected_vs_plain"] > 0
  n, g = len(gain), np.unique(files)
  se = np.sqrt(len(g) / (len(g) - 1) * sum(np.sum(gain[files == f] - gain.mean()) ** 2 for f in g) / n ** 2)
  np.testing.assert_allclose([out["kl_gain"], out["kl_gain_se"]], [gain.mean(), se], rtol=1e-5)
  np.testing.assert_allclose([out["kl_gain_by_file"][str(f)] for f in g], [gain[files == f].mean() for f in g],
                             rtol=1e-5, atol=1e-5 * np.abs(gain).max())
  assert (out["num_windows"], out["num_files"], out["mc_draws"], out["correction_r"]) == (7, 3, 3, task.rate)


@pytest.mark.parametrize("n,kept", [(6, 3), (8, 6)])
def test_mask_identity_is_exact(n, kept):
  ident = mask_dropout.mask_identity(n=n, kept=kept)
  assert ident["bernoulli_masks"] == 2 ** n and ident["p"] == kept / n
  assert ident["subsets"] == len([m for m in range(2 ** n) if bin(m).count("1") == kept])
  assert max(ident["max_dev_bernoulli"], ident["max_dev_subsets"], ident["max_dev_norm"]) < 1e-14
