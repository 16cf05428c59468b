r"""RoPE + log-n pre-training (checkpoint (b), kexue.fm/archives/8823): queries scaled by log_N n, n = i + 1.

  softmax(log_N(n) / sqrt(d) * q_i . k_j),  N = L_train  (= standard attention at n = N)

The "-log n" rows of Su's tables (NTK-log n, ReRoPE-log n, Leaky ReRoPE-log n) are evaluated on this checkpoint.

Why are our log-n gains 3-8x smaller than an independent pre-norm 4-layer 2-head d = 128 byte LM trained at 128
(issue #18)? The deciding runs of the study's extended plan (log n-dagger gains need only `rope.py` checkpoints;
pre-training gains need both files), each at N = 128, seeds 0-4 (experiments/length_extrapolation claims G1-G3):
  arch=su vs arch=prenorm4x2                      (architecture, both factors at once: rope_pre2h, rope_logn_pre2h)
  steps=2400 vs 1200                              (training budget: rope_2xsteps)
  eval=all vs eval=tail vs eval=last              (protocol: every evaluation records all three; no rerun:
                                                   experiments/length_extrapolation/claims.py logn_gains)
Not run yet: arch=su,norm=pre / arch=su,heads=2 (which factor, if the presets differ) and
--config.data.seq_len=64 / 256 (training length N).
"""
from kexue_jax import config_lib

common = config_lib.load_sibling(__file__, "_common.py")


def get_config(arg=None):
  return common.make_config("rope_logn", arg, attention=dict(logn="train"))
