"""Test setup: 8 fake CPU devices (before JAX initialises) and the --runslow flag."""
import os

# Tests compile many small programs and run them for a few steps: LLVM's optimisation passes cost more
# than they save (measured: a 2-step tiny LM run 8.7 s -> 4.8 s). Must be set before JAX initialises.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_threefry_partitionable", True)


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False,
                   help="also run tests marked @pytest.mark.slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  skip = pytest.mark.skip(reason="slow: run with --runslow")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
  """Each train.run builds fresh closures, so jit's in-memory cache misses; the persistent cache (keyed on
  the HLO) lets identical programs from different tests share one compilation."""
  jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  yield


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_dir(tmp_path_factory):
  """Built-in datasets are prepared once per test session in a temporary directory (unless set)."""
  import os
  if "KEXUE_DATA_DIR" not in os.environ:
    os.environ["KEXUE_DATA_DIR"] = str(tmp_path_factory.mktemp("tfds"))
  yield
