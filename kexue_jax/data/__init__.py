"""Data: offline TFDS builders (array_record) read TF-free and fed by grain.

See `pipeline.py` for the API and the batch formats.
"""
from kexue_jax.data.builders import BUILTINS
from kexue_jax.data.builders import default_data_dir
from kexue_jax.data.pipeline import default_data_config
from kexue_jax.data.pipeline import get_data_source
from kexue_jax.data.pipeline import make_eval_iter
from kexue_jax.data.pipeline import make_train_iter
