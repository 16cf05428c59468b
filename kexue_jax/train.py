"""The training loop, readable top to bottom.

    mesh -> task -> data -> optimizer -> sharded train state (restored or initialised in place)
         -> compiled train/eval steps -> for step: train_step / log / eval / checkpoint / preemption

This is the only place that calls ``jax.jit`` with shardings. It knows nothing about any study: a task
(``kexue_jax/tasks``) supplies ``init / loss / evaluate`` and the loop does the rest.

The train state is a plain pytree ``{'step', 'params', 'opt_state', 'extra'}`` (``extra`` = non-parameter
variable collections such as BatchNorm statistics). Every random number in a step comes from
``fold_in(key(seed), step)`` with ``jax_threefry_partitionable``, so results do not depend on the mesh or on
restarts, and a resumed run continues exactly where the interrupted one stopped.
"""
from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from etils import epath

from kexue_jax import checkpoint as ckpt_lib
from kexue_jax import config_lib
from kexue_jax import metrics as metrics_lib
from kexue_jax import optim
from kexue_jax import profiling
from kexue_jax import sharding
from kexue_jax import tasks
from kexue_jax import workdir as workdir_lib
from kexue_jax.data import pipeline


NonFiniteError = ckpt_lib.NonFiniteError  # the loss, the gradients or the state became NaN/Inf


def _peek_batch_spec(data_iter, global_batch_size: int) -> dict[str, jax.ShapeDtypeStruct]:
  """Global shapes of one batch, without consuming it (the iterator state is put back)."""
  state = data_iter.get_state()
  local = next(data_iter)
  data_iter.set_state(state)
  scale = global_batch_size // np.asarray(jax.tree.leaves(local)[0]).shape[0]
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct((a.shape[0] * scale,) + a.shape[1:], a.dtype), local)


