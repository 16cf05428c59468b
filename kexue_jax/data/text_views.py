"""Byte-token views (registered in ``preprocess.PREPROCESS`` when ``kexue_jax.data`` is imported).

Token ids are those of ``kexue_jax.vocab`` (bytes 0..255, [CLS], [PAD]).

  text_bytes        {"tokens": int32[seq_len], "label"}: [CLS] + UTF-8 bytes of `data.text_key`, truncated,
                    padded with [PAD].
  standin_tokens    MNIST-1D as a byte sequence ([CLS] + 40 quantised values, padded): an offline stand-in with
                    the text configs' batch format, for `runlocal` only.
  cls_windows       {"tokens": int32[seq_len]} = [CLS] + seq_len - 1 bytes of a document (`lm_windows`
                    sampling: uniform windows for training, consecutive windows for evaluation). Evaluation
                    examples also carry "index" (int32, their position in the evaluation set): tasks/mlm.py
                    draws each example's evaluation masks from it.
  stdlib_packages   {"tokens": [CLS] + seq_len - 1 bytes, "label"}: which top-level standard-library package
                    (`data.classes`, in label order) a window of source comes from, read from the `path`
                    feature of `python_stdlib_text`. Files of other packages are dropped. Training: a class
                    uniformly at random, then a uniform window of that class's files; evaluation: per class the
                    first `data.eval_per_class` of its consecutive windows taken at evenly spaced indices.
                    The builder splits by file (hash of the path), so train and eval share no file.
"""
from __future__ import annotations

import functools
import sys

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
  windows = preprocess.get("lm_windows")(source, inner, train=train, seed=seed)
  return windows.map(_prepend_cls) if train else windows.map_with_index(_prepend_cls_indexed)


def package_of(path) -> str | None:
  """Top-level package of a stdlib relative path ('asyncio/tasks.py' -> 'asyncio'); None for a module."""
  path = path.decode("utf-8") if isinstance(path, bytes) else str(path)
  return path.split("/", 1)[0] if "/" in path else None


class PackageWindows:
  """Documents of the chosen packages: bytes, class ids, and window samplers (see module docstring)."""

  def __init__(self, source, classes, window: int):
    self.classes, self.window = tuple(classes), int(window)
    index = {c: i for i, c in enumerate(self.classes)}
    texts, labels = [], []
    for i in range(len(source)):
      ex = source[i]
      label = index.get(package_of(ex["path"]))
      text = preprocess._as_bytes(ex["text"])  # pylint: disable=protected-access
      if label is not None and len(text) >= self.window:
        texts.append(text)
        labels.append(label)
    missing = sorted(set(self.classes) - {self.classes[l] for l in labels})
    if missing:
      raise ValueError(f"classes {missing} have no file of >= {self.window} bytes in this split; choose "
                       "data.classes present in both splits (experiments/mlm_dropout/README: package_counts).")
    self.texts, self.labels = texts, np.array(labels, np.int64)
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

  def eval_windows(self, per_class: int) -> np.ndarray:
    """(doc, start) int64[N, 2]: per class, `per_class` of its consecutive windows at evenly spaced indices."""
    out = []
    for docs in self.docs_of:
      wins = [(d, s) for d in docs for s in range(0, len(self.texts[d]) - self.window + 1, self.window)]
      take = np.unique(np.linspace(0, len(wins) - 1, min(per_class, len(wins))).round().astype(int))
      out.extend(wins[i] for i in take)
    return np.array(out, np.int64).reshape(-1, 2)

  def read(self, doc_start):
    return self.example(int(doc_start[0]), int(doc_start[1]))


@preprocess.register("stdlib_packages")
def stdlib_packages(source, data_cfg, *, train: bool, seed: int):
  """Package-of-origin classification of byte windows (module docstring)."""
  classes = tuple(data_cfg.classes)
  if len(classes) < 2:
    raise ValueError(f"data.classes needs >= 2 packages, got {classes}.")
  pw = PackageWindows(source, classes, int(data_cfg.seq_len) - 1)
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
  return grain.MapDataset.source(pw.eval_windows(int(data_cfg.get("eval_per_class", 64)))).map(pw.read)


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
