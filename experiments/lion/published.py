"""Published Lion / Tiger numbers beside which the study reports its own.

Sources: Chen et al., *Symbolic Discovery of Optimization Algorithms*, arXiv 2302.06675, and the authors' README
(github.com/google/automl/tree/master/lion); Su Jianlin, https://kexue.fm/archives/9473 (Lion),
https://kexue.fm/archives/9512 (Tiger), https://kexue.fm/archives/9736 (the embedding anomaly).
"""

# The README's transfer rule: Lion's lr 3-10x smaller than AdamW's, λ 3-10x larger (lr·λ about equal).
TRANSFER_RATIO = (3.0, 10.0)
# The README's worked pairs: (task, Lion (lr, λ), AdamW or Adafactor (lr, λ)).
README_PAIRS = (
    ("ViT-B/16 ImageNet, strong augmentation", (1e-4, 10.0), (1e-3, 1.0)),
    ("diffusion", (3e-5, 0.1), (3e-4, 0.01)),
    ("7.5B LM (vs Adafactor)", (1e-4, 0.01), (1e-3, 0.001)),
)
# Batch size (README; Su 9473): ViT-B/16, 300 epochs: best batch 256 for AdamW, 4096 for Lion; at 32K Lion
# 77.9% vs AdamW 75.4%; below batch 64 Lion does no better than AdamW.
BATCH = {"adamw_best": 256, "lion_best": 4096, "at_32k": (77.9, 75.4), "threshold": 64}
# Paper (README) ImageNet from scratch, ViT-B/16 top-1 %: AdamW 75.48, Lion 77.44.
VIT_B16 = (75.48, 77.44)
# Tiger (Su 9512): extra parameter-sized buffers with gradient accumulation: Adam 3, Lion 2, Tiger 1; "effect:
# Lion >= Tiger >= AdamW"; the paper's single-β ablation (ViT-B/16): 79.54 (β 0.9), 79.90 (β 0.99) vs Lion 80.77.
TIGER_BUFFERS = {"adamw": 3, "lion": 2, "tiger": 1}
TIGER_ABLATION = {"β=0.9": 79.54, "β=0.99": 79.90, "lion": 80.77}
# Embedding anomaly (Su 9736): 7B pre-training with Tiger, λ = 0.01: rare tokens' entries at exactly ±1/λ = ±100.
ANOMALY = {"lambda": 0.01, "value": 100.0}
# Su's Amos-derived recipe (9473): λ = α0/(2σ), lr = α0·σ; BERT-base σ ≈ 0.036 -> lr ≈ 4e-5, λ ≈ 0.015.
AMOS_BERT = {"sigma": 0.036, "lr": 4e-5, "wd": 0.015}
