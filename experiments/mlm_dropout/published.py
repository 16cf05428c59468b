"""Su Jianlin's published outcomes for MLM/MAE seen as dropout (https://kexue.fm/archives/8770).

Transcribed exactly from the article and its comment thread.
"""

# Embedding correction E_i <- 0.85 E_i + 0.15 (0.8 E_[MASK] + 0.1 E_i + 0.1 Avg E), BERT and RoBERTa on CLUE
# (baseline code of kexue.fm/archives/8739): "没有显著变化" -- no significant change; no table of numbers.
SU_CORRECTION = "no significant change on CLUE (BERT, RoBERTa); no numbers published"

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

