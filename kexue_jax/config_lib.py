"""Config helpers: the one config loader, the keys every training config has, ``parse_arg``, validation.

A config file is plain Python with ``get_config(arg=None) -> ml_collections.ConfigDict``; it usually starts
from :func:`base_config` and overrides what it needs. :func:`load_config` loads ``path-or-name[:arg]`` and
applies ``--config.KEY=VALUE`` overrides the way absl's ``config_flags`` does (the value is parsed to the key's
type; a key that does not exist is an error naming the closest one). Mistakes are :class:`ConfigError`, one line.
"""
from __future__ import annotations

import ast
import difflib
import importlib.util
import math
import os
from typing import Any

from absl import logging
import ml_collections


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
  """big_vision-style ``"runlocal,variant=ntk,steps=100"`` -> ConfigDict over the defaults in ``spec``.

  A bare word sets a boolean default to True; ``k=v`` is parsed as a Python literal when it can be (else
  kept as a string) and must name a key of ``spec``.
  """
  out = ml_collections.ConfigDict(dict(spec))
  for part in filter(None, (p.strip() for p in (arg or "").split(","))):
    key, eq, value = part.partition("=")
    if key not in spec:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}; this config accepts {sorted(spec)}.")
    if not eq:
      if not isinstance(spec[key], bool):
        raise ValueError(f"config argument {key!r} needs a value ({key}=...).")
      out[key] = True
      continue
    try:
      parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      parsed = value
    default = spec[key]
    if isinstance(default, bool):
      out[key] = bool(parsed)
    elif default is None:
      out[key] = parsed
    else:
      try:
        out[key] = type(default)(parsed)
      except (TypeError, ValueError):
        raise ValueError(f"config argument {key}={value!r} must be of type {type(default).__name__} (default "
                         f"{default!r}).") from None
  return out


class ConfigError(ValueError):
  """A mistake in a config spec, its file or an override; the message is one line saying what to change
  (``kexue`` prints it as ``kexue: error: ...`` with exit code 2)."""


class ConfigNotFoundError(ConfigError):
  """``--config`` names no config file; the message lists the shipped configs."""


def _import_path(path: str):
  """Executes the Python file at ``path`` as a fresh module (config files are loaded by path, not as a package)."""
  path = os.path.abspath(path)
  name = f"_kexue_config_{os.path.splitext(os.path.basename(path))[0]}_{abs(hash(path))}"
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def split_spec(spec: str) -> tuple[str, str | None]:
  """``"configs/x/y.py:a=1,b"`` -> ``("configs/x/y.py", "a=1,b")``, ``"lm/tiny:runlocal"`` -> ``("lm/tiny",
  "runlocal")``; no ``:`` -> ``(spec, None)``. A ``.py:`` splits first, so an arg may itself hold ``:``."""
  path, colon, arg = spec.partition(".py:")
  if colon:
    return path + ".py", arg
  name, colon, arg = spec.partition(":")
  return (name, arg) if colon else (spec, None)


def parse_value(text: str, field_type: type | None, where: str) -> Any:
  """The text of ``--config.KEY=text`` as a value of the key's type (``where`` names the flag in errors)."""
  if field_type is bool:
    if text.lower() in ("true", "1", "yes", "on"):
      return True
    if text.lower() in ("false", "0", "no", "off"):
      return False
    raise ConfigError(f"{where}: expected true or false.")
  if text == "None":
    return None
  if field_type is int:
    try:
      return int(text)
    except ValueError:
      raise ConfigError(f"{where}: expected an integer.") from None
  if field_type is float:
    try:
      return float(text)
    except ValueError:
      raise ConfigError(f"{where}: expected a number (e.g. 3e-4).") from None
  if field_type is str:
    return text
  if field_type is not None and issubclass(field_type, ml_collections.ConfigDict):
    raise ConfigError(f"{where}: that key is a group; set its keys instead ({where.split('=')[0]}.KEY=VALUE).")
  try:  # tuples, lists, and keys without a type (None-valued): a Python literal, else the text itself
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    if field_type in (tuple, list, dict):
      raise ConfigError(f"{where}: expected a Python {field_type.__name__} literal.") from None
    return text


