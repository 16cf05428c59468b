"""kexue_jax/evals/frozen_features.py: the evaluation of a network equals NumPy float64 references computed on the
features of that network in training mode on the whole training set (which is what the population BN statistics
make the inference-mode network compute), and the raw-input baselines equal the literal NumPy kNN."""
import jax
import numpy as np
import pytest

from kexue_jax.evals import frozen_features
from kexue_jax.evals import ssl
from kexue_jax.tasks import simsiam
from tests.evals.test_ssl import np_stats
from tests.helpers import load_config
from tests.tasks.test_simsiam import np_knn


def _data(n=96, num_classes=4, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, num_classes, n)
  x = (rng.normal(size=(num_classes, 40))[y] + rng.normal(size=(n, 40))).astype(np.float32)
  return x, y


def test_evaluator_matches_numpy_on_the_whole_set_features():
  """Test set = the training set (reversed), so the float64 reference features are the training-mode forward pass
  over the whole set: its BN normalises with exactly the statistics the evaluator installs, whatever the running
  averages were (they are offset here to show they are replaced)."""
  c = load_config("configs/simsiam/mnist1d.py", "runlocal")
  x, y = _data()
  ev = frozen_features.Evaluator(c, (x, y), (x[::-1], y[::-1]))
  v = ev.init_variables(0)
  v = {**v, "batch_stats": jax.tree.map(lambda a: a + 0.3, v["batch_stats"])}
  out = ev(v)
  (h, z), _ = ev.task.net.apply(v, ev.task.prepare(x), train=True, mutable=["batch_stats"],
                                method=simsiam.SimSiamNet.encode)
  h, z = np.asarray(h, np.float64), np.asarray(z, np.float64)
  ref_knn = np_knn(h, y, h[::-1], frozen_features.KNN_K, frozen_features.KNN_T, 4)
  assert out["knn"] == pytest.approx(np.mean(ref_knn == y[::-1]))
  for name, f in (("z", z), ("h", h)):
    ref = np_stats(f, 3)
    # float32 features of a float32 network (relative error ~1e-6) through a float32 eigensolver: 1e-4, as in
    # tests/evals/test_ssl.py.
    np.testing.assert_allclose([out[f"{name}_sv_rank"], out[f"{name}_cov_rank"], out[f"{name}_top3_var"]],
                               [ref["sv_rank"], ref["cov_rank"], ref["top_var"]], rtol=1e-4)
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    np.testing.assert_allclose(out[f"{name}_std"], unit.std(0).mean(), rtol=1e-4)
  assert out["probe"] == ssl.linear_probe(h, y, h[::-1], y[::-1])["test_accuracy"]
  assert "probe" not in ev(v, probe=False)


def test_raw_baselines_are_the_literal_knn_on_flattened_inputs():
  (xtr, ytr), (xte, yte) = _data(120, seed=1), _data(50, seed=2)
  out = frozen_features.raw_baselines((xtr.reshape(-1, 4, 10), ytr), (xte.reshape(-1, 4, 10), yte))
  ref = np_knn(xtr.astype(np.float64), ytr, xte.astype(np.float64), frozen_features.KNN_K, frozen_features.KNN_T, 4)
  assert out["knn"] == pytest.approx(np.mean(ref == yte))
  assert out["probe"] == ssl.linear_probe(xtr, ytr, xte, yte)["test_accuracy"]
