"""tasks.base: typed task configs (visible defaults, unknown keys rejected) and the Task protocol's hooks."""
import dataclasses

import ml_collections
import pytest

from kexue_jax import tasks
from kexue_jax.tasks import base
from kexue_jax.tasks import classify
from kexue_jax.tasks import lm
from kexue_jax.tasks import mlm
from kexue_jax.tasks import simsiam


def test_task_config_fills_defaults_and_rejects_unknown_keys():
  t = base.task_config(classify.ClassifyConfig, ml_collections.ConfigDict({"name": "classify", "rdrop_alpha": 4.0}))
  assert t == classify.ClassifyConfig(rdrop_alpha=4.0) and t.passes == "duplicate" and t.mc_passes == 20
  with pytest.raises(ValueError, match=r"unknown config.task keys \['rdrop_alhpa'\] for task 'classify'"):
    base.task_config(classify.ClassifyConfig, {"name": "classify", "rdrop_alhpa": 4.0})


@pytest.mark.parametrize("name, cls", [("lm", lm.LMConfig), ("classify", classify.ClassifyConfig),
                                       ("mlm", mlm.MLMConfig), ("droptoken_classify", mlm.DropTokenClassifyConfig),
                                       ("simsiam", simsiam.SimSiamConfig)])
def test_every_task_has_a_typed_config_with_defaults(name, cls):
  assert name in tasks.TASKS
  missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
  assert not missing, f"{cls.__name__} fields without a visible default: {missing}"


def test_hooks_have_protocol_defaults():
  class Minimal(base.Task):
    unit = "examples"
  t = Minimal()
  assert dict(t.grad_norm_groups) == {}
  params = {"w": 1}
  assert t.adapt_init_params(params) is params
  assert all(base.Task in cls.__mro__ for cls in tasks.TASKS.values())  # every task inherits the defaults