def _split_microbatches(batch, k: int):
  """[B, ...] -> [k, B/k, ...] taking every k-th example, so each device keeps an equal share of each slice."""
  return jax.tree.map(lambda x: x.reshape((x.shape[0] // k, k) + x.shape[1:]).swapaxes(0, 1), batch)


def make_train_step(task, tx, lr_schedule, *, rng, microbatches: int, guard_nonfinite: bool):
  """Returns ``train_step(state, batch) -> (state, metrics)`` (pure; jitted by the caller).

  A task with ``phases = n > 1`` objectives (``task.loss(..., phase=i)``) gets n updates per step, in turn on
  the same batch: phase i's gradient is taken at the parameters phase i - 1 left and goes through ``tx``
  (``optim.alternate``: one optimizer per phase). Logged: the sum of the phases' losses, the norm of all their
  gradients together, their task metrics merged; a guarded non-finite step keeps the state of before phase 0.
  """
  phases = int(getattr(task, "phases", 1))

  def loss_fn(params, extra, batch, step_rng, phase):
    kwargs = {"phase": phase} if phases > 1 else {}
    loss, aux = task.loss({"params": params, **extra}, batch, step_rng, **kwargs)
    return loss, aux

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

  def gradients(params, extra, batch, step_rng, phase):
    """(loss, grads, updated extra, task metrics) of one objective on the batch."""
    if microbatches == 1:
      (loss, aux), grads = grad_fn(params, extra, batch, step_rng, phase)
      return loss, grads, aux["mutable"] or extra, aux["metrics"]

    # Gradient accumulation: mean of the slices' gradients == gradient of the mean loss.
    def body(carry, xs):
      grads_acc, extra = carry
      i, mb = xs
      (loss, aux), g = grad_fn(params, extra, mb, jax.random.fold_in(step_rng, i), phase)
      grads_acc = jax.tree.map(lambda a, b: a + b / microbatches, grads_acc, g)
      return (grads_acc, aux["mutable"] or extra), (loss, aux["metrics"])

    zeros = jax.tree.map(jnp.zeros_like, params)
    (grads, extra), (losses, mets) = jax.lax.scan(
        body, (zeros, extra), (jnp.arange(microbatches), _split_microbatches(batch, microbatches)))
    return losses.mean(), grads, extra, jax.tree.map(jnp.mean, mets)

  def train_step(state, batch):
    step_rng = jax.random.fold_in(rng, state["step"])
    params, opt_state, extra = state["params"], state["opt_state"], state["extra"]
    losses, norms, task_metrics = [], [], {}
    for phase in range(phases):
      if phase:  # the previous phase's update, unguarded: the guard below restores the state of phase 0
        updates, opt_state = tx.update(grads, opt_state, params)
        params, extra = optax.apply_updates(params, updates), new_extra
      phase_rng = step_rng if phases == 1 else jax.random.fold_in(step_rng, phase)
      phase_loss, grads, new_extra, phase_metrics = gradients(params, extra, batch, phase_rng, phase)
      losses.append(phase_loss)
      norms.append(optax.global_norm(grads))
      task_metrics.update(phase_metrics)
    loss, grad_norm = (losses[0], norms[0]) if phases == 1 else (sum(losses), jnp.sqrt(sum(n ** 2 for n in norms)))
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    # Optional per-group gradient norms (of the last phase): a task may declare `grad_norm_groups = {name:
    # (top-level param keys)}`.
    group_norms = {f"grad_norm/{name}": optax.global_norm({k: grads[k] for k in keys if k in grads})
                   for name, keys in (getattr(task, "grad_norm_groups", None) or {}).items()}

    def apply_update(_):
      updates, new_opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_opt_state, new_extra

    def keep_state(_):
      return state["params"], state["opt_state"], state["extra"]

    if guard_nonfinite:
      # A non-finite step leaves the state untouched, so the loop can stop with the last good state.
      # `cond` (not a `where` over the whole state) so that a finite step costs no extra memory pass.
      params, opt_state, extra = jax.lax.cond(finite, apply_update, keep_state, None)
    else:
      params, opt_state, extra = apply_update(None)
    new_state = {"step": state["step"] + 1, "params": params, "opt_state": opt_state, "extra": extra}
    applied_lr = lr_schedule(optim.applied_step(state["opt_state"], state["step"]))  # skipped steps hold it back
    return new_state, {"loss": loss, "grad_norm": grad_norm, "learning_rate": applied_lr,
                       "finite": finite, **group_norms, **task_metrics}

  return train_step


def make_mesh_and_rules(config: ml_collections.ConfigDict, devices=None):
  """The run's ``('data', 'fsdp', 'tensor')`` mesh over ``devices`` (default all) and its logical-axis rules,
  after the batch-size checks (one-line errors before any compute)."""
  devices = list(devices or jax.devices())
  mesh_cfg = sharding.resolve_mesh_config(config.mesh, config.get("mesh_preset", "auto"), devices)
  mesh = sharding.make_mesh(mesh_cfg, devices)
  rules = sharding.normalize_rules(config.logical_axis_rules)
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.batch_size // config.microbatches, mesh, "config.batch_size / microbatches")
  return mesh, rules


@dataclasses.dataclass(frozen=True)
class Steps:
  """What ``build_steps`` makes: the sharded state's layout and the jitted (not yet compiled) steps.

  ``train_step(state, batch) -> (state, metrics)`` donates the state; ``eval_step(state, batch) -> {name:
  (sum, count)}``. Lower them inside ``jax.set_mesh(mesh), nn.logical_axis_rules(rules)``.
  """
  tx: optax.GradientTransformation
  lr_schedule: Any
  init_rng: jax.Array
  abstract_model: Any     # {'step', 'params', 'extra'} ShapeDtypeStructs (unboxed)
  abstract_state: Any     # the full state's ShapeDtypeStructs, carrying their shardings
  state_sh: Any           # NamedShardings of the state
  init_state: Any         # rng -> state (jit it with out_shardings=state_sh)
  train_step: Any
  eval_step: Any
  optimizer_skips: bool


def build_steps(config: ml_collections.ConfigDict, task, batch_spec, mesh, rules) -> Steps:
  """Optimizer, sharded state layout and the jitted train/eval steps for ``config`` on ``mesh``.

  The one place the steps are built: ``run`` trains with them and ``kexue_jax.aot`` compiles them for a TPU
  topology, so both see the same shardings, donation and dtype policy.
  """
  batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
  phases, turns = int(getattr(task, "phases", 1)), len(config.optimizer.get("alternate", None) or ())
  if turns not in (0, phases):
    raise ValueError(f"config.optimizer.alternate has {turns} optimizers but task {config.task.get('name')!r} "
                     f"trains {phases} objective(s) in turn per step: give one per objective, or none (one "
                     f"optimizer for all).")
  tx, lr_schedule = optim.make_optimizer(config.optimizer, config.num_train_steps)
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))

  def init_model(rng):
    variables = task.init(rng, {k: jnp.zeros(s.shape, s.dtype) for k, s in batch_spec.items()})
    extra = {k: v for k, v in variables.items() if k != "params"}
    return {"step": jnp.zeros((), jnp.int32), "params": variables["params"], "extra": extra}

  # Initialisation runs outside the mesh/rules context: there `unbox` would apply activation constraints to
  # flax DenseGeneral's flattened kernels (rank mismatch). Placement comes from `out_shardings` instead.
  abstract_boxed = jax.eval_shape(init_model, init_rng)
  model_sh = sharding.logical_shardings(abstract_boxed, mesh, rules)
  abstract_model = nn.unbox(abstract_boxed)
  abstract_opt = jax.eval_shape(tx.init, abstract_model["params"])
  state_sh = {**model_sh, "opt_state": sharding.follow_params(abstract_opt, abstract_model["params"],
                                                              model_sh["params"], mesh)}
  abstract_state = jax.tree.map(lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh),
                                {**abstract_model, "opt_state": abstract_opt}, state_sh)

  def init_state(rng):
    state = nn.unbox(init_model(rng))
    return {**state, "opt_state": tx.init(state["params"])}

  optimizer_skips = bool(config.optimizer.get("skip_nonfinite", False))
  train_step = make_train_step(task, tx, lr_schedule, rng=train_rng, microbatches=config.microbatches,
                               guard_nonfinite=config.stop_on_nonfinite and not optimizer_skips)
  train_step = jax.jit(train_step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, repl),
                       donate_argnums=(0,))
  eval_step = jax.jit(lambda s, b: task.evaluate({"params": s["params"], **s["extra"]}, b),
                      in_shardings=(state_sh, batch_sh), out_shardings=repl)
  return Steps(tx=tx, lr_schedule=lr_schedule, init_rng=init_rng, abstract_model=abstract_model,
               abstract_state=abstract_state, state_sh=state_sh, init_state=init_state,
               train_step=train_step, eval_step=eval_step, optimizer_skips=optimizer_skips)


