"""Preprocessing: from a random-access data source to a grain MapDataset.

Each entry of `PREPROCESS` is a plain function
`fn(source, data_cfg, *, train: bool, seed: int) -> grain.MapDataset` giving
the *global* (not per-process, not batched) example stream:
- train=True: infinite, shuffled/sampled, deterministic given `seed`, and a
  pure function of the index (so an iterator's state is just an index);
- train=False: finite, in a fixed order.
`pipeline.py` then slices per process and batches. Add your own with
`@register("name")`.

- `lm_windows` -> {"tokens": int32[seq_len + 1]} of bytes 0..255.
  Train: a window start is drawn uniformly over all valid window positions of
  the split (documents weighted by their number of windows), with an RNG keyed
  on (seed, index) by `grain.MapDataset.random_map`. Documents shorter than
  seq_len + 1 bytes are never sampled. `data.repeat_frac` (default 0) replaces that
  fraction of the training windows by a prefix of s ~ U{L/4..L/2} bytes tiled
  to the window length L (copy-augmented training; `_WindowSampler`).
  Eval: each document, in source order, cut into windows of seq_len + 1 bytes
  with stride seq_len (consecutive windows share one byte, so every byte after
  a document's first is a target exactly once); the tail shorter than a window
  is dropped, as are documents shorter than seq_len + 1.
- `classification` -> {"x": float32[...], "label": int32}. Input key `x` or
  `image` (uint8 images are scaled to [0, 1]); label key `label` or `y`.
  Train: global shuffle, reshuffled each epoch (`shuffle` then `repeat`).
"""
from collections.abc import Callable
import functools
import sys

import grain
import numpy as np

PREPROCESS: dict[str, Callable[..., grain.MapDataset]] = {}


def register(name: str):
  """Decorator adding a preprocess function to `PREPROCESS`."""
  def wrap(fn):
    PREPROCESS[name] = fn
    return fn
  return wrap


def get(name: str):
  if name not in PREPROCESS:
    raise ValueError(f"Unknown preprocess {name!r}; known: {sorted(PREPROCESS)}."
                     " Add one with kexue_jax.data.preprocess.register(name).")
  return PREPROCESS[name]


# ----------------------------------------------------------------------------
# Language modelling on bytes.


def _as_bytes(text) -> np.ndarray:
  if isinstance(text, str):
    text = text.encode("utf-8")
  return np.frombuffer(text, np.uint8)


class Documents:
  """The documents of a source, read once: lengths, and bytes if they fit.

  A corpus of at most `max_in_memory_bytes` is kept as one flat uint8 buffer
  (a window is then a slice; the stdlib corpus is ~12 MB); a larger one is
  read back from the source per window. Picklable, for grain workers.
  """

  def __init__(self, source, key: str = "text",
               max_in_memory_bytes: int = 2**30):
    texts, lengths, total = [], [], 0
    for i in range(len(source)):
      text = _as_bytes(source[i][key])
      lengths.append(len(text))
      total += len(text)
      if total <= max_in_memory_bytes:
        texts.append(text)
      else:
        texts = None
    self.lengths = np.array(lengths, np.int64)
    self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
    self.buffer = np.concatenate(texts) if texts else None
    self.source, self.key = (None, None) if texts else (source, key)

  def window(self, doc: int, start: int, length: int) -> np.ndarray:
    """int32[length]: bytes [start, start + length) of document `doc`."""
    if self.buffer is not None:
      begin = int(self.offsets[doc]) + start
      out = self.buffer[begin:begin + length]
    else:
      out = _as_bytes(self.source[doc][self.key])[start:start + length]
    return out.astype(np.int32)


