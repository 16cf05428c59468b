"""Su Jianlin's published length-extrapolation numbers, copied exactly from his articles.

Sources: https://kexue.fm/archives/9603 (HWFA), 9675 (NTK), 9706 (NTK fixed/mixed, log n dagger), 9708 (ReRoPE),
9728 (InvLeaky), 9731 (HWFA2), 9859 (KeyNorm). Setup: ~100M-parameter 24-layer single-head GAU, post-norm,
causal LM, trained at 512 and tested at 4096 (8x); metric = per-token accuracy in percent.

`SU` maps Su's row name -> (acc at 512 (train), acc at 4096 on the repeated set, acc at 4096 non-repeated).
`OURS_TO_SU` maps our method names (methods.py; window sizes scaled by 128/512) to Su's rows.
"""
import re

SU_SETUP = dict(train_length=512, test_length=4096, params="~100M", layers=24, block="GAU (single head)",
                norm="post", data="unstated (probably Chinese text)", metric="per-token accuracy (%)")


def _by(name: str, table: dict, cols: tuple) -> dict:
  """Rows of one of Su's two-way tables: ``name.format(key, col)`` -> (512, 4096 repeated, 4096 non-repeated)."""
  return {name.format(k, c): v for k, rows in table.items() for c, v in zip(cols, rows)}


SU = {
    # T2/T3/T4/T5a (9603, 9675, 9706, 9708).
    "Baseline": (49.41, 24.17, 23.16),
    "Baseline-log n": (49.40, 24.60, 24.02),
    "PI-RoPE": (49.41, 15.04, 13.54),
    "PI-RoPE-log n": (49.40, 14.99, 16.51),
    "NTK-RoPE-old": (49.41, 51.28, 39.27),
    "NTK-RoPE-log n-old": (49.40, 61.71, 43.75),
    "NTK-RoPE-fixed": (49.41, 51.86, 39.61),
    "NTK-RoPE-log n†-fixed": (49.41, 55.94, 41.11),
    "NTK-RoPE-log n-fixed": (49.40, 62.85, 44.14),
    "NTK-RoPE-mixed": (49.41, 53.09, 40.12),
    "NTK-RoPE-log n†-mixed": (49.41, 59.11, 42.38),
    "NTK-RoPE-log n-mixed": (49.40, 68.91, 45.41),
    "HFWA": (48.70, 80.84, 48.15),
    # T5b: ReRoPE window ablation (9708), by w: rows ReRoPE-w, ReRoPE-w-log n†, ReRoPE-w-log n.
    **_by("ReRoPE-w{}{}", {64: ((49.41, 69.39, 45.19), (49.41, 78.58, 47.42), (49.40, 84.38, 48.14)),
                            128: ((49.41, 76.11, 47.82), (49.41, 82.28, 48.78), (49.40, 85.47, 48.87)),
                            256: ((49.41, 77.90, 48.48), (49.41, 82.40, 48.85), (49.40, 85.12, 49.07)),
                            384: ((49.41, 70.72, 48.15), (49.41, 76.42, 48.31), (49.40, 83.24, 48.62)),
                            512: ((49.41, 7.09, 8.25), (49.41, 7.08, 8.25), (49.40, 15.84, 10.83))},
          ("", "-log n†", "-log n")),
    # T5c: Leaky ReRoPE (9708), by w: rows k = 64, 32, 16, 8 (all log n).
    **_by("Leaky ReRoPE-w{}-k{}-log n", {
        128: ((49.40, 85.29, 48.96), (49.40, 85.31, 49.03), (49.40, 85.15, 49.10), (49.40, 80.00, 48.11)),
        256: ((49.40, 84.60, 49.03), (49.40, 84.30, 48.97), (49.40, 83.59, 48.87), (49.40, 69.80, 45.72))},
          (64, 32, 16, 8)),
    # T6: InvLeaky (9728).
    "InvLeaky ReRoPE-w128-log n": (49.38, 82.25, 48.32),
    "InvLeaky ReRoPE-w128-b8-log n": (49.62, 81.15, 48.85),
    # T7: HWFA2 (9731), by f: rows w = 32, 64, 128, 256.
    **_by("HFWA-ReRoPE-w{1}-f{0}", {
        1: ((49.29, 83.13, 49.34), (49.32, 82.41, 49.37), (49.21, 80.18, 48.99), (49.00, 54.94, 47.64)),
        2: ((49.50, 84.09, 49.35), (49.46, 84.43, 49.36), (49.35, 83.09, 48.97), (49.37, 75.24, 48.42))},
          (32, 64, 128, 256)),
    # T8a/T8b: KeyNorm (9859). CosA-log n non-repeated is 48.95 in T8a but 48.39 in T8b (source inconsistency);
    # T8a's value is used.
    "QNA": (49.55, 22.45, 22.18),
    "QNA-log n": (49.42, 19.55, 18.74),
    "KNA": (49.60, 61.08, 47.69),
    "KNA-log n": (49.58, 63.17, 46.40),
    "CosA": (49.73, 58.90, 46.98),
    "CosA-log n": (49.67, 64.74, 48.95),
    "Baseline-NTK": (49.41, 60.57, 42.20),
    "Baseline-YaRN": (49.41, 80.10, 47.45),
    "Baseline-ReRoPE": (49.41, 76.11, 47.82),
    "Baseline-log n-NTK": (49.40, 75.86, 47.06),
    "Baseline-log n-YaRN": (49.40, 82.57, 46.52),
    "Baseline-log n-ReRoPE": (49.40, 85.47, 48.87),
    "KNA-NTK": (49.60, 64.44, 43.02),
    "KNA-YaRN": (49.60, 84.19, 47.44),
    "KNA-ReRoPE": (49.60, 77.76, 47.73),
    "CosA-NTK": (49.73, 62.50, 42.77),
    "CosA-YaRN": (49.73, 83.40, 47.80),
    "CosA-ReRoPE": (49.73, 77.82, 47.80),
}

