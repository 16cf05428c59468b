"""The methods the study evaluates on each of its checkpoints (kexue_jax/evals/length_methods.py: what a method
changes), named as in the claims: "logn/" = on the log-n pre-trained checkpoint, "copy/" = on a copy-augmented one,
"+logn†" = the inference-only log-n retrofit. Windows scale with N (our w at N = 128 is Su's w at 512 / 4).
"""
import dataclasses
import re

from kexue_jax.evals import length_methods as L

# Copy-augmented training (the *_copy runs): a quarter of the windows are random printable bytes tiled with a period
# of N/4..N/2, so Su's repeated-column claims are tested on a model that copies.
COPY_ARG = "copy=0.25,copy_source=random,copy_warmup=600"


def all_methods(n: int, variants: tuple[str, ...]) -> list[L.Method]:
  """Every method whose checkpoint is among `variants` (names of the configs that are trained)."""
  w4, w2 = max(1, n // 4), max(1, n // 2)
  sc, rr, leaky = lambda kind, **kw: L.scaling(kind, n, **kw), L.rerope, L.leaky_rerope
  lt, mixed = "retrofit", sc("ntk_mixed", mixed_b=0.625)
  gain_methods = [("rope", {}), ("logn†", dict(logn=lt)), ("ntk_mixed", mixed),
                  ("ntk_mixed+logn†", dict(logn=lt, **mixed)), (f"rerope_w{w2}", rr(w2)),
                  (f"rerope_w{w2}+logn†", rr(w2, logn=lt))]
  by_ckpt = {  # checkpoint -> its methods: (name, attention changes, core[, note or layer_fn])
      "rope": [("rope", {}, 1, "direct extrapolation"), ("logn†", dict(logn=lt), 1), ("pi", sc("pi"), 1),
               ("ntk_old", sc("ntk_old"), 1), ("ntk_fixed", sc("ntk_fixed"), 0), ("ntk_mixed", mixed, 1),
               ("ntk_fixed+logn†", dict(logn=lt, **sc("ntk_fixed")), 0),
               ("ntk_mixed+logn†", dict(logn=lt, **sc("ntk_mixed")), 0), ("dynamic_ntk", sc("dynamic_ntk"), 1),
               ("yarn", sc("yarn"), 1)]
              + [m for w in L.rerope_windows(n) for m in [(f"rerope_w{w}", rr(w), w in (w4, n))]
                 + [(f"rerope_w{w}+logn†", rr(w, logn=lt), 0)] * (w in (w4, w2))]
              + [(f"leaky_w{w4}_k16", leaky(w4, 16), 1), ("window", dict(window=n), 1, "sliding window = N"),
                 ("lambda", dict(window=n, lambda_first_tokens=4), 1, "window N + first 4 tokens")],
      "rope_logn": [("logn/rope", {}, 1)] + [(f"logn/{k}", sc(k), k == "ntk_mixed")
                                            for k in ("pi", "ntk_old", "ntk_fixed", "ntk_mixed", "yarn")]
                   + [(f"logn/rerope_w{w}", rr(w), w == w4) for w in L.rerope_windows(n)]
                   + [(f"logn/leaky_w{w}_k{k}", leaky(w, k), (w, k) == (w4, 16))
                      for w, k in ((w4, 16), (w4, 64), (w2, 8), (w2, 16))] + [("logn/window", dict(window=n), 0)],
      "hwfa": [("hwfa", {}, 1)],
      "inv_leaky": [("inv_leaky", dict(position="rope"), 1, "trained Leaky k=1/16, run as RoPE")],
      "hwfa2": [("hwfa2", {}, 0, "RoPE in the full layers (no swap)"), ("hwfa2+rerope", {}, 1, L.hwfa2_rerope)],
      # Copy-augmented checkpoints (study.py VARIANTS): the repeated column needs a model that copies.
      "rope_copy": [("copy/rope", {}, 1), ("copy/pi", sc("pi"), 0), ("copy/ntk_mixed", mixed, 1),
                    ("copy/yarn", sc("yarn"), 0), (f"copy/rerope_w{w4}", rr(w4), 1), (f"copy/rerope_w{n}", rr(n), 0),
                    (f"copy/leaky_w{w4}_k16", leaky(w4, 16), 0), ("copy/window", dict(window=n), 1)],
      "rope_logn_copy": [("copy-logn/rope", {}, 0), ("copy-logn/ntk_mixed", sc("ntk_mixed"), 1),
                         (f"copy-logn/rerope_w{w4}", rr(w4), 1), (f"copy-logn/leaky_w{w4}_k16", leaky(w4, 16), 0)],
      "hwfa_copy": [("copy/hwfa", {}, 1)],
      **{v: [(v, {}, 1)] for v in ("kna", "cosa", "kna_logn", "cosa_logn", "qna", "kna_nope")},
      "inv_leaky_b8": [("inv_leaky_b8", dict(position="rope"), 1, "trained Leaky k=1/16, base 80000, run as RoPE")],
      # The log-n gap runs (study.GAP_VARIANTS, issue #18): the log-n gains table's methods, at 1x and 8x only.
      **{v: [(f"{p}/{x}", a, 0) for x, a in gain_methods]
         for v, p in (("rope_pre2h", "pre2h"), ("rope_2xsteps", "2xsteps"))},
      "rope_logn_pre2h": [(f"pre2h-logn/{x}", a, 0) for x, a in gain_methods if "logn" not in x],
      # Su's HWFA2 grid (9731 T7, study.py HWFA2_GRID): the ReRoPE swap, at L_train and 8x only.
      **{v: [(f"{v}+rerope", {}, 0, L.hwfa2_rerope)] for v in variants if re.fullmatch(r"hwfa2_w\d+_f\d", v)},
  }
  extra = {v: [(f"{v}/yarn", sc("yarn"), 0), (f"{v}/rerope_w{w4}", rr(w4), 0)] for v in ("kna", "cosa")}
  out = []
  for table in (by_ckpt, extra):
    for ckpt, ms in table.items():
      for name, attention, core, *more in ms if ckpt in variants else ():
        fn = more[0] if more and callable(more[0]) else None
        out.append(L.Method(name, ckpt, attention, fn, bool(core), more[0] if more and not fn else ""))
  return out


# Seed replicates (`<ckpt>_s<k>` runs of the extended plan): the checkpoints retrained with other seeds, and the
# methods evaluated on them -- those of the claims that compare two checkpoints (log n pre-trained vs not, 2, 5a,
# W, H, the gap runs), where one training seed cannot separate the method from seed noise; seed_scale_ckpts adds
# the other compared checkpoints (the opt-in `seeds` scale).
SEED_CKPTS = ("rope", "rope_logn", "hwfa", "rope_logn_copy", "hwfa_copy", "rope_pre2h", "rope_logn_pre2h",
              "rope_2xsteps")
GAP_PREFIXES = ("pre2h/", "pre2h-logn/", "2xsteps/")   # the log-n gap runs' methods (not Su's methods)


def hwfa2_ckpt(n: int, num_layers: int, w: int, f: int) -> str:
  """The HWFA2 run with window w and f full layers: `hwfa2` for the default (w = 2 N / L, f = 2:
  configs/length_extrapolation/hwfa2.py), else the grid's `hwfa2_w<w>_f<f>` (study.HWFA2_GRID)."""
  return "hwfa2" if (w, f) == (2 * n // num_layers, 2) else f"hwfa2_w{w}_f{f}"


def hwfa2_claim_ckpts(n: int, num_layers: int) -> tuple[str, ...]:
  """The HWFA2 runs the claims compare (10a, 10b, 10d): w = N/8 and N/2, f = 1 and 2."""
  return tuple(dict.fromkeys(hwfa2_ckpt(n, num_layers, max(1, n // d), f) for f in (1, 2) for d in (8, 2)))


def seed_scale_ckpts(n: int, num_layers: int) -> tuple[str, ...]:
  """Checkpoints that claims compare with other checkpoints (InvLeaky, QNA, KNA, CosA, HWFA2, the copy-augmented
  baseline: 9, 9b, 10, 11, R5) beyond SEED_CKPTS: their seeds 1.. are runs of the opt-in `seeds` scale only (the
  extended plan's runs, and so its cache, stay as they were)."""
  return ("inv_leaky", "inv_leaky_b8", "qna", "kna", "kna_nope", "cosa", "rope_copy") + hwfa2_claim_ckpts(
      n, num_layers)


def seed_method_names(n: int, num_layers: int = 4) -> set[str]:
  w2, w4 = max(1, n // 2), max(1, n // 4)
  return {"rope", "ntk_mixed", "ntk_mixed+logn†", f"rerope_w{w2}", f"rerope_w{w2}+logn†", "logn/rope",
          "logn/ntk_mixed", f"logn/rerope_w{w2}",
          "logn†", "pi", "window", "hwfa", f"rerope_w{w4}", f"logn/rerope_w{w4}",   # issue #18: 2, 5a, W, H
          f"copy-logn/rerope_w{w4}", "copy/hwfa",
          "inv_leaky", "inv_leaky_b8", "qna", "kna", "kna_nope", "cosa", "copy/rope"} | {   # seed_scale_ckpts
          f"{c}+rerope" for c in hwfa2_claim_ckpts(n, num_layers)} | {
          p + x for p in GAP_PREFIXES for x in ("rope", "logn†", "ntk_mixed", "ntk_mixed+logn†", f"rerope_w{w2}",
                                                f"rerope_w{w2}+logn†")}


def seed_replicates(methods: list[L.Method], n: int, seeds: int, num_layers: int = 4) -> list[L.Method]:
  """For seed s = 1..seeds-1: `name@s<s>` on checkpoint `<ckpt>_s<s>` (1x and 8x only), for the seed-aware
  methods (seed_method_names) of SEED_CKPTS and seed_scale_ckpts."""
  names, ckpts = seed_method_names(n, num_layers), SEED_CKPTS + seed_scale_ckpts(n, num_layers)
  return [dataclasses.replace(m, name=f"{m.name}@s{s}", ckpt=f"{m.ckpt}_s{s}", core=False)
          for s in range(1, seeds) for m in methods if m.ckpt in ckpts and m.name in names]
