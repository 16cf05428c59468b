"""What every study report shares: the claim checklist, the template fill, one plotting style, one footer."""
from __future__ import annotations

import os
import platform
import re
import string
import subprocess
from typing import Any, Mapping, Sequence

from experiments import stats
from experiments.framework import claims as claims_lib

MARK = {claims_lib.HOLDS: "✅ holds", claims_lib.FAILS: "❌ does not hold", claims_lib.INCONCLUSIVE: "➖ inconclusive"}

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "rules.md")) as _f:
  RULES = " ".join(_f.read().split())   # the verdict rules: one paragraph of every report


def checklist(verdicts: Sequence[claims_lib.Verdict]) -> str:
  """Markdown bullets, one per claim, then the count of each verdict."""
  out = []
  for v in verdicts:
    out += [f"- **{MARK[v.verdict]}** ({v.claim.id}) — {v.claim.text}", f"  - {v.line()}"]
  return "\n".join(out + ["", f"{claims_lib.summary(verdicts)}."])


def finished(records: Sequence[dict], **match) -> list[dict]:
  """The records of the runs that did not fail whose labels equal ``match`` (e.g. opt="lion", batch=16)."""
  return [r for r in records if not r.get("error") and all(r.get(k) == v for k, v in match.items())]


def blocks(template_path: str) -> dict[str, string.Template]:
  """A study's Markdown template, by part: the text before the first ``<!-- block NAME -->`` line is "main" (the
  report); each such line starts block NAME (prose the report code fills in where it applies; trailing newlines
  dropped). ``$name`` placeholders (string.Template: no clash with LaTeX braces)."""
  with open(template_path) as f:
    parts = re.split(r"^<!-- block (\w+) -->\n", f.read(), flags=re.M)
  return {"main": string.Template(parts[0]),
          **{k: string.Template(v.rstrip("\n")) for k, v in zip(parts[1::2], parts[2::2])}}


def write(study_file: str, out_dir: str, meta: Mapping[str, Any], verdicts, records, figs, **fields) -> str:
  """REPORT.md of the study beside ``study_file`` into out_dir (atomically): its report_template.md filled with
  ``fields`` and the shared parts (verdict rules, claim checklist, failed runs, plots, footer, the number of runs
  and their seeds); returns the path."""
  failed = [f"- `{r['name']}`: {r['error'][:200]}" for r in records if r.get("error")]
  template = blocks(os.path.join(os.path.dirname(os.path.abspath(study_file)), "report_template.md"))["main"]
  shared = dict(rules=RULES, checklist=checklist(verdicts), failed="\n".join(failed) or "none",
                plots="\n\n".join(f"![{p}]({p})" for p in figs), footer=footer(meta), runs=len(records),
                seeds=sorted({r["seed"] for r in records if "seed" in r}))
  return save_text(out_dir, template.substitute(shared, **fields))


def save_text(out_dir: str, text: str, name: str = "REPORT.md") -> str:
  """Writes ``text`` to out_dir/name atomically (a crash never leaves half a report); returns the path."""
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, name)
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)
  return path


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], sep: str = " --- ") -> str:
  """A Markdown table (``sep``: the cell text of its header rule, e.g. "---")."""
  lines = ["| " + " | ".join(header) + " |", "|" + f"{sep}|" * len(header)]
  lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
  return "\n".join(lines)


def figure(rows: int = 1, cols: int = 1, size: tuple[float, float] | None = None):
  """(Figure, axes) in the one house style. A bare Figure (no pyplot state): safe in notebooks and threads."""
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  fig = Figure(figsize=size or (6.5 * cols, 4.2 * rows))
  axes = fig.subplots(rows, cols, squeeze=False)
  for ax in axes.flat:
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=8)
  return fig, axes


def mean_sd(ax, x, samples: Sequence[Mapping[Any, float] | None], scale: float = 1.0, **kw) -> None:
  """Error bars at x: mean ± sample sd over the units of each sample {unit: value}, times ``scale``."""
  st = [stats.Stat.of(s) for s in samples]
  ax.errorbar(x, [s.mean * scale for s in st], yerr=[s.std * scale for s in st], marker="o", **kw)


def save(fig, out_dir: str, name: str, ncol: int = 1) -> str:
  """Tight layout, 100 dpi, PNG into out_dir; returns the file name (``ncol``: legend columns, for many lines)."""
  for ax in fig.axes:
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7, ncol=ncol)
  fig.tight_layout()
  os.makedirs(out_dir, exist_ok=True)
  fig.savefig(os.path.join(out_dir, name), dpi=100)
  return name


def machine() -> dict[str, str]:
  """Machine, library versions and the git revision of the code that produced the report."""
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    rev = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--", "kexue_jax", "configs",
                            ":(glob)experiments/**/*.py", ":(glob)experiments/**/report_template.md",
                            "experiments/framework/rules.md"],
                           capture_output=True, text=True, check=True).stdout.strip()
    rev += " (+ uncommitted changes)" if dirty else ""
  except (OSError, subprocess.CalledProcessError):
    rev = "unknown"
  return {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
                     f"{jax.default_backend()} backend",
          "versions": f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}",
          "git": rev}


def footer(meta: Mapping[str, Any]) -> str:
  """The one closing section: machine, versions, git revision, wall times (estimate vs measured), commands."""
  lines = ["## Provenance", ""]
  for key, label in (("trained_on", "Runs trained on"), ("machine", "Report made on"), ("versions", "Libraries"),
                     ("git", "Code revision"),
                     ("overrides", "Config overrides applied to every run"), ("wall", "Wall time")):
    if meta.get(key):
      lines.append(f"- {label}: {meta[key]}")
  lines += ["", "```"] + list(meta.get("commands", [])) + ["```"]
  if meta.get("example_run"):
    lines += ["", "One run by hand:", "", "```", meta["example_run"], "```"]
  return "\n".join(lines)
