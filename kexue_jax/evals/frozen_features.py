r"""Frozen-feature evaluation of a self-supervised network (kNN, linear probe, collapse statistics).

The evaluation protocol of SimSiam (Chen & He, *Exploring Simple Siamese Representation Learning*, arXiv
2011.10566, §4 and App. A), applied to a task with ``embed(variables, x) -> (h, z)`` (kexue_jax/tasks/simsiam.py):

  1. BN statistics: the network's running averages are replaced by the statistics of the whole training set taken
     as one batch ("precise BN", Wu & Johnson 2021, arXiv 2105.07576; ``ssl.population_batch_stats``), so that an
     untrained network and every checkpoint are measured alike.
  2. kNN: the backbone features h of the training set are the memory bank of a cosine-similarity kNN classifier,
     k = 20 neighbours voting with weights exp(s / 0.1) (InstDisc, Wu et al. 2018, arXiv 1805.01978; SimSiam's
     monitor), scored on the test set (``ssl.knn_accuracy``).
  3. Linear probe: multinomial logistic regression on the standardised training features h, scored on the test
     set (``ssl.linear_probe``).
  4. Collapse statistics of the test set's z and h (``ssl.rank_statistics``: z_std, z_sv_rank, z_cov_rank,
     z_top3_var and the same for h).

``raw_baselines`` applies steps 2 and 3 to the raw input signals: the floor every representation should clear.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from kexue_jax import tasks
from kexue_jax.data import array_views
from kexue_jax.data import pipeline
from kexue_jax.evals import ssl

KNN_K, KNN_T = 20, 0.1


def load_splits(config) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
  """((x [N, ...] float32, labels [N] int64) of the whole train split, the same of the eval split) of
  ``config.data``, in order (one bulk read each, see array_views.load_arrays)."""
  out = []
  for split in (config.data.train_split, config.data.eval_split):
    arrays = array_views.load_arrays(pipeline.get_data_source(config.data.name, split, config.data.get("data_dir")))
    out.append((arrays["x"].astype(np.float32), arrays["label"].astype(np.int64)))
  return tuple(out)


class Evaluator:
  """Compiles the feature functions once for a config's network; ``__call__(variables)`` -> metrics dict."""

  def __init__(self, config, train_data, test_data, *, probe: bool = True):
    self.task = tasks.get_task(config)
    self.x_train, self.y_train = train_data
    self.x_test, self.y_test = test_data
    self.probe = probe
    net = self.task.net

    @jax.jit
    def train_stats(variables, x):
      _, new = net.apply(variables, x, train=True, mutable=["batch_stats"])
      return new["batch_stats"]

    self._train_stats, self._embed = train_stats, jax.jit(self.task.embed)

  def init_variables(self, seed: int):
    """The untrained network exactly as train.run initialises it (same key split, same batch shape)."""
    jax.config.update("jax_threefry_partitionable", True)  # as train.run
    init_rng, _ = jax.random.split(jax.random.key(seed))
    return nn.unbox(jax.jit(self.task.init)(init_rng, {"x": jnp.zeros((8,) + self.x_train.shape[1:], jnp.float32)}))

  def __call__(self, variables, *, probe: bool | None = None) -> dict[str, float]:
    """{knn, [probe], z_std, z_sv_rank, z_cov_rank, z_top3_var, h_...} of ``variables`` (module docstring)."""
    variables = jax.tree.map(jnp.asarray, dict(variables))
    x_train, x_test = (self.task.prepare(jnp.asarray(x)) for x in (self.x_train, self.x_test))
    stats = ssl.population_batch_stats(self._train_stats, variables, x_train)
    embed = functools.partial(self._embed, {**variables, "batch_stats": stats})
    h_train = ssl.batched_apply(lambda x: embed(x)[0], np.asarray(x_train), 4096)
    h_test, z_test = (np.asarray(a) for a in embed(x_test))
    out = {"knn": ssl.knn_accuracy(h_train, self.y_train, h_test, self.y_test, k=KNN_K, temperature=KNN_T)}
    for name, a in (("z", z_test), ("h", h_test)):
      out.update({k: float(v) for k, v in ssl.rank_statistics(jnp.asarray(a), prefix=f"{name}_").items()})
    if self.probe if probe is None else probe:
      out["probe"] = ssl.linear_probe(h_train, self.y_train, h_test, self.y_test)["test_accuracy"]
    return out


def raw_baselines(train_data, test_data) -> dict[str, float]:
  """kNN and linear probe on the raw input signals, flattened (the same functions as for features)."""
  (xtr, ytr), (xte, yte) = train_data, test_data
  xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
  return {"knn": ssl.knn_accuracy(xtr, ytr, xte, yte, k=KNN_K, temperature=KNN_T),
          "probe": ssl.linear_probe(xtr, ytr, xte, yte)["test_accuracy"]}
