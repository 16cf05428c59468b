"""Frozen-feature evaluation of SimSiam checkpoints: BN statistics of the whole training set, then kNN and a linear
probe on the backbone features h and the collapse statistics of z and h on the test set (the protocol is in
report_template.md; everything numeric lives in kexue_jax.evals.ssl)."""
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


def load_split(config, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(x [N, ...] float32, labels [N]) of a whole split, in order."""
  source = pipeline.get_data_source(config.data.name, split, config.data.get("data_dir"))
  arrays = array_views.load_arrays(source)
  return arrays["x"].astype(np.float32), arrays["label"].astype(np.int64)


class Evaluator:
  """Compiles the feature functions once for a config's network; `__call__(variables)` -> metrics dict."""

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

    @jax.jit
    def embed(variables, x):
      return self.task.embed(variables, x)

    self._train_stats, self._embed = train_stats, embed

  def init_variables(self, seed: int):
    """The untrained network exactly as train.run initialises it (same key split, same batch shape)."""
    jax.config.update("jax_threefry_partitionable", True)  # as train.run
    init_rng, _ = jax.random.split(jax.random.key(seed))
    return nn.unbox(jax.jit(self.task.init)(init_rng, {"x": jnp.zeros((8,) + self.x_train.shape[1:], jnp.float32)}))

  def __call__(self, variables, *, probe: bool | None = None) -> dict[str, float]:
    variables = jax.tree.map(jnp.asarray, {k: v for k, v in variables.items()})
    prepare = self.task.prepare
    x_train, x_test = prepare(jnp.asarray(self.x_train)), prepare(jnp.asarray(self.x_test))
    stats = ssl.population_batch_stats(self._train_stats, variables, x_train)
    v = {**variables, "batch_stats": stats}
    embed = functools.partial(self._embed, v)
    h_train = ssl.batched_apply(lambda x: embed(x)[0], np.asarray(x_train), 4096)
    h_test, z_test = (np.asarray(a) for a in embed(x_test))
    out = {"knn": ssl.knn_accuracy(h_train, self.y_train, h_test, self.y_test, k=KNN_K, temperature=KNN_T)}
    for name, a in (("z", z_test), ("h", h_test)):  # std, sv_rank, cov_rank, top3_var of z and of h
      out.update({k: float(v) for k, v in ssl.rank_statistics(jnp.asarray(a), prefix=f"{name}_").items()})
    if self.probe if probe is None else probe:
      out["probe"] = ssl.linear_probe(h_train, self.y_train, h_test, self.y_test)["test_accuracy"]
    return out


def raw_baselines(train_data, test_data) -> dict[str, float]:
  """kNN and linear probe on the raw input signals (the same functions as for features)."""
  (xtr, ytr), (xte, yte) = train_data, test_data
  xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
  return {"knn": ssl.knn_accuracy(xtr, ytr, xte, yte, k=KNN_K, temperature=KNN_T),
          "probe": ssl.linear_probe(xtr, ytr, xte, yte)["test_accuracy"]}
