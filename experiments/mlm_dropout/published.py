"""Su Jianlin's published outcomes for MLM/MAE seen as dropout (https://kexue.fm/archives/8770).

Transcribed exactly from the article and its comment thread and, for MAE, from He et al., arXiv 2111.06377
(Tables 1c and 2).
"""

# Embedding correction E_i <- 0.85 E_i + 0.15 (0.8 E_[MASK] + 0.1 E_i + 0.1 Avg E), BERT and RoBERTa on CLUE
# (baseline code of kexue.fm/archives/8739): "没有显著变化" -- no significant change; no table of numbers.
SU_CORRECTION = "no significant change on CLUE (BERT, RoBERTa); no numbers published"
SU_CORRECTION_R = 0.15

# DropToken during fine-tuning, BERT-base, CLUE dev accuracy (%), by drop ratio.
SU_DROPTOKEN_TASKS = ("IFLYTEK", "TNEWS", "AFQMC", "OCNLI", "WSC", "CSL")
SU_DROPTOKEN = {
    0.00: (60.06, 56.80, 72.41, 73.93, 78.62, 83.93),
    0.10: (60.56, 57.00, 72.61, 73.76, 77.30, 83.33),
    0.15: (60.10, 56.68, 72.50, 74.54, 77.30, 83.30),
    0.25: (61.29, 56.88, 72.34, 73.09, 73.68, 83.37),
    0.50: (61.45, 57.02, 69.76, 70.68, 69.41, 82.56),
}
SU_DROPTOKEN_VERDICT = ("mixed (参差不齐): clearly useful only on IFLYTEK, the rest luck; best ratio 0.1-0.15; "
                        "no wall-clock numbers reported")

# MAE (He et al.), ViT-L/16, ImageNet-1K: encoder with / without mask tokens (Table 1c): fine-tune / linear
# accuracy (%) and relative FLOPs; wall-clock of 800-epoch pre-training on 128 TPU-v3 cores (Table 2).
MAE_MASK_TOKEN = {"with [M] in encoder": (84.2, 59.6, "3.3x"), "without [M] (default)": (84.9, 73.5, "1x")}
MAE_WALLCLOCK = (("ViT-L, [M] in encoder, 8-block decoder", "42.4 h", "1x"),
                 ("ViT-L, 8-block decoder", "15.4 h", "2.8x"),
                 ("ViT-L, 1-block decoder", "11.6 h", "3.7x"))
