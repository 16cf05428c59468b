"""Data pipeline: TFDS array_record sources -> grain -> host-local numpy batches.

    source = get_data_source(name, split, data_dir)       # tfds, TF-free
    ds = preprocess.get(cfg.preprocess)(source, cfg, train=..., seed=...)
    ds = ds[process_index::process_count]                 # per-process slice
    ds = ds.batch(global_batch_size // process_count, drop_remainder=True)

The global stream does not depend on the number of processes: batch k of
process p holds the examples of global batch k with index = p mod
process_count, so the union over processes is the single-process batch k.

Training iterators are grain `DatasetIterator`s: `get_state()`/`set_state()`,
and `grain.checkpoint.CheckpointSave/CheckpointRestore` inside an orbax
`Composite` checkpoint. Their state is the index of the next batch (plus
worker state when `num_workers > 0`), so a resume is exact.

Batch formats:
- lm_windows:     {"tokens": int32[B, seq_len + 1]}  (bytes; the task shifts)
- classification: {"x": float32[B, ...], "label": int32[B]}
"""
import os

from absl import flags
import grain
import jax
import ml_collections
import tensorflow_datasets as tfds

from kexue_jax.data import builders
from kexue_jax.data import preprocess


def default_data_config() -> ml_collections.ConfigDict:
  """Every data key, with defaults (the byte-level stdlib LM)."""
  return ml_collections.ConfigDict(dict(
      name="python_stdlib_text",  # Built-in (builders.BUILTINS) or TFDS name.
      data_dir=ml_collections.config_dict.placeholder(str),  # None: builders.default_data_dir() for
                                  # built-ins, TFDS's default for the catalog.
      glob=ml_collections.config_dict.placeholder(str),      # text_files: your own files ('/d/**/*.txt').
      train_split="train",
      eval_split="validation",
      preprocess="lm_windows",    # A key of preprocess.PREPROCESS.
      seq_len=256,                # lm_windows: tokens are seq_len + 1 long.
      text_key="text",            # lm_windows: the feature holding the text.
      repeat_frac=0.0,            # lm_windows: fraction of training windows tiled from a segment
                                  # (copy-augmented training; preprocess._WindowSampler).
      repeat_source="text",       # lm_windows: the tiled segment: "text" (window prefix) or "random".
      repeat_warmup=0,            # lm_windows: the first this many training examples are all tiled.
      max_in_memory_bytes=2**30,  # lm_windows: keep a corpus this small in
                                  # RAM, else read documents per window.
      num_workers=0,              # grain worker processes (0: in-process).
      num_threads=4,              # grain.ReadOptions threads.
      prefetch=64,                # grain.ReadOptions prefetch buffer size.
  ))


def get_data_source(name: str, split: str, data_dir: str | None = None, *,
                    glob: str | None = None):
  """A random-access source of one split; prepares built-ins on first use.

  Args:
    name: a built-in (`builders.BUILTINS`) or a TFDS catalog name
      ('lm1b', 'cifar10', 'name/config:version'). Catalog datasets must
      already be prepared in array_record format (nothing is downloaded).
    split: a split name, TFDS slicing allowed ('train[:90%]').
    data_dir: None = `builders.default_data_dir()` for built-ins, TFDS's
      default (`$TFDS_DATA_DIR` or ~/tensorflow_datasets) for the catalog.
    glob: text_files (or python_stdlib_text, which it then replaces): your own
      text files, e.g. '/data/corpus/**/*.txt'.
  """
  if name in builders.BUILTINS:
    builder = builders.prepared_builder(name, data_dir, glob=glob)
  else:
    if glob:
      raise ValueError(f"config.data.glob is only for text_files, not {name!r}.")
    builder = _catalog_builder(name, data_dir)
  _check_split(builder, name, split)
  try:
    source = builder.as_data_source(split=split)
    if len(source):  # the first and last records: a truncated or overwritten shard fails here
      source[0], source[len(source) - 1]  # pylint: disable=pointless-statement
  except (RuntimeError, OSError, ValueError) as e:
    raise builders.corrupt(os.fspath(builder.data_path), e) from e
  return source


def _catalog_builder(name: str, data_dir: str | None):
  """A prepared array_record TFDS catalog builder, or a clear error."""
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f"Unknown dataset {name!r}: not a kexue_jax built-in "
        f"{builders.BUILTINS} nor a TFDS catalog dataset.") from e
  where = os.fspath(builder.data_dir)
  how = (f"prepare it once (needs network and TensorFlow), e.g. `tfds build "
         f"{name} --data_dir {os.fspath(builder.data_dir_root)} "
         "--file_format=array_record`, or set config.data.data_dir where it "
         "was prepared.")
  if not builder.is_prepared():
    raise FileNotFoundError(
        f"TFDS dataset {name!r} is not prepared in {where} and kexue_jax does "
        f"not download it; {how}")
  if builder.info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(
        f"TFDS dataset {name!r} in {where} is stored as "
        f"{builder.info.file_format.value}, but grain needs random access "
        f"(array_record); {how}")
  return builder


