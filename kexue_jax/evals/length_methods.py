"""Inference-time length-extrapolation methods as changes to a trained model config.

A method is a `Method(name, ckpt, attention, layer_fn, core)`:
  ckpt       which trained checkpoint's parameters it uses (a run name);
  attention  AttentionConfig fields overriding the trained ones (PI / NTK / YaRN scalings, log n dagger,
             ReRoPE / Leaky ReRoPE, sliding window, Lambda-mask);
  layer_fn   (per-layer attention dicts, N) -> new list, for changes that touch only some layers (HWFA2);
  core       evaluated at every test length; the others only at 1x and the extension (a study's choice).

"+logn†" is the inference-only log-n retrofit q * max(1, log_N n) (kexue.fm/archives/9706 eq. 14). k = EXTENSION
for PI / NTK / YaRN at every test length (Su's tables are at 8x); dynamic NTK recomputes its factor from the
current length (kexue.fm/archives/9948). ReRoPE: kexue.fm/archives/9708; HWFA2: 9731.
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
  """The attention change of a RoPE scaling (pi, ntk_old, ntk_fixed, ntk_mixed, yarn, dynamic_ntk) from N = n."""
  factor = 1.0 if kind == "dynamic_ntk" else float(EXTENSION)
  return dict(scaling=dict(kind=kind, factor=factor, train_length=n, **kw))


def rerope(w: int, **kw) -> dict[str, Any]:
  return dict(position="rerope", rerope_window=w, **kw)


def leaky_rerope(w: int, k: float) -> dict[str, Any]:
  return dict(position="leaky_rerope", rerope_window=w, leaky_k=float(k))


def hwfa2_rerope(layers: list, n: int) -> list:
  """Only the full-attention layers (window None) switch to ReRoPE, window N/2 (kexue.fm/archives/9731)."""
  return [dict(l, position="rerope", rerope_window=max(1, n // 2)) if l.get("window") is None else dict(l)
          for l in layers]


def rerope_windows(n: int) -> list[int]:
  """Su's w in {64, 128, 256, 384, 512} at N = 512 -> {N/8, N/4, N/2, 3N/4, N}."""
  return sorted({max(1, n // 8), max(1, n // 4), max(1, n // 2), max(1, 3 * n // 4), n})


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