# T5d: LLaMA2-13B loss (lower is better) on the last 4096 tokens, context 4K/8K/16K (9708, bojone/rerope).
SU_LLAMA_LOSS = {
    "RoPE": (1.4967, 8.8615, None),
    "NTK-RoPE": (1.6081, 1.5417, 1.5163),
    "ReRoPE": (1.4996, 1.4267, 1.4001),
}

# Our method name -> Su's row, for names without a window (windows are handled by `su_row`).
OURS_TO_SU = {
    "rope": "Baseline", "logn/rope": "Baseline-log n", "pi": "PI-RoPE", "logn/pi": "PI-RoPE-log n",
    "ntk_old": "NTK-RoPE-old", "logn/ntk_old": "NTK-RoPE-log n-old", "ntk_fixed": "NTK-RoPE-fixed",
    "ntk_fixed+logn†": "NTK-RoPE-log n†-fixed", "logn/ntk_fixed": "NTK-RoPE-log n-fixed",
    "ntk_mixed": "NTK-RoPE-mixed", "ntk_mixed+logn†": "NTK-RoPE-log n†-mixed",
    "logn/ntk_mixed": "NTK-RoPE-log n-mixed", "yarn": "Baseline-YaRN", "logn/yarn": "Baseline-log n-YaRN",
    "hwfa": "HFWA", "inv_leaky": "InvLeaky ReRoPE-w128-log n", "hwfa2+rerope": "HFWA-ReRoPE-w64-f2", "kna": "KNA",
    "kna_logn": "KNA-log n", "cosa": "CosA", "cosa_logn": "CosA-log n", "kna/yarn": "KNA-YaRN",
    "cosa/yarn": "CosA-YaRN",
}


def su_row(name: str, n: int) -> str | None:
  """Su's row for our method `name` at training length n. Windows scale with the training length:
  our w at N = n is Su's w * 512 / n (so at N = 128, our rerope_w32 is Su's ReRoPE-w128)."""
  if name in OURS_TO_SU:
    return OURS_TO_SU[name]
  m = re.fullmatch(r"(logn/)?(rerope|leaky)_w(\d+)(?:_k(\d+))?(\+logn†)?", name)
  if m:
    logn, kind, w, k, dagger = m.groups()
    w_su, rest = divmod(int(w) * 512, n)
    if rest:
      return None
    suffix = "-log n" if logn else "-log n†" if dagger else ""
    row = f"ReRoPE-w{w_su}{suffix}" if kind == "rerope" else f"Leaky ReRoPE-w{w_su}-k{k}{suffix}"
    return row if row in SU else None
  m = re.fullmatch(r"(kna|cosa)/rerope_w(\d+)", name)
  if m and int(m.group(2)) == n // 4:   # Su's 9859 ReRoPE is (inferred) w = 128 = N/4
    return {"kna": "KNA-ReRoPE", "cosa": "CosA-ReRoPE"}[m.group(1)]
  return None
