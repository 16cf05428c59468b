"""Byte-token views (registered in ``preprocess.PREPROCESS`` when ``kexue_jax.data`` is imported).

Token ids are those of ``kexue_jax.vocab`` (bytes 0..255, [CLS], [PAD]).

  text_bytes        {"tokens": int32[seq_len], "label"}: [CLS] + UTF-8 bytes of `data.text_key`, truncated,
                    padded with [PAD].
  standin_tokens    MNIST-1D as a byte sequence ([CLS] + 40 quantised values, padded): an offline stand-in with
                    the text configs' batch format, for `runlocal` only.
  cls_windows       {"tokens": int32[seq_len]} = [CLS] + seq_len - 1 bytes of a document (`lm_windows`
                    sampling: uniform windows for training, consecutive windows for evaluation). Evaluation
                    examples also carry "index" (int32, their position in the evaluation set): tasks/mlm.py
                    draws each example's evaluation masks from it. `data.holdout_classes` (with
                    `data.holdout_frac`): the files of those packages held out by `stdlib_packages` are dropped.
  stdlib_packages   {"tokens": [CLS] + seq_len - 1 bytes, "label"}: which top-level standard-library package
                    (`data.classes`, in label order) a window of source comes from, read from the `path`
                    feature of `python_stdlib_text`. Files of other packages are dropped. Training: a class
                    uniformly at random, then a uniform window of that class's files; evaluation: per class the
                    `data.eval_per_class` of its consecutive windows taken at evenly spaced indices, at most
                    `data.eval_per_file` (0 = no cap) from one file, so the test set spreads over the files.
                    Evaluation examples also carry "file" (int32, the file's index in the source): standard
                    errors are computed per file (kexue_jax/evals/clustered.py), windows of a file not being
                    independent. Files: the builder's splits (by a hash of the path; train and eval share no
                    file), or, with `data.holdout_frac` = h > 0, a split of the view's own: a file of a class
                    is a test file iff `is_holdout(path, h)` (crc32 of the path < h 2^32). Then the train view
                    keeps the other files and the eval view the test files of whatever splits it is given
                    (the configs give both "train+validation+test": many more test files than the builder's
                    validation+test), and `cls_windows` with `data.holdout_classes` drops those test files from
                    the pre-training corpus.
"""
from __future__ import annotations

import functools
import sys
import zlib

import grain
import ml_collections
import numpy as np

from kexue_jax.data import preprocess
from kexue_jax.data.array_views import maybe_shuffle
from kexue_jax.vocab import CLS_ID, PAD_ID


def bytes_to_tokens(text, seq_len: int) -> np.ndarray:
  """int32[seq_len]: [CLS] + UTF-8 bytes (truncated), then PAD."""
  data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
  body = np.frombuffer(data, np.uint8)[:seq_len - 1].astype(np.int32)
  out = np.full((seq_len,), PAD_ID, np.int32)
  out[0] = CLS_ID
  out[1:1 + len(body)] = body
  return out


class _TextExample:

  def __init__(self, seq_len: int, text_key: str):
    self.seq_len, self.text_key = seq_len, text_key

  def __call__(self, example):
    return {"tokens": bytes_to_tokens(example[self.text_key], self.seq_len),
            "label": np.asarray(example["label"], np.int32)}


@preprocess.register("text_bytes")
def text_bytes(source, data_cfg, *, train: bool, seed: int):
  """Byte tokens of a TFDS text-classification dataset (module docstring)."""
  fn = _TextExample(int(data_cfg.seq_len), data_cfg.get("text_key", "text"))
  return maybe_shuffle(grain.MapDataset.source(source), train, seed).map(fn)


class _StandinTokens:

  def __init__(self, seq_len: int):
    self.seq_len = seq_len

  def __call__(self, example):
    ex = preprocess.classification_example(example)
    q = np.clip(np.round((ex["x"].reshape(-1) + 4.0) * 32.0), 0, 255).astype(np.uint8)
    return {"tokens": bytes_to_tokens(q.tobytes(), self.seq_len), "label": ex["label"]}


@preprocess.register("standin_tokens")
def standin_tokens(source, data_cfg, *, train: bool, seed: int):
  """MNIST-1D (or any {x, label} source) as byte tokens, [CLS] + quantised values: runlocal stand-in."""
  return maybe_shuffle(grain.MapDataset.source(source), train, seed).map(_StandinTokens(int(data_cfg.seq_len)))




