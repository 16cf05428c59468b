"""`mnist1d`: the MNIST-1D benchmark (Greydanus 2020), generated offline.

Generated locally with `mnist1d.data.make_dataset(get_dataset_args())` (the
package's standard args: 5000 samples, 80/20 split, seed 42, length 40), never
`get_dataset`, which downloads a pickle. Splits: train 4000, test 1000, in the
package's order (`disable_shuffling=True`, so index i is sample i).
Features: `x` float32[40] (the package's float64 values cast), `y` int64.
"""
import random

import numpy as np
from etils import epath
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils


def generate() -> dict[str, np.ndarray]:
  """The standard MNIST-1D arrays, without touching the global RNG state.

  `make_dataset` seeds Python's and NumPy's global RNGs; we restore both.
  """
  from mnist1d import data as mnist1d_data  # pylint: disable=g-import-not-at-top
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    return mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)


class Mnist1d(tfds.core.GeneratorBasedBuilder):
  """MNIST-1D generated locally by the `mnist1d` package."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  # TFDS's default `code_path` imports `importlib_resources`, an optional
  # dependency; this file is the code path (it has no checksums file).
  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=("MNIST-1D (Greydanus 2020) made offline with "
                     "mnist1d.data.make_dataset(get_dataset_args()): 4000 "
                     "train / 1000 test, 40 float32 features, 10 classes."),
        features=tfds.features.FeaturesDict({
            "x": tfds.features.Tensor(shape=(40,), dtype=np.float32),
            "y": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("x", "y"),
        disable_shuffling=True,
        homepage="https://github.com/greydanus/mnist1d",
        citation="Greydanus & Kobak, Scaling down deep learning with MNIST-1D, "
                 "ICML 2024.",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated locally.
    d = generate()
    return {"train": self._generate_examples(d["x"], d["y"]),
            "test": self._generate_examples(d["x_test"], d["y_test"])}

  def _generate_examples(self, xs, ys):
    for i, (x, y) in enumerate(zip(xs, ys)):
      yield i, {"x": x.astype(np.float32), "y": int(y)}
