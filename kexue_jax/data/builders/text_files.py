"""Byte-level text corpora made of local text files: `python_stdlib_text`, `text_files`.

Documents are files. `python_stdlib_text` is the Python standard library of
the running interpreter (`sysconfig.get_paths()['stdlib']`, `**/*.py`);
`text_files` is any local glob (`glob_config(pattern)`, `config.data.glob`), so
a user can point it at their own corpus. Both share the code below.

Stdlib selection rule (`stdlib_config`): every `*.py` under the stdlib root,
except files with a directory component in `STDLIB_EXCLUDED_DIRS`
(`site-packages`/`dist-packages`: third-party code; `__pycache__`; and the test
suites `test`/`tests`/`idle_test`, which hold deliberately malformed sources,
odd encodings and large generated fixtures), empty files, and files that are
not valid UTF-8. For Python 3.11 this is ~730 files, ~12 MB. A user glob keeps
every regular, non-empty file it matches (bytes are taken as they are).

Split rule: by file, from the hash of its relative path (POSIX separators,
relative to the non-wildcard prefix of the glob):
`int(sha1(relpath).hexdigest(), 16) % 100` below 90 -> train, below 95 ->
validation, else test. Splits with no file are left out of the dataset.

The config name carries the Python version (stdlib) or a hash of the glob plus
a fingerprint of the matched files (relative path, size, mtime), so corpora
from different Pythons or changed files never share a directory.

Features: `text` (the file's bytes) and `path` (its relative path; a data
source returns it as UTF-8 bytes). Records are written in sorted path order (`disable_shuffling=True`), so index
order is the file order. Preparation reads the files once: no TF, no Beam.
"""
import dataclasses
import glob as glob_lib
import hashlib
import os
import sys
import sysconfig

import numpy as np
from etils import epath
import tensorflow_datasets as tfds
from tensorflow_datasets.core import utils as tfds_utils

STDLIB_EXCLUDED_DIRS = ("site-packages", "dist-packages", "__pycache__",
                        "test", "tests", "idle_test")
# (split name, cumulative upper bound of the hash bucket in [0, 100)).
DEFAULT_SPLITS = (("train", 90), ("validation", 95), ("test", 100))
_WILDCARDS = "*?["


@dataclasses.dataclass(eq=False)
class TextFilesConfig(tfds.core.BuilderConfig):
  """Which files make the corpus.

  Attributes:
    pattern: a glob (`**` recursive) of the files to read.
    exclude_dirs: drop files with any of these directory components.
    require_utf8: drop files whose bytes are not valid UTF-8.
    splits: ((split, cumulative bucket bound), ...) over sha1(relpath) % 100.
  """
  pattern: str = ""
  exclude_dirs: tuple[str, ...] = ()
  require_utf8: bool = False
  splits: tuple[tuple[str, int], ...] = DEFAULT_SPLITS


def python_version() -> str:
  return "{}.{}.{}".format(*sys.version_info[:3])


def stdlib_root() -> str:
  return sysconfig.get_paths()["stdlib"]


def stdlib_config() -> TextFilesConfig:
  """The standard library of the running interpreter (see module docstring)."""
  version = python_version()
  return TextFilesConfig(
      name="stdlib_py" + version.replace(".", "_"),
      description=(f"Python {version} standard library sources "
                   f"({stdlib_root()}/**/*.py) without "
                   f"{', '.join(STDLIB_EXCLUDED_DIRS)}; byte-level, one "
                   "document per file."),
      pattern=os.path.join(stdlib_root(), "**", "*.py"),
      exclude_dirs=STDLIB_EXCLUDED_DIRS,
      require_utf8=True)


def glob_config(pattern: str) -> TextFilesConfig:
  """A corpus of every file matching `pattern` (e.g. '/data/books/**/*.txt').

  Raises ValueError when the glob matches no file.
  """
  pattern = os.path.abspath(os.path.expanduser(pattern))
  root = glob_root(pattern)
  files = _matching_files(pattern)
  if not files:
    raise ValueError(
        f"The glob {pattern!r} matches no file. Check the path; use '**' for "
        "recursive matches (e.g. '/data/corpus/**/*.txt').")
  h = hashlib.sha1(pattern.encode())
  for f in files:
    st = os.stat(f)
    h.update(f"\0{os.path.relpath(f, root)}\0{st.st_size}\0{st.st_mtime_ns}"
             .encode())
  return TextFilesConfig(
      name="glob_" + h.hexdigest()[:16],
      description=f"Text files matching {pattern}; byte-level, one document "
                  "per file.",
      pattern=pattern)


def glob_root(pattern: str) -> str:
  """The directory part of `pattern` before its first wildcard."""
  parts = pattern.split(os.sep)
  for i, part in enumerate(parts):
    if any(c in part for c in _WILDCARDS):
      return os.sep.join(parts[:i]) or os.sep
  return os.path.dirname(pattern)


def _matching_files(pattern: str) -> list[str]:
  return sorted(f for f in glob_lib.glob(pattern, recursive=True)
                if os.path.isfile(f))


def split_of(relpath: str, splits=DEFAULT_SPLITS) -> str:
  """The split of a file, from the hash of its relative POSIX path."""
  bucket = int(hashlib.sha1(relpath.encode("utf-8")).hexdigest(), 16) % 100
  for name, bound in splits:
    if bucket < bound:
      return name
  raise ValueError(f"Split bounds {splits} must end at 100.")


def _is_utf8(path: str) -> bool:
  with open(path, "rb") as f:
    try:
      f.read().decode("utf-8")
      return True
    except UnicodeDecodeError:
      return False


def list_documents(config: TextFilesConfig) -> dict[str, list[tuple[str, str]]]:
  """{split: [(relpath, abspath), ...]}: the files the config selects.

  Drops files under `exclude_dirs`, empty files and, if `require_utf8`, files
  that are not valid UTF-8.
  """
  root = glob_root(config.pattern)
  out = {name: [] for name, _ in config.splits}
  for path in _matching_files(config.pattern):
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    if set(rel.split("/")[:-1]) & set(config.exclude_dirs):
      continue
    if not os.path.getsize(path):
      continue
    if config.require_utf8 and not _is_utf8(path):
      continue
    out[split_of(rel, config.splits)].append((rel, path))
  return out


class _LocalTextFiles(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Byte-level corpus of the local text files a `TextFilesConfig` selects."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  # TFDS's default `code_path` imports `importlib_resources`, an optional
  # dependency; this file is the code path (it has no checksums file).
  @tfds_utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    cfg = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f"{cfg.description} Built with Python {python_version()}."
                     " Split by sha1(relative path) % 100: "
                     f"{dict(cfg.splits)} (cumulative bounds)."),
        features=tfds.features.FeaturesDict({
            "text": tfds.features.Tensor(shape=(), dtype=np.object_),
            "path": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(
            python_version=python_version(), pattern=cfg.pattern,
            exclude_dirs=list(cfg.exclude_dirs),
            require_utf8=cfg.require_utf8, splits=dict(cfg.splits)),
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Local files only.
    docs = list_documents(self.builder_config)
    return {name: self._generate_examples(files)
            for name, files in docs.items() if files}

  def _generate_examples(self, files):
    for rel, path in files:
      with open(path, "rb") as f:
        yield rel, {"text": f.read(), "path": rel}


class PythonStdlibText(_LocalTextFiles):
  """The Python standard library sources of the running interpreter."""

  BUILDER_CONFIGS = [stdlib_config()]


class TextFiles(_LocalTextFiles):
  """Your own text files: built with `config=glob_config(pattern)`."""
