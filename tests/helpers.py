"""Helpers shared by test files (fixtures live in the conftest.py files)."""
import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent


def load_config(path: str, arg: str | None = None):
  """Loads ``configs/...py`` the way ``--config path:arg`` does (get_config(arg))."""
  full = REPO / path
  spec = importlib.util.spec_from_file_location(f"cfg_{full.stem}", full)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()