def _check_split(builder, name, split):
  for part in split.split("+"):  # 'validation+test': a union of splits
    _check_one_split(builder, name, part.strip())


def _check_one_split(builder, name, split):
  base = split.split("[")[0]
  if base not in builder.info.splits:
    raise ValueError(
        f"Dataset {name!r} has no split {base!r} (splits: "
        f"{sorted(builder.info.splits)}). With text_files a split "
        "with no file is left out; use a larger corpus or other splits.")


def _process(process_index, process_count):
  pi = jax.process_index() if process_index is None else process_index
  pc = jax.process_count() if process_count is None else process_count
  if not 0 <= pi < pc:
    raise ValueError(f"process_index {pi} not in [0, process_count={pc}).")
  return pi, pc


def _local_batch_size(global_batch_size, process_count):
  if global_batch_size <= 0 or global_batch_size % process_count:
    raise ValueError(
        f"global_batch_size {global_batch_size} must be a positive multiple of"
        f" the process count {process_count}.")
  return global_batch_size // process_count


def _source(data_cfg, split):
  return get_data_source(data_cfg.name, split, data_cfg.get("data_dir"),
                         glob=data_cfg.get("glob"))


def _preprocessed(data_cfg, split, *, train, seed):
  """`preprocess(source)`; a record that cannot be read while preprocessing (a
  damaged shard) is one line naming the dataset directory."""
  source = _source(data_cfg, split)
  try:
    return preprocess.get(data_cfg.preprocess)(source, data_cfg, train=train,
                                               seed=seed)
  except (RuntimeError, OSError) as e:
    info = getattr(source, "dataset_info", None)
    where = os.fspath(info.data_dir) if info is not None else data_cfg.name
    raise builders.corrupt(where, e) from e


def _read_options(data_cfg):
  return grain.ReadOptions(num_threads=data_cfg.get("num_threads", 4),
                           prefetch_buffer_size=data_cfg.get("prefetch", 64))


def make_train_iter(data_cfg, *, seed: int, global_batch_size: int,
                    process_index=None, process_count=None):
  """Infinite, shuffled, checkpointable iterator of host-local batches.

  A grain `DatasetIterator` (get_state/set_state; works with
  grain.checkpoint.CheckpointSave/Restore) of numpy batches with leading dim
  global_batch_size // process_count. Same seed -> same batches.
  """
  pi, pc = _process(process_index, process_count)
  local = _local_batch_size(global_batch_size, pc)
  ds = _preprocessed(data_cfg, data_cfg.train_split, train=True, seed=seed)
  ds = ds[pi::pc].batch(local, drop_remainder=True)
  it_ds = ds.to_iter_dataset(_read_options(data_cfg))
  if data_cfg.get("num_workers", 0):
    if not flags.FLAGS.is_parsed():  # grain workers read absl flags; under
      flags.FLAGS.mark_as_parsed()   # absl.app they are parsed already.
    it_ds = it_ds.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=data_cfg.num_workers))
  return iter(it_ds)


def make_eval_iter(data_cfg, *, split: str, global_batch_size: int,
                   num_batches: int | None = None, process_index=None,
                   process_count=None) -> grain.MapDataset:
  """Deterministic, finite batches of `split` (the same on every iteration).

  Returns a grain MapDataset of host-local batches (`len()` = number of
  batches; iterate it as often as you like). The last incomplete global batch
  is dropped so that every process sees the same number of batches.
  `num_batches` (None = all) keeps the first batches only; the training loop
  passes the top-level `config.num_eval_batches`.
  """
  pi, pc = _process(process_index, process_count)
  local = _local_batch_size(global_batch_size, pc)
  ds = _preprocessed(data_cfg, split, train=False, seed=0)
  n = len(ds) // global_batch_size
  if num_batches is not None:
    n = min(n, int(num_batches))
  if n == 0:
    raise ValueError(
        f"Split {split!r} of {data_cfg.name!r} has {len(ds)} eval examples, "
        f"fewer than one global batch of {global_batch_size}.")
  ds = ds[:n * global_batch_size][pi::pc]
  return ds.batch(local, drop_remainder=True)
