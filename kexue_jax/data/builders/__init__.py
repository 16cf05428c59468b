"""Built-in offline TFDS builders (array_record) and their preparation.

`BUILTINS` names the datasets kexue_jax can make without a network:
`python_stdlib_text` (the byte-level Python stdlib), `text_files` (the files of
a local glob, `config.data.glob`) and `mnist1d`. Preparation prints one line
saying what is prepared, from what, and where (TFDS's own download banner,
progress bars and custom-config warnings are silenced: nothing is downloaded). `prepared_builder` prepares one on first use, under a file lock, so
two processes preparing the same dataset at once do not collide (TFDS writes to
a temporary directory and renames it, but the second rename would fail). Builds
are deterministic, so hosts with separate disks each prepare the same copy.
"""
import contextlib
import fcntl
import io
import logging
import os

import tensorflow_datasets as tfds

from kexue_jax.data.builders import mnist1d
from kexue_jax.data.builders import text_files

BUILTINS = ("python_stdlib_text", "text_files", "mnist1d")
FILE_FORMAT = "array_record"


def default_data_dir() -> str:
  """`$KEXUE_DATA_DIR`, else `~/.cache/kexue_jax/tfds`."""
  return os.environ.get("KEXUE_DATA_DIR") or os.path.expanduser(
      "~/.cache/kexue_jax/tfds")


def make_builder(name: str, data_dir: str | None = None, *,
                 glob: str | None = None) -> tfds.core.DatasetBuilder:
  """An (unprepared) builder of a built-in dataset.

  Args:
    name: one of `BUILTINS`.
    data_dir: where datasets live; None = `default_data_dir()`.
    glob: the files of `text_files` (required there). With
      `python_stdlib_text` it also selects `text_files` (the corpus is then
      your files, not the stdlib, and is stored under that name).
  """
  data_dir = data_dir or default_data_dir()
  kw = dict(data_dir=data_dir, file_format=FILE_FORMAT)
  with _quiet_tfds():
    if name in ("python_stdlib_text", "text_files") and glob:
      return text_files.TextFiles(config=text_files.glob_config(glob), **kw)
    if name == "text_files":
      raise ValueError("config.data.name='text_files' needs config.data.glob, "
                       "e.g. --config.data.glob='/data/corpus/**/*.txt'.")
    if name == "python_stdlib_text":
      return text_files.PythonStdlibText(**kw)
    if glob:
      raise ValueError(f"config.data.glob is only for text_files, not {name!r}.")
    if name == "mnist1d":
      return mnist1d.Mnist1d(**kw)
  raise ValueError(f"Unknown built-in dataset {name!r}; built-ins: {BUILTINS}.")


class _DropTfdsWarnings(logging.Filter):
  """Drops TFDS's log records (custom-config and missing dataset_info notes)."""

  def filter(self, record):
    return "tensorflow_datasets" not in record.pathname


_quiet_depth = 0  # _quiet_tfds nests (make_builder inside prepared_builder)


@contextlib.contextmanager
def _quiet_tfds():
  """Silences TFDS's log records (custom-config, missing dataset_info) and
  progress bars; `download_and_prepare`'s stdout banner is redirected apart."""
  f = _DropTfdsWarnings()
  loggers = [logging.getLogger("absl"), logging.getLogger()]
  for lg in loggers:
    lg.addFilter(f)
  for h in logging.getLogger().handlers + logging.getLogger("absl").handlers:
    h.addFilter(f)
  global _quiet_depth
  _quiet_depth += 1
  tfds.disable_progress_bar()
  try:
    yield
  finally:
    _quiet_depth -= 1
    if not _quiet_depth:
      tfds.enable_progress_bar()
    for lg in loggers:
      lg.removeFilter(f)
    for h in logging.getLogger().handlers + logging.getLogger("absl").handlers:
      h.removeFilter(f)


def _preparing_line(builder) -> str:
  cfg = builder.builder_config
  source = cfg.description if cfg is not None else builder.info.description
  return (f"Preparing dataset {builder.name!r} once (nothing is downloaded): "
          f"{source.rstrip('.')}; writing array_record files to "
          f"{os.fspath(builder.data_dir)} ...")


@contextlib.contextmanager
def _file_lock(path: str):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


class CorruptDatasetError(ValueError):
  """A prepared dataset directory cannot be read; the message names it and how to rebuild it."""


def corrupt(where, cause) -> CorruptDatasetError:
  """One line: what is wrong with the prepared dataset in `where`, and how to rebuild it."""
  reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0][:160]
  return CorruptDatasetError(
      f"the prepared dataset in {where} is damaged ({reason}); rebuild it: delete that directory "
      f"(rm -r {where}) and rerun (built-in datasets are prepared again automatically; TFDS catalog "
      "datasets need `tfds build ... --file_format=array_record`).")


def prepared_builder(name: str, data_dir: str | None = None, *,
                     glob: str | None = None) -> tfds.core.DatasetBuilder:
  """`make_builder(...)`, prepared on first use (idempotent, process-safe)."""
  with _quiet_tfds():
    return _prepared_builder(name, data_dir, glob)


def _prepared_builder(name, data_dir, glob):
  builder = make_builder(name, data_dir, glob=glob)
  if builder.is_prepared():
    return builder
  if os.path.isdir(os.fspath(builder.data_path)) and os.listdir(os.fspath(builder.data_path)):
    # A finished build always has dataset_info.json: files without it are a damaged copy, which TFDS
    # would neither use nor rebuild.
    raise corrupt(os.fspath(builder.data_path), "dataset_info.json is missing")
  # One lock per dataset directory (name/config/version), kept outside it.
  rel = os.path.relpath(os.fspath(builder.data_path), builder.data_dir_root)
  lock = os.path.join(builder.data_dir_root, ".locks",
                      rel.replace(os.sep, "-") + ".lock")
  with _file_lock(lock):
    builder = make_builder(name, data_dir, glob=glob)  # Re-read after waiting.
    if not builder.is_prepared():
      if hasattr(builder, "check_requirements"):  # optional packages preparing needs
        builder.check_requirements()
      print(_preparing_line(builder), flush=True)
      try:
        # Its "Downloading and preparing dataset Unknown size ..." banner.
        with contextlib.redirect_stdout(io.StringIO()):
          builder.download_and_prepare(
              download_config=tfds.download.DownloadConfig(
                  try_download_gcs=False))
      except FileExistsError:
        # Another host on a shared filesystem without working flock won the
        # final rename; its copy is identical (builds are deterministic).
        pass
      builder = make_builder(name, data_dir, glob=glob)
      if not builder.is_prepared():
        raise RuntimeError(f"Preparing {name!r} in {builder.data_dir} failed.")
  return builder