def apply_override(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  """``config.<dotted> = value``; a string is parsed to the key's type (as ``--config.KEY=value`` is, like absl's
  ``config_flags``), other values are set as they are. Unknown keys name the closest existing one."""
  where = f"--config.{dotted}={value}"
  node, parts = config, dotted.split(".")
  for i, part in enumerate(parts):
    keys = sorted(node.keys())
    if part not in node:
      path = ".".join(["config"] + parts[:i])
      close = difflib.get_close_matches(part, keys, n=1)
      hint = f"did you mean {path}.{close[0]}? " if close else ""
      raise ConfigError(f"{where}: {path} has no key {part!r}; {hint}its keys are {', '.join(keys)}.")
    if i < len(parts) - 1:
      node = node[part]
      if not isinstance(node, ml_collections.ConfigDict):
        raise ConfigError(f"{where}: config.{'.'.join(parts[:i + 1])} is a {type(node).__name__}, not a group "
                          "of keys.")
  field_type = node.get_type(parts[-1])
  parsed = parse_value(value, field_type, where) if isinstance(value, str) else value
  try:
    node[parts[-1]] = parsed
  except (TypeError, ValueError) as e:
    raise ConfigError(f"{where}: config.{dotted} is a {field_type.__name__}, cannot set it to "
                      f"{parsed!r} ({e}).") from None


def apply_overrides(config: ml_collections.ConfigDict, overrides: Any = ()) -> ml_collections.ConfigDict:
  """Sets dotted keys (:func:`apply_override` each): ``{"data.glob": "/x/*.txt"}``, ``["data.glob=/x/*.txt"]``
  (as on the command line) or ``[("data.glob", "/x/*.txt")]``."""
  if hasattr(overrides, "items"):
    items = overrides.items()
  else:
    items = [o if isinstance(o, tuple) else tuple(o.partition("=")[::2]) for o in overrides]
  for key, value in items:
    apply_override(config, key, value)
  return config


def load_config(spec: str, overrides: Any = ()) -> ml_collections.ConfigDict:
  """``path-or-name[:arg]`` -> ``get_config(arg)`` (``get_config()`` without ``:``) with ``overrides`` applied
  (:func:`apply_overrides`). The one config loader of the repo: ``kexue --config``, the study launcher, tests.

  ``path-or-name`` is a file or a shipped config's short name (:func:`resolve_config_path`). Every failure (no
  such file, a file that does not load, a bad ``:arg``, an unknown or mistyped override) is a
  :class:`ConfigError` with a one-line message; the file's traceback is logged at INFO level.
  """
  name, arg = split_spec(spec)
  path = resolve_config_path(name)
  try:
    module = _import_path(path)
  except Exception as e:  # noqa: BLE001 - any failure of the user's file is reported, not traced
    logging.info("Traceback of the config error:", exc_info=True)
    raise ConfigError(f"config file {path} does not load: {type(e).__name__}: {e} (--verbosity=0 shows the "
                      "traceback).") from None
  if not hasattr(module, "get_config"):
    raise ConfigError(f"config file {path} has no get_config(arg=None) function.")
  try:
    config = module.get_config(arg) if arg is not None else module.get_config()
  except Exception as e:  # noqa: BLE001
    logging.info("Traceback of the config error:", exc_info=True)
    kind = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
    raise ConfigError(f"--config {spec}: {kind}{e}") from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f"get_config() of {path} returned a {type(config).__name__}, not an ml_collections "
                      "ConfigDict.")
  return apply_overrides(config, overrides)


def load_sibling(config_file: str, name: str):
  """Imports ``name`` (e.g. ``"_common.py"``) from the folder of ``config_file``.

  Config files are loaded by path (``--config configs/x/y.py``), not as a package, so fragments shared by
  a study's configs are imported by path too.
  """
  return _import_path(os.path.join(os.path.dirname(os.path.abspath(config_file)), name))


