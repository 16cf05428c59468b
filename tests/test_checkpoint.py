"""checkpoint: save/restore of {state, data_iter}, resharding on restore, load_state, load_params_mapped,
the preemption flag."""
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from kexue_jax import checkpoint


def _state(seed=0):
  rng = np.random.default_rng(seed)
  return {"params": {"enc": {"w": rng.normal(size=(8, 4)).astype(np.float32)},
                     "head": {"b": rng.normal(size=(4,)).astype(np.float32)}},
          "step": np.int32(3)}


def test_save_restore_roundtrip_onto_another_sharding(tmp_path):
  state = _state()
  ckpt = checkpoint.Checkpointer(tmp_path, async_save=False)
  assert ckpt.restore(state, None) is None  # nothing saved yet
  assert ckpt.save(5, state, None, force=True)
  ckpt.wait()
  assert ckpt.latest_step() == 5
  mesh = jax.make_mesh((8,), ("data",))
  row = NamedSharding(mesh, P("data"))
  rep = NamedSharding(mesh, P())
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), np.asarray(a).dtype, sharding=rep), state)
  abstract["params"]["enc"]["w"] = jax.ShapeDtypeStruct((8, 4), jnp.float32, sharding=row)
  restored, step = ckpt.restore(abstract, None)
  ckpt.close()
  assert step == 5
  assert restored["params"]["enc"]["w"].sharding == row
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), restored, state)


def test_load_state_reads_without_a_target(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, async_save=False)
  for step in (1, 2):
    ckpt.save(step, _state(step), None, force=True)
  ckpt.close()
  got, step = checkpoint.load_state(tmp_path)
  assert step == 2
  jax.tree.map(np.testing.assert_array_equal, got, _state(2))
  got, step = checkpoint.load_state(tmp_path, step=1)
  jax.tree.map(np.testing.assert_array_equal, got, _state(1))
  with pytest.raises(FileNotFoundError, match="no checkpoints in"):
    checkpoint.load_state(tmp_path / "elsewhere")


def test_load_params_mapped_renames_and_checks(tmp_path):
  ckpt = checkpoint.Checkpointer(tmp_path, async_save=False)
  ckpt.save(1, _state(), None, force=True)
  ckpt.close()
  src = _state()["params"]
  target = {"encoder": {"w": jax.ShapeDtypeStruct((8, 4), jnp.bfloat16)},
            "new_head": {"b": jax.ShapeDtypeStruct((4,), jnp.float32)}}
  got = checkpoint.load_params_mapped(target, tmp_path, mapping=(("enc", "encoder"),))
  assert set(got) == {"encoder"} and got["encoder"]["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(got["encoder"]["w"], src["enc"]["w"].astype(jnp.bfloat16))
  with pytest.raises(ValueError, match="no parameter under 'decoder'"):
    checkpoint.load_params_mapped(target, tmp_path, mapping=(("enc", "decoder"),))
  with pytest.raises(ValueError, match="has no parameter 'head/w'"):
    checkpoint.load_params_mapped(target, tmp_path, mapping=(("head", "encoder"),))
  bad = {"encoder": {"w": jax.ShapeDtypeStruct((4, 8), jnp.float32)}}
  with pytest.raises(ValueError, match="the model configs differ"):
    checkpoint.load_params_mapped(bad, tmp_path, mapping=(("enc", "encoder"),))


def test_preemption_watcher_turns_sigterm_into_a_flag():
  before = signal.getsignal(signal.SIGTERM)
  with checkpoint.PreemptionWatcher() as watcher:
    assert not watcher.reached(0)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.reached(0) and watcher.signal_name == "SIGTERM"
  assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize("every", [1, 4])
def test_processes_agree_on_stopping_only_every_k_steps(monkeypatch, every):
  """Two processes (simulated): the other one got SIGTERM before step 6. The all-gather runs only at multiples
  of k, and both stop at the first of them from step 6 on; a single process stops at its signal's step."""
  signal_step, gathers = 6, []

  def any_process(flag):  # this process's flag OR'ed with the other process's (signalled before signal_step)
    gathers.append(step)
    return bool(flag) or step >= signal_step

  monkeypatch.setattr(checkpoint.distributed, "any_process", any_process)
  monkeypatch.setattr(checkpoint.jax, "process_count", lambda: 2)
  watcher = checkpoint.PreemptionWatcher(check_every_steps=every)
  stopped = None
  for step in range(1, 20):
    if watcher.reached(step):
      stopped = step
      break
  want = next(s for s in range(signal_step, 20) if s % every == 0)
  assert stopped == want
  assert gathers == [s for s in range(1, want + 1) if s % every == 0]

  monkeypatch.setattr(checkpoint.jax, "process_count", lambda: 1)
  gathers.clear()
  watcher = checkpoint.PreemptionWatcher(check_every_steps=every)
  with watcher:
    assert not watcher.reached(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert watcher.reached(2) and watcher.signal_name == "SIGTERM"  # not a multiple of 4: checked anyway
  assert not gathers
  with pytest.raises(ValueError, match="preemption_check_every_steps must be >= 1"):
    checkpoint.PreemptionWatcher(check_every_steps=0)


def test_saved_steps_lists_the_step_folders_ascending(tmp_path):
  assert checkpoint.saved_steps(tmp_path) == []   # no checkpoints/ folder
  for name in ("300", "1200", "600", "tmp_600", "notes.txt"):
    (tmp_path / "checkpoints" / name).mkdir(parents=True)
  assert checkpoint.saved_steps(tmp_path) == [300, 600, 1200] and checkpoint.saved_steps(str(tmp_path)) == [300, 600, 1200]