def _reference_model_config(node):
  """``node`` with every attention ``kernel`` set to "xla" and every ``remat`` off (dicts, lists walked)."""
  if isinstance(node, (dict, ml_collections.ConfigDict)):
    return {k: "xla" if k == "kernel" else False if k == "remat" else _reference_model_config(v)
            for k, v in node.items()}
  if isinstance(node, (list, tuple)):
    return type(node)(_reference_model_config(v) for v in node)
  return node


def model_flops_per_step(config: ml_collections.ConfigDict, batch_spec, *, step: str = "train") -> float | None:
  """FLOPs of one train (or eval) step of ``config``, each counted once over the global batch: the MFU
  numerator, the same for every mesh.

  XLA's ``cost_analysis()`` of the step's *global* program (lowered, not partitioned: per-device counts of a
  compiled SPMD program add replicated work, e.g. the optimizer update under data parallelism, once per
  device), traced for one CPU device with ``attention.kernel="xla"`` (a Pallas/Mosaic custom call such as
  splash attention counts 0 FLOPs in XLA's analysis), ``remat`` off (recomputation is not model work) and
  ``microbatches=1`` (a loop body is counted once). Causal attention is counted as the full L x L matmuls,
  as in PaLM's MFU (Chowdhery et al. 2022, appendix B). None when the backend gives no cost analysis.
  """
  c = config.copy_and_resolve_references()
  with c.unlocked():
    c.model = ml_collections.ConfigDict(_reference_model_config(c.model))
    c.mesh = ml_collections.ConfigDict({axis: 1 for axis in c.mesh})
    c.mesh_preset = "none"
    c.microbatches = 1
  mesh, rules = make_mesh_and_rules(c, jax.devices("cpu")[:1])
  steps = build_steps(c, tasks.get_task(c), batch_spec, mesh, rules)
  fn = steps.train_step if step == "train" else steps.eval_step
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    cost = fn.lower(steps.abstract_state, batch_spec).cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
  return float(cost["flops"]) if cost and "flops" in cost else None