def config_roots() -> list[str]:
  """Folders that hold the shipped ``<group>/<name>.py`` configs: ``kexue_jax/configs`` in an installed
  package (setup.py maps the repository's ``configs/`` there), ``configs/`` next to the package in a checkout."""
  package = os.path.dirname(os.path.abspath(__file__))
  return [d for d in (os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs"))
          if os.path.isdir(d)]


def shipped_configs() -> list[str]:
  """Short names (``lm/tiny``) of the configs in :func:`config_roots` (``_*.py`` fragments left out)."""
  names = set()
  for root in config_roots():
    for group in os.listdir(root):
      if os.path.isdir(os.path.join(root, group)):
        names.update(f"{group}/{f[:-3]}" for f in os.listdir(os.path.join(root, group))
                     if f.endswith(".py") and not f.startswith("_"))
  return sorted(names)


def resolve_config_path(name: str) -> str:
  """A config file from a path or a short name, so ``--config lm/tiny`` works from any directory.

  Tried in order: ``name`` as a path (relative to the working directory), then ``name`` relative to each of
  :func:`config_roots`, each also with ``.py`` appended and with a leading ``configs/`` dropped
  (``configs/lm/tiny.py``, ``lm/tiny.py`` and ``lm/tiny`` name the same shipped file).
  Raises ConfigNotFoundError (one line, listing the shipped configs) when nothing matches.
  """
  path = os.path.expanduser(name)
  short = path[len("configs/"):] if path.startswith("configs/") else path
  candidates = [path] + ([] if os.path.isabs(path) else [os.path.join(r, short) for r in config_roots()])
  for c in candidates:
    for f in (c, c + ".py"):
      if os.path.isfile(f):
        return f
  known = shipped_configs()
  close = difflib.get_close_matches(short[:-3] if short.endswith(".py") else short, known, n=1)
  hint = f"did you mean {close[0]!r}? " if close else ""
  raise ConfigNotFoundError(
      f"no config file {name!r} (not a file here nor under {config_roots()}); {hint}give a path to a "
      f"get_config() file or a shipped config: {', '.join(known)}.")


# Top-level keys the loop reads; anything else at the top level is a mistake (caught by `validate`).
TOP_LEVEL_KEYS = (
    "seed", "num_train_steps", "batch_size", "log_every_steps", "eval_every_steps", "checkpoint_every_steps",
    "max_checkpoints_to_keep", "async_checkpointing", "num_eval_batches", "microbatches", "stop_on_nonfinite",
    "progress_bar", "mesh", "mesh_preset", "logical_axis_rules", "model", "task", "data", "optimizer", "distributed_init",
    "study", "init_from", "best_checkpoint_metric", "best_checkpoint_mode", "profile", "checkpoint_timeout_s",
    "allow_config_change", "preemption_check_every_steps",
)

# Model sizes that must be positive integers wherever a model config has them.
_POSITIVE_MODEL_INTS = ("num_layers", "num_heads", "head_dim", "embed_dim", "mlp_dim", "vocab_size", "num_classes",
                        "hidden_dim", "width", "depth", "patch_size", "num_kv_heads")
_BYTE_VOCAB = 256  # lm_windows yields bytes 0..255 (data/preprocess.py)


def base_config() -> ml_collections.ConfigDict:
  """Every key the training loop reads, with defaults. Configs override; studies may add under ``study``."""
  from kexue_jax import optim  # pylint: disable=g-import-not-at-top
  from kexue_jax import sharding  # pylint: disable=g-import-not-at-top
  from kexue_jax.data import pipeline  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_train_steps = 1000
  c.batch_size = 32                # global batch, split over mesh data x fsdp
  c.microbatches = 1               # gradient accumulation: the batch is processed in this many slices
  c.log_every_steps = 50
  c.eval_every_steps = 500         # 0 = only at the end
  c.num_eval_batches = 8
  c.checkpoint_every_steps = 500   # 0 = only at the end (and on preemption)
  c.max_checkpoints_to_keep = 3    # 0 or None = keep every checkpoint
  # Keep the max_checkpoints_to_keep best checkpoints by this evaluation metric (e.g. "eval/loss", ranked by
  # best_checkpoint_mode "min"/"max"; only checkpoints saved at an eval step compete) plus the latest one.
  c.best_checkpoint_metric = ml_collections.config_dict.placeholder(str)
  c.best_checkpoint_mode = "min"
  c.checkpoint_timeout_s = 600.0   # a checkpoint write not finished by then fails the run with one line
  c.allow_config_change = False    # resume even if model/batch/data/seed keys differ from config.json
  c.async_checkpointing = True
  c.stop_on_nonfinite = True       # NaN/Inf loss or gradients stops the run (unless the optimizer skips them)
  c.progress_bar = True
  c.distributed_init = False       # call jax.distributed.initialize() (multi-host TPU pods / GPU clusters)
  # Multi-process runs agree on stopping after a SIGTERM/SIGINT every this many steps (one tiny all-gather,
  # which waits for the step in flight): a signal is acted on within this many steps, so keep
  # preemption_check_every_steps x step time well inside the scheduler's grace period (about 30 s for Cloud TPU
  # / GCE spot VMs; SLURM's GraceTime). One process checks its signal at every step, at no cost.
  c.preemption_check_every_steps = 10
  # A jax.profiler trace of steps start_step .. start_step + num_steps - 1 into WORKDIR/profile (TensorBoard's
  # profile plugin or Perfetto reads it); start_step None = no trace.
  c.profile = ml_collections.ConfigDict({"start_step": ml_collections.config_dict.placeholder(int),
                                         "num_steps": 5})

  c.mesh = ml_collections.ConfigDict(dict(sharding.DEFAULT_MESH))
  c.mesh_preset = "auto"           # "auto": a mesh left at its default becomes the topology's preset
  c.logical_axis_rules = [list(r) for r in sharding.DEFAULT_RULES]

  c.task = ml_collections.ConfigDict({"name": "lm"})
  c.model = ml_collections.ConfigDict({"name": "transformer_lm", "dtype": "auto", "param_dtype": "float32"})
  c.data = pipeline.default_data_config()
  c.optimizer = optim.default_optimizer_config()
  c.study = ml_collections.ConfigDict()  # free-form, for experiment drivers (never read by the loop)
  # Start a fresh run from another run's parameters (fine-tuning): mapping = ((src_prefix, dst_prefix), ...)
  # of '/'-joined parameter paths, "" = everything (train._init_from, checkpoint.load_params_mapped).
  c.init_from = ml_collections.ConfigDict({"workdir": ml_collections.config_dict.placeholder(str),
                                           "step": ml_collections.config_dict.placeholder(int),
                                           "mapping": (("", ""),)})
  return c


def validate(config: ml_collections.ConfigDict) -> None:
  """Cheap checks before any compute; each error says what to change."""
  unknown = sorted(set(config.keys()) - set(TOP_LEVEL_KEYS))
  if unknown:
    raise ValueError(f"unknown top-level config keys {unknown}; known keys are {list(TOP_LEVEL_KEYS)} "
                     "(study-specific values belong under config.study).")
  missing = [k for k in ("seed", "num_train_steps", "batch_size", "mesh", "model", "task", "data", "optimizer")
             if k not in config]
  if missing:
    raise ValueError(f"config is missing required keys {missing}; start from kexue_jax.config_lib.base_config().")
  for key in ("num_train_steps", "batch_size", "log_every_steps", "microbatches", "preemption_check_every_steps"):
    if key in config and int(config[key]) < 1:
      raise ValueError(f"config.{key} must be >= 1, got {config[key]}.")
  for key in ("eval_every_steps", "checkpoint_every_steps"):
    if key in config and int(config[key]) < 0:
      raise ValueError(f"config.{key} must be >= 0 (0 = only at the end), got {config[key]}.")
  keep = config.get("max_checkpoints_to_keep")
  if keep is not None and int(keep) < 0:
    raise ValueError(f"config.max_checkpoints_to_keep must be >= 0 (0 or None = keep all), got {keep}.")
  if "checkpoint_timeout_s" in config and not float(config.checkpoint_timeout_s) > 0:
    raise ValueError(f"config.checkpoint_timeout_s must be > 0, got {config.checkpoint_timeout_s}.")
  _check_finite_numbers(config)
  _check_profile(config.get("profile"), int(config.num_train_steps))
  model, data = config.model, config.data
  for key in _POSITIVE_MODEL_INTS:
    value = model.get(key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
      raise ValueError(f"config.model.{key} must be a positive integer, got {value!r}.")
  if data.get("seq_len") is not None and int(data.seq_len) < 1:
    raise ValueError(f"config.data.seq_len must be >= 1, got {data.seq_len}.")
  for key, low in (("num_workers", 0), ("num_threads", 1), ("prefetch", 0)):
    if data.get(key) is not None and int(data[key]) < low:
      raise ValueError(f"config.data.{key} must be >= {low}, got {data[key]}.")
  if (data.get("preprocess") == "lm_windows" and model.get("vocab_size") is not None
      and int(model.vocab_size) < _BYTE_VOCAB):
    raise ValueError(f"config.model.vocab_size={model.vocab_size} is smaller than the data's vocabulary: "
                     f"data.preprocess='lm_windows' yields byte tokens 0..{_BYTE_VOCAB - 1}; set "
                     f"model.vocab_size >= {_BYTE_VOCAB}.")
  lr = config.optimizer.get("learning_rate")
  if isinstance(lr, (int, float)) and not lr >= 0:  # 0 is a deliberate frozen run (tests use it); < 0 ascends
    raise ValueError(f"config.optimizer.learning_rate must be >= 0, got {lr}.")
  if config.batch_size % config.get("microbatches", 1):
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by "
                     f"config.microbatches={config.microbatches}.")


def _check_profile(profile: Any, num_train_steps: int) -> None:
  """``config.profile`` traces steps ``start_step .. start_step + num_steps - 1``: both positive integers, and
  the window must start within the run (else the run would end without the trace that was asked for)."""
  if not profile or profile.get("start_step") is None:
    return
  start, num = profile.get("start_step"), profile.get("num_steps", 5)
  for key, value in (("start_step", start), ("num_steps", num)):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
      raise ValueError(f"config.profile.{key} must be a positive integer, got {value!r} (config.profile.start_step="
                       f"None turns profiling off).")
  if start > num_train_steps:
    raise ValueError(f"config.profile.start_step={start} is after the run's last step (config.num_train_steps="
                     f"{num_train_steps}); choose a step in 1..{num_train_steps}.")


def _check_finite_numbers(config: Any, prefix: str = "config") -> None:
  """No NaN/Inf anywhere in the config (e.g. ``--config.optimizer.learning_rate=inf``)."""
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      _check_finite_numbers(value, f"{prefix}.{key}")
    elif isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f"{prefix}.{key} must be a finite number, got {value}.")


def to_dict(config: Any) -> Any:
  """ConfigDict -> plain JSON-able dict (tuples become lists).

  ``FieldReference`` values are resolved wherever they are, including inside lists (where ``ConfigDict`` keeps
  them unresolved): a value derived from another key (``logn_base_length`` from ``data.seq_len``) is read here
  with that key's current value, after every ``--config.`` override.
  """
  if isinstance(config, ml_collections.FieldReference):
    return to_dict(config.get())
  if isinstance(config, (ml_collections.ConfigDict, dict)):
    return {k: to_dict(v) for k, v in config.items()}
  if isinstance(config, (list, tuple)):
    return [to_dict(v) for v in config]
  return config
