"""experiments/colab_tpu.ipynb runs end to end on CPU at smoke-test size (nbclient, kernel python3).

By default the cells are checked statically (they parse, and every name they import from kexue_jax / experiments
exists); the end-to-end execution (the study at its tiny scale, run twice, in a fresh kernel: 60-100 s on a
2-core CPU) runs with --runslow. The driver it calls is covered by
tests/experiments/test_length_extrapolation.py::test_study_smoke_tiny by default.

The kernel gets 8 fake CPU devices (the mesh then spans 8 devices, like a TPU v2-8 / v5e-8),
KEXUE_NOTEBOOK_RUNLOCAL=1 and a temporary workdir; install and Drive cells are skipped off Colab.
"""
import json
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "experiments" / "colab_tpu.ipynb"


def _cells():
  import nbformat  # pylint: disable=g-import-not-at-top
  return nbformat.read(NOTEBOOK, as_version=4).cells


def test_install_and_drive_cells_are_colab_only():
  code = [c.source for c in _cells() if c.cell_type == "code"]
  assert "REPO_URL" in code[0] and "KEXUE_NOTEBOOK_RUNLOCAL" in code[0]
  assert "<owner>" not in code[0]                     # the user pastes a clone URL; empty -> one-line message
  assert "REPO_URL is empty" in code[1] and "check=True" not in code[1].split("pip")[0]
  for src in code:
    for action in ('"pip"', "pip install", "drive.mount"):
      if action in src:
        assert "IN_COLAB" in src.split(action)[0], src
    assert "setup_tpu(" not in src  # gone from jax (jax.tools.colab_tpu)


def test_cells_parse_and_their_imports_exist():
  import ast  # pylint: disable=g-import-not-at-top
  import importlib  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  checked = 0
  for src in (c.source for c in _cells() if c.cell_type == "code"):
    # IPython magics / shell lines are not Python: blank them (keeping line numbers) before parsing.
    tree = ast.parse("\n".join("" if l.lstrip().startswith(("!", "%")) else l for l in src.splitlines()))
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("kexue_jax", "experiments"):
        module = importlib.import_module(node.module)
        for alias in node.names:
          assert hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}"), (
              f"the notebook imports {alias.name} from {node.module}, which has no such name")
          checked += 1
      elif isinstance(node, ast.Import):
        for alias in node.names:
          if alias.name.split(".")[0] in ("kexue_jax", "experiments"):
            importlib.import_module(alias.name)
            checked += 1
  assert checked  # the notebook does use the package


@pytest.mark.slow
def test_notebook_executes_on_cpu(tmp_path, monkeypatch):
  import nbclient  # pylint: disable=g-import-not-at-top
  import nbformat  # pylint: disable=g-import-not-at-top
  work = tmp_path / "work"
  env = {
      "KEXUE_NOTEBOOK_RUNLOCAL": "1",
      "KEXUE_NOTEBOOK_WORKDIR": str(work),
      "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip(),
      "MPLBACKEND": "module://matplotlib_inline.backend_inline",
      "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
      "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax_cache"),
  }
  if "KEXUE_DATA_DIR" not in os.environ:
    env["KEXUE_DATA_DIR"] = str(tmp_path / "data")
  for k, v in env.items():
    monkeypatch.setenv(k, v)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(ROOT)}})
  client.execute()

  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
  assert "cpu | 8 devices" in text, text
  assert "'data': 8" in text                         # the auto mesh spans all 8 devices
  assert "configs/length_extrapolation/rope.py:scale=tiny" in text
  assert "corpus: python_stdlib_text/stdlib_py" in text and "sha256 " in text   # which bytes it trains on
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) == 2                            # training loss; accuracy vs length
  # The study ran: its record, report and checkpoints are in the workdir.
  record = json.loads((work / "runs" / "rope" / "record.json").read_text())
  methods = record["methods"]
  assert {"rope", "pi", "ntk_mixed", "rerope_w4", "window"} <= set(methods)
  assert all("16" in m["by_length"] and "128" in m["by_length"] for m in methods.values())
  assert (work / "report" / "REPORT.md").exists()
  recs = [json.loads(l) for l in (work / "runs" / "rope" / "metrics.jsonl").read_text().splitlines()]
  assert max(r["step"] for r in recs if "train/loss" in r) == 4   # trained once (tiny: 4 steps), then reused
  assert text.count("[length_extrapolation] rope:") == 1          # the second pass trained nothing