def _init_from(state, init_cfg, task, tx, abstract_params, state_sh):
  """``config.init_from``: a fresh run starts from another run's parameters (fine-tuning).

  ``init_cfg = {workdir, step (None = latest), mapping: ((src_prefix, dst_prefix), ...)}`` (see
  ``checkpoint.load_params_mapped``); parameters outside the mapping keep their initialisation. A task may
  define ``adapt_init_params(loaded) -> loaded`` (e.g. an embedding correction). The optimizer state is
  initialised for the new parameters. A resumed run restores its own checkpoint instead.
  """
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  loaded = ckpt_lib.load_params_mapped(abstract_params, init_cfg.workdir, step=init_cfg.get("step"),
                                       mapping=init_cfg.get("mapping") or (("", ""),))
  adapt = getattr(task, "adapt_init_params", None)
  if adapt is not None:
    loaded = adapt(loaded)
  flat = traverse_util.flatten_dict(state["params"], sep="/")
  flat_sh = traverse_util.flatten_dict(state_sh["params"], sep="/")
  flat_loaded = traverse_util.flatten_dict(loaded, sep="/")
  for k, v in flat_loaded.items():
    v = np.asarray(v, flat[k].dtype)
    flat[k] = jax.make_array_from_callback(v.shape, flat_sh[k], lambda idx, v=v: v[idx])
  params = traverse_util.unflatten_dict(flat, sep="/")
  logging.info("Initialised %d of %d parameter arrays from %s.", len(flat_loaded), len(flat), init_cfg.workdir)
  return {**state, "params": params,
          "opt_state": jax.jit(tx.init, out_shardings=state_sh["opt_state"])(params)}


def evaluate(eval_step, state, eval_batches, batch_sh) -> dict[str, float]:
  """Exact averages over all eval batches: sums and counts are accumulated, then divided."""
  totals: dict[str, list[float]] = {}
  for host_batch in eval_batches:
    out = jax.device_get(eval_step(state, sharding.shard_host_batch(host_batch, batch_sh)))
    for name, (s, c) in out.items():
      acc = totals.setdefault(name, [0.0, 0.0])
      acc[0] += float(s)
      acc[1] += float(c)
  return {name: s / max(c, 1e-12) for name, (s, c) in totals.items()}


def _diverged_message(status: dict[str, Any], *, total: int, rerun: bool, checkpoint: str = "") -> str:
  """One line on a run that diverged under ``optimizer.skip_nonfinite`` (``status`` as saved with its final
  checkpoint): at the end of that run (``rerun=False``), or when the same workdir is run again."""
  first = status.get("first_nonfinite_step")
  what = (f"reached step {status['step']} but its loss there is {status['loss']} (optimizer.skip_nonfinite "
          f"skipped {status['skipped_steps']} steps{f', the first at step {first}' if first else ''}): it diverged")
  fix = "Lower optimizer.learning_rate or set optimizer.clip_grad_norm, and train in a new --workdir"
  if not rerun:
    return f"The run {what}. {fix}."
  return (f"This workdir's run {what}; {checkpoint} but holds that diverged state, so there is nothing to "
          f"resume (num_train_steps={total}). {fix} (--eval_only still evaluates this one).")