class _WindowSampler:
  """(index, rng) -> a uniformly drawn window of `length` bytes.

  With `repeat_frac` > 0, that fraction of the windows (a Bernoulli draw per window) is replaced by a segment of
  s ~ U{length // 4, ..., length // 2} bytes tiled to `length`: copy-augmented training, so that a small model
  meets in-context copies within its training length (see `lm_windows`). `repeat_source`: "text" = the window's
  own first s bytes; "random" = printable random bytes (32..126), which only copying can predict.
  `repeat_warmup`: the first that many examples of the stream (global index) are all tiled (a copy warm-up).
  """

  def __init__(self, docs: Documents, length: int, repeat_frac: float = 0.0, repeat_source: str = "text",
               repeat_warmup: int = 0):
    self.doc_ids = np.flatnonzero(docs.lengths >= length)
    if not len(self.doc_ids):
      raise ValueError(
          f"No document is at least seq_len + 1 = {length} bytes long (the "
          f"longest of {len(docs.lengths)} has "
          f"{docs.lengths.max(initial=0)}); lower seq_len or use longer "
          "documents.")
    if not 0.0 <= repeat_frac <= 1.0:
      raise ValueError(f"data.repeat_frac must be in [0, 1], got {repeat_frac}.")
    if repeat_source not in ("text", "random"):
      raise ValueError(f"data.repeat_source must be 'text' or 'random', got {repeat_source!r}.")
    self.repeat_source = repeat_source
    if repeat_warmup < 0:
      raise ValueError(f"data.repeat_warmup must be >= 0 examples, got {repeat_warmup}.")
    self.repeat_warmup = int(repeat_warmup)
    self.ends = np.cumsum(docs.lengths[self.doc_ids] - length + 1)
    self.docs, self.length, self.repeat_frac = docs, length, float(repeat_frac)

  def __call__(self, index, rng: np.random.Generator):
    u = int(rng.integers(self.ends[-1]))
    d = int(np.searchsorted(self.ends, u, side="right"))
    start = u - (int(self.ends[d - 1]) if d else 0)
    tokens = self.docs.window(int(self.doc_ids[d]), start, self.length)
    warm = index < self.repeat_warmup
    if warm or (self.repeat_frac and rng.random() < self.repeat_frac):  # no extra draw when off: same streams
      s = int(rng.integers(max(1, self.length // 4), max(1, self.length // 2) + 1))
      seg = tokens[:s] if self.repeat_source == "text" else rng.integers(32, 127, size=s).astype(tokens.dtype)
      tokens = np.resize(seg, self.length)
    return {"tokens": tokens}


def eval_windows(lengths: np.ndarray, seq_len: int) -> np.ndarray:
  """(doc, start) int64[N, 2] of the evaluation windows (see module doc)."""
  out = [(d, s) for d, n in enumerate(lengths)
         for s in range(0, int(n) - seq_len, seq_len)]
  return np.array(out, np.int64).reshape(-1, 2)


@register("lm_windows")
def lm_windows(source, data_cfg, *, train: bool, seed: int):
  """Byte windows of `data_cfg.seq_len + 1` tokens (see module docstring)."""
  seq_len = int(data_cfg.seq_len)
  docs = Documents(source, data_cfg.get("text_key", "text"),
                   data_cfg.get("max_in_memory_bytes", 2**30))
  if train:
    sampler = _WindowSampler(docs, seq_len + 1, float(data_cfg.get("repeat_frac", 0.0) or 0.0),
                             data_cfg.get("repeat_source", "text"), int(data_cfg.get("repeat_warmup", 0) or 0))
    return grain.MapDataset.range(sys.maxsize).random_map(sampler, seed=seed)
  windows = eval_windows(docs.lengths, seq_len)
  if not len(windows):
    raise ValueError(
        f"No evaluation document is at least seq_len + 1 = {seq_len + 1} bytes"
        " long; lower seq_len or use another eval split.")
  read = functools.partial(_read_window, docs, seq_len + 1)
  return grain.MapDataset.source(windows).map(read)


def _read_window(docs: Documents, length: int, doc_start) -> dict:
  return {"tokens": docs.window(int(doc_start[0]), int(doc_start[1]), length)}


# ----------------------------------------------------------------------------
# Classification.


def classification_example(example) -> dict[str, np.ndarray]:
  """{"x": float32[...], "label": int32[]} from a TFDS example dict."""
  x_key = next((k for k in ("x", "image") if k in example), None)
  y_key = next((k for k in ("label", "y") if k in example), None)
  if x_key is None or y_key is None:
    raise ValueError("classification needs features 'x' or 'image' and "
                     f"'label' or 'y'; got {sorted(example)}.")
  x = np.asarray(example[x_key])
  x = x.astype(np.float32) / 255 if x.dtype == np.uint8 else x.astype(
      np.float32)
  return {"x": x, "label": np.asarray(example[y_key], np.int32)}


@register("classification")
def classification(source, data_cfg, *, train: bool, seed: int):
  """Examples mapped by `classification_example`; shuffled when training."""
  del data_cfg
  ds = grain.MapDataset.source(source)
  if train:
    ds = ds.shuffle(seed=seed).repeat()
  return ds.map(classification_example)