def _prepend_cls(example):
  tokens = np.asarray(example["tokens"], np.int32)
  return {"tokens": np.concatenate([np.array([CLS_ID], np.int32), tokens])}


def _prepend_cls_indexed(index, example):
  return {**_prepend_cls(example), "index": np.asarray(index, np.int32)}


@preprocess.register("cls_windows")
def cls_windows(source, data_cfg, *, train: bool, seed: int):
  """{"tokens": [CLS] + seq_len - 1 bytes}: `lm_windows` of seq_len - 1 bytes with [CLS] in front."""
  seq_len = int(data_cfg.seq_len)
  if seq_len < 3:
    raise ValueError(f"data.seq_len must be >= 3 for [CLS] + bytes, got {seq_len}.")
  inner = ml_collections.ConfigDict(data_cfg.to_dict())
  inner.seq_len = seq_len - 2  # lm_windows yields seq_len + 1 tokens
  held_out = tuple(data_cfg.get("holdout_classes") or ())
  if held_out:
    frac = _holdout_frac(data_cfg, required=True)
    source = _Subset(source, [i for i in range(len(source))
                              if not (package_of(source[i]["path"]) in held_out and is_holdout(source[i]["path"], frac))])
  windows = preprocess.get("lm_windows")(source, inner, train=train, seed=seed)
  return windows.map(_prepend_cls) if train else windows.map_with_index(_prepend_cls_indexed)


class _Subset:
  """The examples `indices` of a random-access source (len / getitem)."""

  def __init__(self, source, indices):
    self.source, self.indices = source, list(indices)

  def __len__(self):
    return len(self.indices)

  def __getitem__(self, i):
    return self.source[self.indices[i]]


def is_holdout(path, frac: float) -> bool:
  """Whether a file is a held-out (test) file: crc32 of its UTF-8 path < frac * 2^32 (stable across runs)."""
  path = path if isinstance(path, bytes) else str(path).encode("utf-8")
  return zlib.crc32(bytes(path)) < frac * 2 ** 32


def _holdout_frac(data_cfg, *, required: bool = False) -> float:
  frac = float(data_cfg.get("holdout_frac", 0.0) or 0.0)
  if not 0.0 <= frac < 1.0 or (required and frac == 0.0):
    raise ValueError(f"data.holdout_frac must be in {'(0' if required else '[0'}, 1) (the fraction of a class's "
                     f"files held out for testing), got {frac}.")
  return frac


def package_of(path) -> str | None:
  """Top-level package of a stdlib relative path ('asyncio/tasks.py' -> 'asyncio'); None for a module."""
  path = path.decode("utf-8") if isinstance(path, bytes) else str(path)
  return path.split("/", 1)[0] if "/" in path else None


