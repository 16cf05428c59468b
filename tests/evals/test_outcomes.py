"""Per-window outcomes of a fine-tuned classifier: the same windows and accuracy as the training loop's
evaluation, with the file of each window for file-level standard errors."""
import numpy as np

from kexue_jax import train
from kexue_jax.data import pipeline
from kexue_jax.evals import clustered
from kexue_jax.evals import outcomes
from tests.helpers import load_config


def test_classification_outcomes_match_the_loop_evaluation(tmp_path):
  c = load_config("configs/mlm_dropout/finetune.py", "runlocal,holdout=0.5,per_file=2")
  c.num_train_steps = 2
  c.num_eval_batches = None
  result = train.run(c, str(tmp_path))
  out = outcomes.classification_outcomes(c, str(tmp_path))
  ev = list(pipeline.make_eval_iter(c.data, split=c.data.eval_split, global_batch_size=c.batch_size))
  np.testing.assert_array_equal(out["label"], np.concatenate([b["label"] for b in ev]))
  np.testing.assert_array_equal(out["file"], np.concatenate([b["file"] for b in ev]))
  np.testing.assert_allclose(out["correct"].mean(), result["eval"]["eval/accuracy"], rtol=1e-6)
  mean, se = clustered.cluster_mean_se(out["correct"], out["file"])
  assert mean == out["correct"].mean() and np.isfinite(se)
