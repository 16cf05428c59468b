"""The evaluated methods: (trained checkpoint, attention changes at inference).

A method is a `Method(name, ckpt, attention, layer_fn, core)`:
  ckpt       which training run's parameters it uses (a config of configs/length_extrapolation/);
  attention  AttentionConfig fields overriding the trained ones (PI/NTK/YaRN scalings, log n dagger,
             ReRoPE / Leaky ReRoPE, sliding window, Lambda-mask);
  layer_fn   (per-layer attention dicts, N) -> new list, for changes that touch only some layers (HWFA2);
  core       evaluated at every test length (plots); the others only at 1x and 8x (tables, claims).

Names: methods on the log-n pre-trained checkpoint are prefixed "logn/"; "+logn†" is the inference-only
log-n retrofit q * max(1, log_N n) (kexue.fm/archives/9706 eq. 14). k = 8 for PI / NTK / YaRN at every test
length (Su's tables are at 8x); dynamic NTK recomputes its factor from the current length (9948).
"""
import dataclasses
from typing import Any, Callable

EXTENSION = 8


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  ckpt: str
  attention: dict = dataclasses.field(default_factory=dict)
  layer_fn: Callable[[list, int], list] | None = None
  core: bool = False
  note: str = ""


def scaling(kind: str, n: int, **kw) -> dict[str, Any]:
  factor = 1.0 if kind == "dynamic_ntk" else float(EXTENSION)
  return dict(scaling=dict(kind=kind, factor=factor, train_length=n, **kw))


