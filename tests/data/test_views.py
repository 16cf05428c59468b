"""The task-specific data views are registered by importing kexue_jax.data (no task module needed)."""
import subprocess
import sys

from tests.helpers import REPO


def test_views_registered_without_importing_tasks():
  script = ("import sys\nfrom kexue_jax.data import preprocess\n"
            "want = {'classification_inmemory', 'classification_semi', 'standin_images', 'text_bytes',\n"
            "        'standin_tokens', 'cls_windows', 'stdlib_packages'}\n"
            "assert want <= set(preprocess.PREPROCESS), sorted(preprocess.PREPROCESS)\n"
            "assert not [m for m in sys.modules if m.startswith('kexue_jax.tasks')]\n")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