class PackageWindows:
  """Documents of the chosen packages: bytes, class ids, and window samplers (see module docstring)."""

  def __init__(self, source, classes, window: int, keep_path=None):
    """keep_path(path) -> bool (None: every file) selects the files (the holdout split)."""
    self.classes, self.window = tuple(classes), int(window)
    index = {c: i for i, c in enumerate(self.classes)}
    texts, labels, file_ids = [], [], []
    for i in range(len(source)):
      ex = source[i]
      label = index.get(package_of(ex["path"]))
      if label is None or (keep_path is not None and not keep_path(ex["path"])):
        continue
      text = preprocess._as_bytes(ex["text"])  # pylint: disable=protected-access
      if len(text) >= self.window:
        texts.append(text)
        labels.append(label)
        file_ids.append(i)
    missing = sorted(set(self.classes) - {self.classes[l] for l in labels})
    if missing:
      raise ValueError(f"classes {missing} have no file of >= {self.window} bytes in this split; choose "
                       "data.classes present in both splits (experiments/mlm_dropout/README: package_counts).")
    self.texts, self.labels, self.file_ids = texts, np.array(labels, np.int64), np.array(file_ids, np.int64)
    # Per class: cumulative number of window starts over its documents.
    self.docs_of = [np.flatnonzero(self.labels == c) for c in range(len(self.classes))]
    self.ends_of = [np.cumsum([len(texts[d]) - self.window + 1 for d in docs]) for docs in self.docs_of]

  def example(self, doc: int, start: int) -> dict[str, np.ndarray]:
    body = self.texts[doc][start:start + self.window].astype(np.int32)
    return {"tokens": np.concatenate([np.array([CLS_ID], np.int32), body]),
            "label": np.asarray(self.labels[doc], np.int32)}

  def sample(self, index, rng: np.random.Generator):
    del index
    c = int(rng.integers(len(self.classes)))
    u = int(rng.integers(self.ends_of[c][-1]))
    k = int(np.searchsorted(self.ends_of[c], u, side="right"))
    start = u - (int(self.ends_of[c][k - 1]) if k else 0)
    return self.example(int(self.docs_of[c][k]), start)

  def eval_windows(self, per_class: int, per_file: int = 0) -> np.ndarray:
    """(doc, start) int64[N, 2]: per class, `per_class` of its consecutive (non-overlapping) windows at evenly
    spaced indices, after keeping at most `per_file` (0 = all) evenly spaced windows of each file."""
    out = []
    for docs in self.docs_of:
      wins = []
      for d in docs:
        starts = list(range(0, len(self.texts[d]) - self.window + 1, self.window))
        if per_file and len(starts) > per_file:
          starts = [starts[i] for i in _evenly_spaced(len(starts), per_file)]
        wins.extend((d, s) for s in starts)
      out.extend(wins[i] for i in _evenly_spaced(len(wins), per_class))
    return np.array(out, np.int64).reshape(-1, 2)

  def read(self, doc_start):
    return self.example(int(doc_start[0]), int(doc_start[1]))

  def read_with_file(self, doc_start):
    return {**self.read(doc_start), "file": np.asarray(self.file_ids[int(doc_start[0])], np.int32)}


def _evenly_spaced(n: int, k: int) -> np.ndarray:
  """Indices of min(k, n) of range(n) at evenly spaced positions (first and last included)."""
  return np.unique(np.linspace(0, n - 1, min(k, n)).round().astype(int))


@preprocess.register("stdlib_packages")
def stdlib_packages(source, data_cfg, *, train: bool, seed: int):
  """Package-of-origin classification of byte windows (module docstring)."""
  classes = tuple(data_cfg.classes)
  if len(classes) < 2:
    raise ValueError(f"data.classes needs >= 2 packages, got {classes}.")
  frac = _holdout_frac(data_cfg)
  keep_path = (lambda path: is_holdout(path, frac) != train) if frac else None
  pw = PackageWindows(source, classes, int(data_cfg.seq_len) - 1, keep_path)
  if train:
    per_class = int(data_cfg.get("train_per_class", 0) or 0)
    if per_class < 0:
      raise ValueError(f"data.train_per_class must be >= 0 (0 = every window), got {per_class}.")
    if not per_class:
      return grain.MapDataset.range(sys.maxsize).random_map(pw.sample, seed=seed)
    # A fixed labelled pool (the low-resource regime where pre-training should pay off), drawn uniformly with
    # replacement: per class, `per_class` non-overlapping windows at evenly spaced indices of its files.
    pool = pw.eval_windows(per_class)
    return grain.MapDataset.range(sys.maxsize).random_map(
        lambda i, rng: pw.read(pool[int(rng.integers(len(pool)))]), seed=seed)
  per_file = int(data_cfg.get("eval_per_file", 0) or 0)
  if per_file < 0:
    raise ValueError(f"data.eval_per_file must be >= 0 (0 = no cap on the windows per file), got {per_file}.")
  windows = pw.eval_windows(int(data_cfg.get("eval_per_class", 64)), per_file)
  return grain.MapDataset.source(windows).map(pw.read_with_file)


@functools.lru_cache(maxsize=None)
def package_counts(data_dir: str | None = None, splits: tuple[str, ...] = ("train", "validation", "test")):
  """{split: {package: number of files}} of python_stdlib_text (for choosing `data.classes`)."""
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  out = {}
  for split in splits:
    src = pipeline.get_data_source("python_stdlib_text", split, data_dir)
    counts: dict[str, int] = {}
    for i in range(len(src)):
      pkg = package_of(src[i]["path"])
      if pkg is not None:
        counts[pkg] = counts.get(pkg, 0) + 1
    out[split] = counts
  return out
