"""The Lion study's grids, as config-argument strings for configs/lion/byte_lm.py (one run each).

Each list answers one claim (see byte_lm.py's docstring). The framework running the study decides seeds,
step budgets for CPU vs accelerator, and the tests that decide each claim.
"""
LION_LRS, LION_WDS = (1e-4, 3e-4, 1e-3, 3e-3), (0.03, 0.1, 0.3, 1.0)
ADAMW_LRS, ADAMW_WDS = (3e-4, 1e-3, 3e-3, 1e-2), (0.003, 0.01, 0.03, 0.1)

# Transfer rule: Lion's best lr 3-10x below AdamW's, best λ 3-10x above; Lion >= AdamW at their bests.
LR_WD = ([f"opt=lion,lr={lr},wd={wd}" for lr in LION_LRS for wd in LION_WDS]
         + [f"opt=adamw,lr={lr},wd={wd}" for lr in ADAMW_LRS for wd in ADAMW_WDS])

# Batch size at fixed examples seen (16 x 600): Lion worse than AdamW at small batch, gap closing as it grows.
BATCH = [f"opt={o},batch={b},steps={600 * 16 // b}" for o in ("lion", "adamw") for b in (4, 8, 16, 32, 64, 128)]

# Tiger ≈ Lion at one state buffer, with and without Tiger's in-momentum accumulation (batch 4 x 4 = 16).
TIGER = ["opt=lion", "opt=tiger", "opt=tiger,batch=4,accum=4,steps=2400"]

# Embedding anomaly (untied input rows: rare bytes go stale) and the fixes; tied = fix (b).
EMBEDDING = ([f"opt={o},untied,wd=1.0" for o in ("lion", "tiger")] + ["opt=adamw,untied"]
             + [f"opt=lion,untied,wd=1.0,fix={f}" for f in ("lazy", "emb_adamw")] + ["opt=lion,wd=1.0"])

# Su's Amos recipe (λ = α0/(2σ), lr = α0·σ) against the measured best.
AMOS = [f"opt=lion,amos_alpha0={a}" for a in (3e-3, 1e-2, 3e-2)]

ALL = {"lr_wd": LR_WD, "batch": BATCH, "tiger": TIGER, "embedding": EMBEDDING, "amos": AMOS}
