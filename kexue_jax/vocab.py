"""The byte-level vocabulary of the text tasks (one definition, imported by data views, models and tasks).

    ids 0..255   the UTF-8 bytes
    256          [CLS]  (first token of every classification / MLM sequence)
    257          [PAD]  (never attended to, never pooled, never masked)
    258          [MASK] (BERT masking of the MLM pre-training)

Byte classification models need no [MASK]: their vocabulary is the first ``CLASSIFY_VOCAB_SIZE`` = 258 ids;
MLM/MAE models use all ``VOCAB_SIZE`` = 259.
"""
NUM_BYTES = 256
CLS_ID = 256
PAD_ID = 257
MASK_ID = 258
CLASSIFY_VOCAB_SIZE = MASK_ID      # bytes, [CLS], [PAD]
VOCAB_SIZE = MASK_ID + 1           # bytes, [CLS], [PAD], [MASK]
