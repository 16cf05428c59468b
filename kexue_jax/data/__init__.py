"""Data: offline TFDS builders (array_record) read TF-free and fed by grain.

See `pipeline.py` for the API and the batch formats; `preprocess.py` (LM windows, classification),
`array_views.py` and `text_views.py` (registered here, on import) hold the views.
"""
from kexue_jax.data.builders import BUILTINS
from kexue_jax.data.builders import default_data_dir
from kexue_jax.data.pipeline import default_data_config
from kexue_jax.data.pipeline import get_data_source
from kexue_jax.data.pipeline import make_eval_iter
from kexue_jax.data.pipeline import make_train_iter

# Importing the view modules registers their views in preprocess.PREPROCESS.
from kexue_jax.data import array_views  # noqa: E402,F401  pylint: disable=unused-import
from kexue_jax.data import text_views  # noqa: E402,F401  pylint: disable=unused-import
