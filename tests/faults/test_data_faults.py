"""A damaged prepared dataset is one line naming its directory and how to rebuild it (never a raw
`Corrupted Riegeli/records file` traceback or `Preparing ... failed.` without a cause)."""
import os
import shutil

import numpy as np
import pytest

from tests.helpers import load_config
from kexue_jax.data import builders
from kexue_jax.data import pipeline


@pytest.fixture
def damaged_copy(tmp_path, monkeypatch):
  """A private copy of the prepared byte corpus (KEXUE_DATA_DIR points at it), and its version dir."""
  builder = builders.prepared_builder("python_stdlib_text")
  dst = tmp_path / "tfds"
  shutil.copytree(builder.data_dir_root, dst, ignore=shutil.ignore_patterns(".locks"))
  monkeypatch.setenv("KEXUE_DATA_DIR", str(dst))
  version_dir = dst / os.path.relpath(os.fspath(builder.data_path), builder.data_dir_root)
  return version_dir


def _train_shard(version_dir):
  return next(p for p in version_dir.iterdir() if "-train.array_record" in p.name)


def _make_iter():
  c = load_config("configs/lm/tiny.py", "runlocal")
  return pipeline.make_train_iter(c.data, seed=0, global_batch_size=8)


def _assert_one_line(err, version_dir):
  msg = str(err.value)
  assert "\n" not in msg and str(version_dir) in msg and "rm -r" in msg, msg


def test_truncated_shard(damaged_copy):
  shard = _train_shard(damaged_copy)
  with open(shard, "r+b") as f:
    f.truncate(1000)
  with pytest.raises(builders.CorruptDatasetError) as err:
    _make_iter()
  _assert_one_line(err, damaged_copy)


def test_overwritten_shard(damaged_copy):
  shard = _train_shard(damaged_copy)
  size = os.path.getsize(shard)
  with open(shard, "r+b") as f:  # same size, garbage in the middle
    f.seek(size // 3)
    f.write(np.random.default_rng(0).integers(0, 256, size // 3, dtype=np.uint8).tobytes())
  with pytest.raises(builders.CorruptDatasetError) as err:
    next(_make_iter())
  _assert_one_line(err, damaged_copy)


def test_deleted_dataset_info(damaged_copy):
  os.remove(damaged_copy / "dataset_info.json")
  with pytest.raises(builders.CorruptDatasetError) as err:
    _make_iter()
  _assert_one_line(err, damaged_copy)
