"""Tests of kexue_jax.data against independent references.

References: the corpus files read with plain Python, the split rule
recomputed with hashlib, and MNIST-1D generated directly by the `mnist1d`
package. No test needs TensorFlow or the network (sockets are blocked).
"""
import hashlib
import os
import platform
import socket
import subprocess
import sys
import textwrap

import grain
import numpy as np
import orbax.checkpoint as ocp
import pytest

from kexue_jax import data
from kexue_jax.data import builders
from kexue_jax.data.builders import text_files

SEQ_LEN = 16
SPLITS = ("train", "validation", "test")


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError(f"network access attempted: {args}")
  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket, "create_connection", refuse)


def reference_split(relpath):
  """The documented rule: sha1(relpath) % 100 < 90 train, < 95 validation."""
  bucket = int(hashlib.sha1(relpath.encode()).hexdigest(), 16) % 100
  return "train" if bucket < 90 else "validation" if bucket < 95 else "test"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """A tmp dir of byte files covering every split, plus its reference docs.

  Returns (glob, {split: [(relpath, bytes), ...] in sorted relpath order}).
  """
  root = tmp_path_factory.mktemp("corpus")
  rng = np.random.default_rng(0)
  docs = {s: [] for s in SPLITS}
  i = 0
  while min(len(v) for v in docs.values()) < 3 or i < 40:
    rel = f"{'a' if i % 2 else 'b/c'}/doc{i:03d}.txt"
    # Arbitrary bytes (not UTF-8): the corpus is byte-level.
    text = rng.integers(0, 256, int(rng.integers(40, 300)), np.uint8).tobytes()
    docs[reference_split(rel)].append((rel, text))
    i += 1
  # A too-short document in every split: never sampled, never evaluated.
  for split in SPLITS:
    rel = next(f"short/s{j}.txt" for j in range(1000)
               if reference_split(f"short/s{j}.txt") == split)
    docs[split].append((rel, b"tiny"))
  for split_docs in docs.values():
    for rel, text in split_docs:
      (root / rel).parent.mkdir(parents=True, exist_ok=True)
      (root / rel).write_bytes(text)
  (root / "a" / "empty.txt").write_bytes(b"")  # Empty files are skipped.
  (root / "a" / "dir.txt").mkdir()             # Directories are skipped.
  docs = {s: sorted(v) for s, v in docs.items()}
  return os.path.join(root, "**", "*.txt"), docs


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture
def lm_cfg(corpus, data_dir):
  cfg = data.default_data_config()
  cfg.glob, cfg.data_dir, cfg.seq_len = corpus[0], data_dir, SEQ_LEN
  cfg.num_threads, cfg.prefetch = 2, 4
  return cfg


def take(it, n):
  return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])


# ---------------------------------------------------------------------------
# The text builder.


def test_text_corpus_equals_files_and_splits(corpus, data_dir):
  glob, docs = corpus
  for split in SPLITS:
    src = data.get_data_source("python_stdlib_text", split, data_dir, glob=glob)
    got = [(src[i]["path"].decode(), src[i]["text"]) for i in range(len(src))]
    assert got == docs[split]  # Bytes, paths, split and order.
  all_paths = [p for s in SPLITS for p, _ in docs[s]]
  assert len(all_paths) == len(set(all_paths))  # Disjoint.


def test_text_metadata_records_python_version(corpus, data_dir):
  builder = builders.make_builder("python_stdlib_text", data_dir,
                                  glob=corpus[0])
  assert builder.is_prepared()
  assert builder.info.metadata["python_version"] == platform.python_version()
  assert platform.python_version() in builder.info.description
  major, minor = sys.version_info[:2]
  assert f"py{major}_{minor}_" in text_files.stdlib_config().name
  assert builder.info.splits["train"].num_examples == len(corpus[1]["train"])


