"""experiments/ keeps its functions short (issue #14's quality bar: no function over 80 lines)."""
import ast
import pathlib

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[2] / "experiments"
MAX_LINES = 80


def test_no_function_in_experiments_is_over_80_lines():
  too_long = [f"{path.relative_to(EXPERIMENTS)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
              for path in sorted(EXPERIMENTS.rglob("*.py")) for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
              and node.end_lineno - node.lineno + 1 > MAX_LINES]
  assert len(list(EXPERIMENTS.rglob("*.py"))) > 10 and not too_long, too_long
