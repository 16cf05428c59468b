"""In-memory classification views (registered in ``preprocess.PREPROCESS`` when ``kexue_jax.data`` is imported).

  classification_inmemory  `classification` with the split read once into memory (MNIST-1D: the TFDS
                        reader costs more than a training step).
  classification_semi   train: {"x", "label", "x_unlabelled"}: labelled = the first `data.num_labelled`
                        examples of the train split (Su's semi-supervised R-Drop: the first 1%), unlabelled =
                        the rest, each reshuffled per epoch; eval: plain `classification`. A reduced labelled
                        set without unlabelled data is just TFDS slicing: `data.train_split = "train[:1000]"`.
  standin_images        MNIST-1D as images float32[H, W, C] (outer product of the signal resampled to H=W,
                        tiled over C): an offline stand-in with CIFAR's batch format, for `runlocal` only.
"""
from __future__ import annotations

import sys

import grain
import numpy as np

from kexue_jax.data import preprocess


def load_arrays(source) -> dict[str, np.ndarray]:
  """{x: float32[N, ...], label: int32[N]}: a whole (small) split read into memory at once.

  Reading a TFDS array_record source example by example inside the input pipeline costs ~0.1-0.2 ms per
  example, more than a training step of an MNIST-1D-sized model; one bulk read of 4000 examples takes ~0.1 s.
  """
  getitems = getattr(source, "__getitems__", None)
  raw = getitems(list(range(len(source)))) if getitems else [source[i] for i in range(len(source))]
  examples = [preprocess.classification_example(e) for e in raw]
  return {k: np.stack([e[k] for e in examples]) for k in ("x", "label")}


class EpochShuffled:
  """index -> row of `arrays[start:stop]`, reshuffled every epoch: epoch e = index // n is the permutation
  `default_rng([seed, e]).permutation(n)` (a pure function of the index, so iterator state is an index).
  The permutation of the current epoch is kept, so a sequential read costs O(1) per example.
  """

  def __init__(self, arrays: dict[str, np.ndarray], seed: int, start: int = 0, stop: int | None = None):
    self.arrays, self.seed, self.start = arrays, int(seed), start
    self.n = (len(next(iter(arrays.values()))) if stop is None else stop) - start
    self._cache = (-1, None)  # (epoch, permutation): one tuple, swapped atomically (grain reads in threads)

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    epoch, pos = divmod(int(index), self.n)
    cache = self._cache
    if cache[0] != epoch:
      cache = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
      self._cache = cache
    row = self.start + int(cache[1][pos])
    return {k: v[row] for k, v in self.arrays.items()}


class _Rows:
  """A random-access source over in-memory arrays."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    self.arrays = arrays

  def __len__(self):
    return len(next(iter(self.arrays.values())))

  def __getitem__(self, i):
    return {k: v[i] for k, v in self.arrays.items()}


@preprocess.register("classification_inmemory")
def classification_inmemory(source, data_cfg, *, train: bool, seed: int):
  """`classification` read once into memory; train: reshuffled every epoch (`EpochShuffled`)."""
  del data_cfg
  arrays = load_arrays(source)
  if not train:
    return grain.MapDataset.source(_Rows(arrays))
  return grain.MapDataset.range(sys.maxsize).map(EpochShuffled(arrays, seed))


class _SemiExample:
  """index -> {x, label} of the labelled stream and {x_unlabelled} of the unlabelled stream."""

  def __init__(self, labelled: EpochShuffled, unlabelled: EpochShuffled):
    self.labelled, self.unlabelled = labelled, unlabelled

  def __call__(self, i):
    return {**self.labelled(i), "x_unlabelled": self.unlabelled(i)["x"]}


@preprocess.register("classification_semi")
def classification_semi(source, data_cfg, *, train: bool, seed: int):
  """Labelled first `num_labelled` examples + unlabelled rest, in memory (module docstring)."""
  arrays = load_arrays(source)
  if not train:
    return grain.MapDataset.source(_Rows(arrays))
  n = int(data_cfg.num_labelled)
  if not 0 < n < len(source):
    raise ValueError(f"data.num_labelled={n} must be in (0, {len(source)}) for a split of {len(source)}.")
  return grain.MapDataset.range(sys.maxsize).map(
      _SemiExample(EpochShuffled(arrays, seed, 0, n), EpochShuffled(arrays, seed + 1, n)))


def maybe_shuffle(ds, train: bool, seed: int):
  """Training: shuffled and repeated (reshuffled every epoch); evaluation: as is."""
  return ds.shuffle(seed=seed).repeat() if train else ds


class _StandinImages:

  def __init__(self, shape):
    self.shape = tuple(int(s) for s in shape)

  def __call__(self, example):
    ex = preprocess.classification_example(example)
    h, w, c = self.shape
    x = ex["x"].reshape(-1)
    grid = np.linspace(0, len(x) - 1, max(h, w))
    s = np.interp(grid, np.arange(len(x)), x).astype(np.float32)
    img = np.outer(s[:h], s[:w]).astype(np.float32)
    return {"x": np.repeat(img[:, :, None], c, axis=-1), "label": ex["label"]}


@preprocess.register("standin_images")
def standin_images(source, data_cfg, *, train: bool, seed: int):
  """MNIST-1D as float32[H, W, C] images (outer product of the resampled signal): runlocal stand-in."""
  fn = _StandinImages(data_cfg.image_shape)
  return maybe_shuffle(grain.MapDataset.source(source), train, seed).map(fn)