def _write_eval_only(config, workdir: epath.Path, step: int, result: dict[str, float]) -> dict[str, Any]:
  """Appends an eval-only record to ``workdir/eval_metrics.jsonl`` (never touching ``metrics.jsonl``)."""
  record = {"step": step, "split": config.data.eval_split, "num_eval_batches": config.num_eval_batches, **result}
  if jax.process_index() == 0:
    path = workdir / "eval_metrics.jsonl"
    with path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    print(metrics_lib.summary({"evaluated": f"checkpoint of step {step}", "split": record["split"], **result,
                               "written to": str(path)}), flush=True)
  return record


def run(config: ml_collections.ConfigDict, workdir: str, *, devices=None, eval_only: bool = False,
        checkpoint_step: int | None = None) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and returns a summary dict.

  ``devices`` restricts the mesh to a subset of ``jax.devices()`` (tests use it to compare meshes).
  ``eval_only``: train nothing; evaluate the checkpoint at ``checkpoint_step`` (None = the latest) of ``workdir``
  on ``config.data.eval_split`` and append ``{step, split, eval/...}`` to ``workdir/eval_metrics.jsonl``.
  The workdir is locked for the duration (``workdir_lib``); a changed config is checked against the
  workdir's ``config.json`` before anything is read, and ``config.json`` is written only once the run's
  inputs passed every check.
  """
  config_lib.validate(config)
  workdir = epath.Path(workdir)
  if eval_only:  # reads a workdir (maybe one still training): no lock, nothing written but eval_metrics.jsonl
    if not (workdir / "checkpoints").exists():
      raise ValueError(f"--eval_only: {workdir} has no checkpoints/; train it first (the same command without "
                       "--eval_only) or point --workdir at a trained run.")
    return _run(config, workdir, devices=devices, eval_only=True, checkpoint_step=checkpoint_step)
  created = not workdir.exists()
  workdir_lib.check_writable(workdir)
  lock = workdir_lib.acquire_lock(workdir)
  try:
    changes = workdir_lib.check_resume(config, workdir)
    for key, old, new in changes:
      logging.warning("config.%s changed since this workdir's config.json: %r -> %r", key.replace("/", "."),
                      old, new)
    return _run(config, workdir, devices=devices)
  finally:
    lock.release()
    if created and jax.process_index() == 0 and workdir.exists() and not any(workdir.iterdir()):
      workdir.rmdir()  # a run that failed before writing anything leaves no workdir behind


def _run(config: ml_collections.ConfigDict, workdir: epath.Path, *, devices=None, eval_only: bool = False,
         checkpoint_step: int | None = None) -> dict[str, Any]:
  t_start = time.time()
  jax.config.update("jax_threefry_partitionable", True)

  # ---------------------------------------------------------------- Mesh and logical-axis rules.
  mesh, rules = make_mesh_and_rules(config, devices)
  batch_sh = sharding.batch_sharding(mesh)

  # ---------------------------------------------------------------- Task, data, optimizer.
  task = tasks.get_task(config)
  train_iter = pipeline.make_train_iter(config.data, seed=config.seed, global_batch_size=config.batch_size)
  batch_spec = _peek_batch_spec(train_iter, config.batch_size)

  # ---------------------------------------------------------------- Sharded train state.
  steps = build_steps(config, task, batch_spec, mesh, rules)
  tx, state_sh, abstract_state, abstract_model = steps.tx, steps.state_sh, steps.abstract_state, steps.abstract_model

  checkpointer = ckpt_lib.Checkpointer(workdir, max_to_keep=config.max_checkpoints_to_keep,
                                       async_save=config.async_checkpointing,
                                       write_timeout_s=config.get("checkpoint_timeout_s", 600.0),
                                       best_metric=config.get("best_checkpoint_metric"),
                                       best_mode=config.get("best_checkpoint_mode", "min"), read_only=eval_only)
  if eval_only and checkpoint_step is not None and checkpoint_step not in checkpointer.manager.all_steps():
    raise ValueError(f"--eval_step={checkpoint_step}: {checkpointer.directory} has no checkpoint of that step; "
                     f"steps present: {sorted(checkpointer.manager.all_steps())}.")
  adapters = ckpt_lib.nonfinite_guard_adapters(abstract_state, sharding.replicated(mesh))
  restored = checkpointer.restore(abstract_state, train_iter, step=checkpoint_step if eval_only else None,
                                  adapters=adapters)
  run_status: dict[str, Any] = {}
  if restored is not None:
    state, start_step = restored
    run_status = checkpointer.run_status(start_step)
    if run_status.get("diverged") and not eval_only:
      raise NonFiniteError(_diverged_message(run_status, total=config.num_train_steps, rerun=True,
                                             checkpoint=checkpointer.describe(start_step)))
    if jax.process_index() == 0 and not eval_only:
      done = start_step >= config.num_train_steps
      print(f"{'already finished at' if done else 'resumed from'} step {start_step} ({checkpointer.directory})",
            flush=True)
  elif eval_only:
    raise ValueError(f"--eval_only: {checkpointer.directory} holds no finished checkpoint; train it first.")
  else:
    state = jax.jit(steps.init_state, out_shardings=state_sh)(steps.init_rng)
    start_step = 0
    if config.get("init_from") and config.init_from.get("workdir"):
      state = _init_from(state, config.init_from, task, tx, abstract_model["params"], state_sh)
  num_params = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(abstract_model["params"]))

  # ---------------------------------------------------------------- Compiled steps.
  optimizer_skips = steps.optimizer_skips
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    train_step = steps.train_step.lower(abstract_state, batch_spec).compile()
  eval_step = steps.eval_step
  step_flops = metrics_lib.compiled_flops(train_step)
  peak_flops = metrics_lib.peak_flops_per_device()
  units_per_step = config.batch_size * task.units_per_example(batch_spec)
  eval_batches = list(pipeline.make_eval_iter(config.data, split=config.data.eval_split,
                                              global_batch_size=config.batch_size,
                                              num_batches=config.num_eval_batches))

  def eval_metrics():
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
      return {f"eval/{k}": v for k, v in evaluate(eval_step, state, eval_batches, batch_sh).items()}

  def status_at(step):
    """What the checkpoint of ``step`` records about the run: a skipping run that ends on a non-finite
    loss diverged (the state stays finite, so it is saved; a rerun must not call it finished)."""
    status = {"first_nonfinite_step": first_nonfinite}
    if optimizer_skips and step == config.num_train_steps and not np.isfinite(last_loss):
      status.update(diverged=True, step=step, loss=str(last_loss),
                    skipped_steps=int(optim.num_skipped_steps(state["opt_state"])))
    return status

  def run_eval(step):
    result = eval_metrics()
    writer.write(step, result)
    return result

  if eval_only:
    return _write_eval_only(config, workdir, start_step, eval_metrics())

  # ---------------------------------------------------------------- The loop.
  workdir_lib.write_config(config, workdir)  # every input passed its checks: now the workdir is this run's
  writer = metrics_lib.MetricWriter(workdir, resume_step=start_step)
  progress = metrics_lib.Progress(config.num_train_steps, start_step, enabled=config.progress_bar)
  profiler = profiling.StepWindowProfiler.from_config(config.get("profile"), workdir)
  total = config.num_train_steps
  window: list[dict[str, Any]] = []
  pending = None  # (step, device metrics) of the step in flight: fetched after the next one is dispatched
  last_train, last_eval, preempted = {}, {}, None
  last_loss = None  # the loss of the last logged step (the final step once the run ends)
  first_nonfinite = run_status.get("first_nonfinite_step")  # with optimizer.skip_nonfinite, over resumes
  t_window, steps_in_window = time.perf_counter(), 0

  def consume(step_and_metrics):
    nonlocal first_nonfinite
    step, m = step_and_metrics
    m = jax.device_get(m)
    finite = m.pop("finite")
    if not finite and first_nonfinite is None:
      first_nonfinite = step
    if not finite and config.stop_on_nonfinite and not optimizer_skips:
      checkpointer.wait()
      raise NonFiniteError(
          f"Non-finite loss or gradient norm at step {step} (loss={float(m['loss'])}, "
          f"grad_norm={float(m['grad_norm'])}). That step did not change the state; "
          f"{checkpointer.describe(checkpointer.latest_step())}. Lower "
          f"optimizer.learning_rate, set optimizer.clip_grad_norm, or set optimizer.skip_nonfinite=True "
          f"to skip such steps.")
    window.append(m)

  with ckpt_lib.PreemptionWatcher(checkpointer.manager,
                                  config.get("preemption_check_every_steps", 1)) as watcher:
    for step in range(start_step + 1, total + 1):
      host_batch = next(train_iter)
      profiler.before_step(step)
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, step_metrics = train_step(state, sharding.shard_host_batch(host_batch, batch_sh))
      profiler.after_step(step, state)
      if pending is not None:
        consume(pending)
      pending = (step, step_metrics)
      steps_in_window += 1
      progress.update(step)  # host-side counter: no device sync

      is_last = step == total
      do_log = step % config.log_every_steps == 0 or is_last
      do_eval = (config.eval_every_steps and step % config.eval_every_steps == 0) or is_last
      do_ckpt = (config.checkpoint_every_steps and step % config.checkpoint_every_steps == 0) or is_last
      stop = watcher.reached(step)
      if do_log or do_eval or do_ckpt or stop:
        consume(pending)
        pending = None
      if do_log:
        dt = time.perf_counter() - t_window
        last_train = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
        m_last = window[-1]
        last_loss = float(m_last["loss"])
        steps_per_sec = steps_in_window / dt
        rec = {**{f"train/{k}": v for k, v in last_train.items() if k != "learning_rate"},
               "learning_rate": float(m_last["learning_rate"]), "steps_per_sec": steps_per_sec,
               f"{task.unit}_per_sec": units_per_step * steps_per_sec, "wall_time": time.time() - t_start}
        if step_flops is not None:
          rec["mfu"] = step_flops * steps_per_sec / peak_flops
        if optimizer_skips:
          rec["skipped_steps"] = int(optim.num_skipped_steps(state["opt_state"]))
        writer.write(step, rec)
        progress.update(step, {"loss": last_train["loss"], "steps/s": steps_per_sec})
        window, t_window, steps_in_window = [], time.perf_counter(), 0
      if do_eval:
        last_eval = run_eval(step)
      if do_ckpt or stop:
        checkpointer.save(step, state, train_iter, force=True, metrics=last_eval if do_eval else None,
                          status=status_at(step))
      if stop:
        preempted = watcher.signal_name or "preemption"
        break

  profiler.stop(state)
  if pending is not None:
    consume(pending)
  if start_step == total and not last_eval:  # a finished run started again: report its last evaluation
    last_eval = {k: v for r in metrics_lib.read_metrics(workdir) if r.get("step") == total
                 for k, v in r.items() if k.startswith("eval/")}
  checkpointer.close()
  writer.close()
  progress.close()
  if optimizer_skips and not preempted and last_loss is not None and not np.isfinite(last_loss):
    # The guard kept the state finite (so it was saved, marked diverged), but a run whose last step is still
    # skipped diverged.
    raise NonFiniteError(_diverged_message(status_at(total), total=total, rerun=False))

  final_step = int(jax.device_get(state["step"]))
  result = {"step": final_step, "train": last_train, "eval": last_eval, "preempted": preempted,
            "num_params": num_params, "wall_time_s": time.time() - t_start, "workdir": str(workdir)}
  lines = {"status": f"stopped by {preempted} (rerun the same command to resume)" if preempted else "finished",
           "step": f"{final_step} / {total}", "parameters": f"{num_params:,}",
           "mesh": dict(mesh.shape), "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}"}
  lines.update({f"train {k}": v for k, v in last_train.items() if k in ("loss", "accuracy")})
  lines.update({k: v for k, v in last_eval.items()})
  lines.update({"wall time": f"{result['wall_time_s']:.1f} s", "metrics": str(writer.path),
                "checkpoints": str(checkpointer.directory), "config": str(workdir / "config.json")})
  if jax.process_index() == 0:
    print(metrics_lib.summary(lines), flush=True)
  return result