def test_prepared_once(corpus, data_dir):
  data.get_data_source("python_stdlib_text", "train", data_dir, glob=corpus[0])
  builder = builders.make_builder("python_stdlib_text", data_dir,
                                  glob=corpus[0])
  root = os.fspath(builder.data_path)
  before = {f: os.stat(os.path.join(root, f)).st_mtime_ns
            for f in os.listdir(root)}
  data.get_data_source("python_stdlib_text", "test", data_dir, glob=corpus[0])
  after = {f: os.stat(os.path.join(root, f)).st_mtime_ns
           for f in os.listdir(root)}
  assert before == after and any(f.endswith("00001") for f in after)
  parent = os.path.dirname(root)
  assert not [f for f in os.listdir(parent) if f.startswith("incomplete")]


def test_changed_corpus_gets_a_new_config(tmp_path):
  (tmp_path / "x.txt").write_bytes(b"hello")
  pattern = str(tmp_path / "*.txt")
  name1 = text_files.glob_config(pattern).name
  (tmp_path / "x.txt").write_bytes(b"hello world")
  assert text_files.glob_config(pattern).name != name1


def test_concurrent_preparation(tmp_path):
  """Two processes preparing the same dataset at once both succeed."""
  root = tmp_path / "c"
  root.mkdir()
  for i in range(200):
    (root / f"{i}.txt").write_bytes(b"x" * (i + 1))
  script = textwrap.dedent(f"""
      import sys
      from kexue_jax.data import pipeline
      src = pipeline.get_data_source("python_stdlib_text", "train",
                                     {str(tmp_path / 'tfds')!r},
                                     glob={str(root / '*.txt')!r})
      assert "tensorflow" not in sys.modules
      print(len(src))
  """)
  procs = [subprocess.Popen([sys.executable, "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
           for _ in range(2)]
  outs = [p.communicate(timeout=120) for p in procs]
  n_train = sum(reference_split(f"{i}.txt") == "train" for i in range(200))
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err.decode()[-2000:]
    assert int(out.split()[-1]) == n_train


# ---------------------------------------------------------------------------
# LM iterators.


@pytest.mark.parametrize("max_in_memory_bytes", [2**30, 0])
def test_train_batches_are_windows_of_documents(lm_cfg, corpus,
                                                max_in_memory_bytes):
  lm_cfg.max_in_memory_bytes = max_in_memory_bytes  # In RAM / from source.
  it = data.make_train_iter(lm_cfg, seed=0, global_batch_size=8,
                            process_index=0, process_count=1)
  train_docs = [t for _, t in corpus[1]["train"]]
  starts = set()
  for batch in take(it, 10):
    assert set(batch) == {"tokens"}
    tokens = batch["tokens"]
    assert tokens.shape == (8, SEQ_LEN + 1) and tokens.dtype == np.int32
    assert tokens.min() >= 0 and tokens.max() <= 255
    for row in tokens:
      window = bytes(row.astype(np.uint8))
      assert any(window in d for d in train_docs), window
      starts.add(window)
  assert len(starts) > 60  # Windows vary (80 draws from ~6k positions).


def test_repeat_frac_tiles_a_prefix_of_a_window(lm_cfg, corpus):
  """Copy-augmented windows: a fraction ~repeat_frac is a prefix of s in [L/4, L/2] bytes of a training
  window tiled to L = seq_len + 1; the rest are plain windows. repeat_frac=0 keeps the exact stream."""
  plain = take(data.make_train_iter(lm_cfg, seed=3, global_batch_size=8, process_index=0,
                                    process_count=1), 4)
  lm_cfg.repeat_frac = 0.0
  assert_batches_equal(plain, take(data.make_train_iter(lm_cfg, seed=3, global_batch_size=8, process_index=0,
                                                        process_count=1), 4))
  lm_cfg.repeat_frac = 0.5
  it = data.make_train_iter(lm_cfg, seed=0, global_batch_size=8, process_index=0, process_count=1)
  train_docs = [t for _, t in corpus[1]["train"]]
  length, tiled = SEQ_LEN + 1, 0
  rows = [row for batch in take(it, 25) for row in batch["tokens"]]
  for row in rows:
    period = next((s for s in range(length // 4, length // 2 + 1)
                   if np.array_equal(row[s:], row[:-s])), None)
    if period is None:
      assert any(bytes(row.astype(np.uint8)) in d for d in train_docs)
    else:
      tiled += 1
      assert any(bytes(row[:period].astype(np.uint8)) in d for d in train_docs)
  # 200 Bernoulli(0.5) draws (a plain window is periodic by chance with negligible probability).
  assert 70 <= tiled <= 130, tiled
  lm_cfg.repeat_frac = 1.5
  with pytest.raises(ValueError, match="repeat_frac"):
    next(data.make_train_iter(lm_cfg, seed=0, global_batch_size=8, process_index=0, process_count=1))


def test_repeat_warmup_and_random_segments(lm_cfg):
  """repeat_warmup: the first examples of the stream are all tiled; repeat_source="random": the tiled segment is
  printable random bytes (32..126), not text."""
  lm_cfg.repeat_frac, lm_cfg.repeat_source, lm_cfg.repeat_warmup = 0.0, "random", 16
  it = data.make_train_iter(lm_cfg, seed=0, global_batch_size=8, process_index=0, process_count=1)
  length = SEQ_LEN + 1
  for i, batch in enumerate(take(it, 4)):
    for row in batch["tokens"]:
      periodic = any(np.array_equal(row[s:], row[:-s]) for s in range(length // 4, length // 2 + 1))
      assert periodic == (i < 2)                       # 16 warm-up examples = the first 2 batches of 8
      if periodic:
        assert row.min() >= 32 and row.max() <= 126
  lm_cfg.repeat_source = "bytes"
  with pytest.raises(ValueError, match="repeat_source"):
    next(data.make_train_iter(lm_cfg, seed=0, global_batch_size=8, process_index=0, process_count=1))


def test_train_same_seed_same_batches(lm_cfg):
  make = lambda seed: data.make_train_iter(  # pylint: disable=g-long-lambda
      lm_cfg, seed=seed, global_batch_size=4, process_index=0, process_count=1)
  a, b, c = take(make(1), 5), take(make(1), 5), take(make(2), 5)
  assert_batches_equal(a, b)
  assert not np.array_equal(a[0]["tokens"], c[0]["tokens"])


def test_train_processes_split_the_global_batch(lm_cfg):
  whole = take(data.make_train_iter(lm_cfg, seed=3, global_batch_size=8,
                                    process_index=0, process_count=1), 4)
  parts = [take(data.make_train_iter(lm_cfg, seed=3, global_batch_size=8,
                                     process_index=p, process_count=2), 4)
           for p in range(2)]
  for k in range(4):
    p0, p1 = parts[0][k]["tokens"], parts[1][k]["tokens"]
    assert p0.shape == (4, SEQ_LEN + 1)
    assert not np.array_equal(p0, p1)
    # Process p holds rows p, p + 2, ... of the single-process global batch.
    np.testing.assert_array_equal(p0, whole[k]["tokens"][0::2])
    np.testing.assert_array_equal(p1, whole[k]["tokens"][1::2])


def test_train_resume_with_get_set_state(lm_cfg):
  make = lambda: data.make_train_iter(  # pylint: disable=g-long-lambda
      lm_cfg, seed=0, global_batch_size=4, process_index=0, process_count=1)
  it = make()
  take(it, 3)
  state = it.get_state()
  expected = take(it, 2)
  it2 = make()
  it2.set_state(state)
  assert_batches_equal(take(it2, 2), expected)


def test_train_resume_through_orbax(lm_cfg, tmp_path):
  make = lambda: data.make_train_iter(  # pylint: disable=g-long-lambda
      lm_cfg, seed=5, global_batch_size=4, process_index=0, process_count=1)
  it = make()
  take(it, 2)
  mngr = ocp.CheckpointManager(tmp_path / "ckpt")
  mngr.save(2, args=ocp.args.Composite(
      data_iter=grain.checkpoint.CheckpointSave(it)))
  mngr.wait_until_finished()
  expected = take(it, 2)
  it2 = make()
  mngr.restore(2, args=ocp.args.Composite(
      data_iter=grain.checkpoint.CheckpointRestore(it2)))
  mngr.close()
  assert_batches_equal(take(it2, 2), expected)


def reference_eval_windows(docs, seq_len):
  """Windows of seq_len + 1 bytes, stride seq_len, documents in order."""
  out = []
  for _, text in docs:
    for s in range(0, len(text) - seq_len, seq_len):
      out.append(np.frombuffer(text[s:s + seq_len + 1], np.uint8))
  return np.stack(out).astype(np.int32)


@pytest.mark.parametrize("max_in_memory_bytes", [2**30, 0])
def test_eval_windows_deterministic_finite(lm_cfg, corpus, max_in_memory_bytes):
  lm_cfg.max_in_memory_bytes = max_in_memory_bytes  # In RAM / from source.
  ref = reference_eval_windows(corpus[1]["validation"], SEQ_LEN)
  ev = data.make_eval_iter(lm_cfg, split="validation", global_batch_size=4,
                           process_index=0, process_count=1)
  first, second = list(ev), list(ev)
  assert len(first) == len(ref) // 4 == len(ev)
  assert_batches_equal(first, second)
  np.testing.assert_array_equal(
      np.concatenate([b["tokens"] for b in first]), ref[:len(first) * 4])
  short = data.make_eval_iter(lm_cfg, split="validation", global_batch_size=4,
                              num_batches=2, process_index=0, process_count=1)
  assert_batches_equal(list(short), first[:2])
  halves = [list(data.make_eval_iter(lm_cfg, split="validation",
                                     global_batch_size=4, num_batches=2,
                                     process_index=p, process_count=2))
            for p in range(2)]
  for k in range(2):
    np.testing.assert_array_equal(halves[0][k]["tokens"],
                                  first[k]["tokens"][0::2])
    np.testing.assert_array_equal(halves[1][k]["tokens"],
                                  first[k]["tokens"][1::2])


# ---------------------------------------------------------------------------
# MNIST-1D.


@pytest.fixture(scope="module")
def mnist1d_reference():
  from mnist1d import data as mnist1d_data  # pylint: disable=g-import-not-at-top
  return mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())


def test_mnist1d_equals_package(data_dir, mnist1d_reference):
  np_state = np.random.get_state()
  train = data.get_data_source("mnist1d", "train", data_dir)
  test = data.get_data_source("mnist1d", "test", data_dir)
  # Preparing does not reseed NumPy's global RNG (make_dataset seeds it).
  np.testing.assert_array_equal(np.random.get_state()[1], np_state[1])
  ref = mnist1d_reference
  assert (len(train), len(test)) == (4000, 1000)
  for src, x, y in ((train, ref["x"], ref["y"]),
                    (test, ref["x_test"], ref["y_test"])):
    got_x = np.stack([src[i]["x"] for i in range(len(src))])
    got_y = np.array([src[i]["y"] for i in range(len(src))])
    assert got_x.dtype == np.float32 and got_x.shape[1:] == (40,)
    np.testing.assert_array_equal(got_x, x.astype(np.float32))
    np.testing.assert_array_equal(got_y, y)


def test_mnist1d_classification_batches(data_dir, mnist1d_reference):
  cfg = data.default_data_config()
  cfg.update(name="mnist1d", data_dir=data_dir, train_split="train",
             eval_split="test", preprocess="classification")
  it = data.make_train_iter(cfg, seed=0, global_batch_size=250,
                            process_index=0, process_count=1)
  ref_x = mnist1d_reference["x"].astype(np.float32)
  labels = []
  for batch in take(it, 16):  # 16 * 250 = 4000: exactly one epoch.
    assert batch["x"].shape == (250, 40) and batch["x"].dtype == np.float32
    assert batch["label"].shape == (250,) and batch["label"].dtype == np.int32
    labels.append(batch["label"])
    rows = {r.tobytes() for r in batch["x"]}
    assert len(rows) == 250
  # One epoch is a permutation of the train split.
  np.testing.assert_array_equal(np.sort(np.concatenate(labels)),
                                np.sort(mnist1d_reference["y"]))
  assert not np.array_equal(np.concatenate(labels), mnist1d_reference["y"])
  first = next(data.make_train_iter(cfg, seed=0, global_batch_size=250,
                                    process_index=0, process_count=1))
  assert all((ref_x == r).all(1).any() for r in first["x"])
  ev = data.make_eval_iter(cfg, split="test", global_batch_size=200,
                           process_index=0, process_count=1)
  assert len(ev) == 5
  got = np.concatenate([b["x"] for b in ev])
  np.testing.assert_array_equal(
      got, mnist1d_reference["x_test"].astype(np.float32))
  np.testing.assert_array_equal(np.concatenate([b["label"] for b in ev]),
                                mnist1d_reference["y_test"])


# ---------------------------------------------------------------------------
# Errors.


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv("KEXUE_DATA_DIR", "/some/where")
  assert data.default_data_dir() == "/some/where"
  monkeypatch.delenv("KEXUE_DATA_DIR")
  assert data.default_data_dir() == os.path.expanduser(
      "~/.cache/kexue_jax/tfds")


def test_unknown_name_lists_builtins(data_dir):
  with pytest.raises(ValueError, match="python_stdlib_text.*mnist1d"):
    data.get_data_source("no_such_dataset_xyz", "train", data_dir)


def test_unprepared_catalog_dataset(tmp_path):
  with pytest.raises(FileNotFoundError,
                     match=r"'mnist' is not prepared.*tfds build mnist"):
    data.get_data_source("mnist", "train", str(tmp_path))


def test_empty_glob(data_dir, tmp_path):
  with pytest.raises(ValueError, match="matches no file"):
    data.get_data_source("python_stdlib_text", "train", data_dir,
                         glob=str(tmp_path / "nothing" / "*.txt"))


def test_unknown_split(lm_cfg):
  with pytest.raises(ValueError, match="no split 'dev'"):
    data.get_data_source(lm_cfg.name, "dev", lm_cfg.data_dir, glob=lm_cfg.glob)


def test_seq_len_longer_than_every_document(lm_cfg):
  lm_cfg.seq_len = 10_000
  with pytest.raises(ValueError, match="seq_len"):
    data.make_train_iter(lm_cfg, seed=0, global_batch_size=4,
                         process_index=0, process_count=1)
  with pytest.raises(ValueError, match="seq_len"):
    data.make_eval_iter(lm_cfg, split="validation", global_batch_size=4,
                        process_index=0, process_count=1)


def test_batch_not_divisible_by_processes(lm_cfg):
  with pytest.raises(ValueError, match="multiple of the process count 3"):
    data.make_train_iter(lm_cfg, seed=0, global_batch_size=8,
                         process_index=0, process_count=3)


def test_unknown_preprocess(lm_cfg):
  lm_cfg.preprocess = "nope"
  with pytest.raises(ValueError, match="lm_windows"):
    data.make_train_iter(lm_cfg, seed=0, global_batch_size=4,
                         process_index=0, process_count=1)


def test_tensorflow_never_imported():
  assert "tensorflow" not in sys.modules


# ---------------------------------------------------------------------------
# The real corpus.


@pytest.mark.slow
def test_real_stdlib_corpus(tmp_path):
  cfg = data.default_data_config()
  cfg.data_dir = str(tmp_path)
  sizes = {}
  for split in SPLITS:
    src = data.get_data_source(cfg.name, split, cfg.data_dir)
    docs = [src[i] for i in range(len(src))]
    sizes[split] = (len(docs), sum(len(d["text"]) for d in docs))
    for d in docs:
      rel = d["path"].decode()
      assert reference_split(rel) == split
      assert not {"test", "tests", "site-packages"} & set(rel.split("/")[:-1])
    # Spot-check bytes against the files.
    root = text_files.stdlib_root()
    for d in docs[:: max(1, len(docs) // 20)]:
      with open(os.path.join(root, d["path"].decode()), "rb") as f:
        assert f.read() == d["text"]
  print(f"\npython_stdlib_text (Python {platform.python_version()}): "
        f"{ {s: f'{n} files, {b / 1e6:.2f} MB' for s, (n, b) in sizes.items()} }")
  assert sizes["train"][0] > 300 and sizes["train"][1] > 5e6
  batch = next(data.make_train_iter(cfg, seed=0, global_batch_size=8,
                                    process_index=0, process_count=1))
  assert batch["tokens"].shape == (8, cfg.seq_len + 1)