def _hwfa2_rerope(layers, n):
  """Only the full-attention layers switch to ReRoPE, window N/2 (kexue.fm/archives/9731)."""
  return [dict(l, position="rerope", rerope_window=max(1, n // 2)) if l.get("window") is None else dict(l)
          for l in layers]


def rerope_windows(n: int) -> list[int]:
  """Su's w in {64, 128, 256, 384, 512} at N = 512 -> {N/8, N/4, N/2, 3N/4, N}."""
  return sorted({max(1, n // 8), max(1, n // 4), max(1, n // 2), max(1, 3 * n // 4), n})


def all_methods(n: int, variants: tuple[str, ...]) -> list[Method]:
  """Every method whose checkpoint is among `variants` (names of the configs that are trained)."""
  w4, w2 = max(1, n // 4), max(1, n // 2)
  out: list[Method] = []
  add = lambda *a, **k: out.append(Method(*a, **k))
  lt = "retrofit"

  if "rope" in variants:
    add("rope", "rope", {}, core=True, note="direct extrapolation")
    add("logn†", "rope", dict(logn=lt), core=True)
    add("pi", "rope", scaling("pi", n), core=True)
    add("ntk_old", "rope", scaling("ntk_old", n), core=True)
    add("ntk_fixed", "rope", scaling("ntk_fixed", n))
    add("ntk_mixed", "rope", scaling("ntk_mixed", n, mixed_b=0.625), core=True)
    add("ntk_fixed+logn†", "rope", dict(logn=lt, **scaling("ntk_fixed", n)))
    add("ntk_mixed+logn†", "rope", dict(logn=lt, **scaling("ntk_mixed", n)))
    add("dynamic_ntk", "rope", scaling("dynamic_ntk", n), core=True)
    add("yarn", "rope", scaling("yarn", n), core=True)
    for w in rerope_windows(n):
      add(f"rerope_w{w}", "rope", dict(position="rerope", rerope_window=w), core=w in (w4, n))
      if w in (w4, w2):
        add(f"rerope_w{w}+logn†", "rope", dict(position="rerope", rerope_window=w, logn=lt))
    add(f"leaky_w{w4}_k16", "rope", dict(position="leaky_rerope", rerope_window=w4, leaky_k=16.0), core=True)
    add("window", "rope", dict(window=n), core=True, note="sliding window = N")
    add("lambda", "rope", dict(window=n, lambda_first_tokens=4), core=True, note="window N + first 4 tokens")

  if "rope_logn" in variants:
    p = "logn/"
    add(p + "rope", "rope_logn", {}, core=True)
    add(p + "pi", "rope_logn", scaling("pi", n))
    add(p + "ntk_old", "rope_logn", scaling("ntk_old", n))
    add(p + "ntk_fixed", "rope_logn", scaling("ntk_fixed", n))
    add(p + "ntk_mixed", "rope_logn", scaling("ntk_mixed", n), core=True)
    add(p + "yarn", "rope_logn", scaling("yarn", n))
    for w in rerope_windows(n):
      add(f"{p}rerope_w{w}", "rope_logn", dict(position="rerope", rerope_window=w), core=w == w4)
    for w, k in ((w4, 16), (w4, 64), (w2, 8), (w2, 16)):
      add(f"{p}leaky_w{w}_k{k}", "rope_logn", dict(position="leaky_rerope", rerope_window=w, leaky_k=float(k)),
          core=(w, k) == (w4, 16))
    add(p + "window", "rope_logn", dict(window=n))

  if "hwfa" in variants:
    add("hwfa", "hwfa", {}, core=True)
  if "inv_leaky" in variants:
    add("inv_leaky", "inv_leaky", dict(position="rope"), core=True, note="trained Leaky k=1/16, run as RoPE")
  if "hwfa2" in variants:
    add("hwfa2", "hwfa2", {}, note="RoPE in the full layers (no swap)")
    add("hwfa2+rerope", "hwfa2", {}, layer_fn=_hwfa2_rerope, core=True)
  # Copy-augmented checkpoints (run.py COPY_VARIANTS): the repeated column needs a model that copies.
  if "rope_copy" in variants:
    p = "copy/"
    add(p + "rope", "rope_copy", {}, core=True)
    add(p + "pi", "rope_copy", scaling("pi", n))
    add(p + "ntk_mixed", "rope_copy", scaling("ntk_mixed", n, mixed_b=0.625), core=True)
    add(p + "yarn", "rope_copy", scaling("yarn", n))
    add(f"{p}rerope_w{w4}", "rope_copy", dict(position="rerope", rerope_window=w4), core=True)
    add(f"{p}rerope_w{n}", "rope_copy", dict(position="rerope", rerope_window=n))
    add(f"{p}leaky_w{w4}_k16", "rope_copy", dict(position="leaky_rerope", rerope_window=w4, leaky_k=16.0))
    add(p + "window", "rope_copy", dict(window=n), core=True)
  if "rope_logn_copy" in variants:
    p = "copy-logn/"
    add(p + "rope", "rope_logn_copy", {})
    add(p + "ntk_mixed", "rope_logn_copy", scaling("ntk_mixed", n), core=True)
    add(f"{p}rerope_w{w4}", "rope_logn_copy", dict(position="rerope", rerope_window=w4), core=True)
    add(f"{p}leaky_w{w4}_k16", "rope_logn_copy", dict(position="leaky_rerope", rerope_window=w4, leaky_k=16.0))
  if "hwfa_copy" in variants:
    add("copy/hwfa", "hwfa_copy", {}, core=True)
  for v in ("kna", "cosa", "kna_logn", "cosa_logn"):
    if v in variants:
      add(v, v, {}, core=True)
  for v in ("kna", "cosa"):
    if v in variants:
      add(f"{v}/yarn", v, scaling("yarn", n))
      add(f"{v}/rerope_w{w4}", v, dict(position="rerope", rerope_window=w4))
  return out


# Seed replicates (run.py --seeds): the checkpoints retrained with other seeds, and the methods evaluated on
# them -- those of the claims that compare two checkpoints (log n pre-trained vs not), where one training seed
# cannot separate the method from seed noise.
SEED_CKPTS = ("rope", "rope_logn", "hwfa", "rope_logn_copy", "hwfa_copy")


def seed_method_names(n: int) -> set[str]:
  w2, w4 = max(1, n // 2), max(1, n // 4)
  return {"rope", "ntk_mixed", "ntk_mixed+logn†", f"rerope_w{w2}", f"rerope_w{w2}+logn†", "logn/rope",
          "logn/ntk_mixed", f"logn/rerope_w{w2}",
          "logn†", "pi", "window", "hwfa", f"rerope_w{w4}", f"logn/rerope_w{w4}",   # issue #18: 2, 5a, W, H
          f"copy-logn/rerope_w{w4}", "copy/hwfa"}


def seed_replicates(methods: list[Method], n: int, seeds: int) -> list[Method]:
  """For seed s = 1..seeds-1: `name@s<s>` on checkpoint `<ckpt>_s<s>` (1x and 8x only)."""
  names = seed_method_names(n)
  return [dataclasses.replace(m, name=f"{m.name}@s{s}", ckpt=f"{m.ckpt}_s{s}", core=False)
          for s in range(1, seeds) for m in methods if m.ckpt in SEED_CKPTS and m.name in names]


def model_config(train_model: dict, method: Method, n: int) -> dict:
  """The trained `config.model` (a plain dict) with the method's inference-time changes."""
  m = {k: (dict(v) if isinstance(v, dict) else v) for k, v in train_model.items()}
  m["attention"] = {**dict(m.get("attention") or {}), **method.attention}
  layers = m.get("layer_attention")
  if layers:
    layers = [dict(l or {}) for l in layers]
    if method.attention:  # a change for every layer must not be shadowed by the per-layer entries
      layers = [{**l, **method.attention} for l in layers]
    if method.layer_fn is not None:
      layers = method.layer_fn(layers, n)
    m["layer_attention"] = layers
  return m
