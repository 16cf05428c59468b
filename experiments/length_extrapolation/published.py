"""Su Jianlin's published length-extrapolation numbers (published.tsv, copied exactly from his articles) and the
mapping of our method names to his rows.

Sources: https://kexue.fm/archives/9603 (HWFA), 9675 (NTK), 9706 (NTK fixed/mixed, log n dagger), 9708 (ReRoPE),
9728 (InvLeaky), 9731 (HWFA2), 9859 (KeyNorm). Setup: ~100M-parameter 24-layer single-head GAU, post-norm,
causal LM, trained at 512 and tested at 4096 (8x); metric = per-token accuracy in percent.

`SU` maps Su's row name -> (acc at 512 (train), acc at 4096 on the repeated set, acc at 4096 non-repeated).
`OURS_TO_SU` maps our method names (methods.py; window sizes scaled by 128/512) to Su's rows.
"""
import csv
import os
import re

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "published.tsv"), newline="") as _f:
  SU = {r["row"]: (float(r["acc_512"]), float(r["rep_4096"]), float(r["nonrep_4096"]))
        for r in csv.DictReader((l for l in _f if not l.startswith("#")), delimiter="\t")}

# Our method name -> Su's row, for names without a window (windows are handled by `su_row`).
OURS_TO_SU = {
    "rope": "Baseline", "logn/rope": "Baseline-log n", "pi": "PI-RoPE", "logn/pi": "PI-RoPE-log n",
    "ntk_old": "NTK-RoPE-old", "logn/ntk_old": "NTK-RoPE-log n-old", "ntk_fixed": "NTK-RoPE-fixed",
    "ntk_fixed+logn†": "NTK-RoPE-log n†-fixed", "logn/ntk_fixed": "NTK-RoPE-log n-fixed",
    "ntk_mixed": "NTK-RoPE-mixed", "ntk_mixed+logn†": "NTK-RoPE-log n†-mixed",
    "logn/ntk_mixed": "NTK-RoPE-log n-mixed", "yarn": "Baseline-YaRN", "logn/yarn": "Baseline-log n-YaRN",
    "hwfa": "HFWA", "inv_leaky": "InvLeaky ReRoPE-w128-log n", "kna": "KNA",
    "kna_logn": "KNA-log n", "cosa": "CosA", "cosa_logn": "CosA-log n", "kna/yarn": "KNA-YaRN",
    "cosa/yarn": "CosA-YaRN", "qna": "QNA", "inv_leaky_b8": "InvLeaky ReRoPE-w128-b8-log n",
}


def su_row(name: str, n: int, num_layers: int = 4) -> str | None:
  """Su's row for our method `name` at training length n. One rule for every window, HWFA2's included: windows
  scale with the training length, our w at N = n is Su's w * 512 / n (so at N = 128, our rerope_w32 is Su's
  ReRoPE-w128 and hwfa2_w16_f2 is his HFWA-ReRoPE-w64-f2). The default `hwfa2` (w~ = 2 N / num_layers, f = 2)
  is the grid point of its window: w~ = N/2 at our 4 layers, Su's w256-f2 row, not his best w64-f2."""
  if name == "hwfa2+rerope":
    name = f"hwfa2_w{2 * n // num_layers}_f2+rerope"
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
  m = re.fullmatch(r"hwfa2_w(\d+)_f(\d)\+rerope", name)   # the HWFA2 grid (9731 T7)
  if m and not int(m.group(1)) * 512 % n:
    row = f"HFWA-ReRoPE-w{int(m.group(1)) * 512 // n}-f{m.group(2)}"
    return row if row in SU else None
  m = re.fullmatch(r"(kna|cosa)/rerope_w(\d+)", name)
  if m and int(m.group(2)) == n // 4:   # Su's 9859 ReRoPE is (inferred) w = 128 = N/4
    return {"kna": "KNA-ReRoPE", "cosa": "CosA-ReRoPE"}[m.group(1)]
  return None
