"""Su Jianlin's published R-Drop numbers (https://kexue.fm/archives/8496).

Copied exactly from the article and from his code (github.com/bojone/r-drop). Setups: BERT-base Chinese,
dropout 0.3, alpha 4, batch 32 (x2 duplicated); accuracy in percent. The paper (arXiv 2106.14448) uses alpha
in 1-5; its per-task tables are not quoted here.
"""

# (task, metric, baseline, R-Drop): supervised CLUE classification (dev accuracy) and CSL title generation.
SU_SUPERVISED = (
    ("IFLYTEK (CLUE, 119 classes)", "accuracy %", 60.29, 62.69),
    ("TNEWS (CLUE, 15 classes)", "accuracy %", 56.58, 57.51),
    ("CSL title generation (UniLM)", "Rouge-L", 63.81, 65.51),
)

# Semi-supervised binary sentiment, the first 1% of the training set labelled, the rest unlabelled with the
# KL-only step (bojone/r-drop sentiment_ssl.py): (split, supervised only, VAT, R-Drop).
SU_SEMI = (
    ("valid", 88.93, 89.83, 90.37),
    ("test", 89.34, 90.37, 90.14),
)
