"""Sequence classifiers over a TransformerEncoder's hidden states (byte tokens, kexue_jax.vocab).

``EncoderClassifier``: encoder -> heads.ClassifierHead, returns (logits_BK, pooled features); the R-Drop text
configs (tasks/classify.py). ``DropTokenClassifier``: the same with Su's DropToken (https://kexue.fm/archives/8770)
during training: [CLS] (position 0) is kept and of the other L - 1 positions exactly
K - 1 = round((1 - p)(L - 1)) are kept, a uniformly random subset per example, gathered with their original
position ids (nn/token_drop.py); inference uses all tokens.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from kexue_jax import vocab
from kexue_jax.nn import heads
from kexue_jax.nn import token_drop
from kexue_jax.nn import transformer


class EncoderClassifier(nn.Module):
  """TransformerEncoder hidden states -> heads.ClassifierHead (pool 'first' = the [CLS] token).

  tokens_BL equal to `pad_id` are padding (never attended to, not pooled). Returns (logits_BK, pooled_BD).
  """
  encoder: nn.Module
  num_classes: int
  pool: str = "first"
  head_dropout_rate: float = 0.0
  pad_id: int = vocab.PAD_ID

  @nn.compact
  def __call__(self, tokens_BL, *, train: bool = False, dropout: bool | None = None):
    dropout = train if dropout is None else dropout
    mask_BL = tokens_BL != self.pad_id
    h_BLD = self.encoder.hidden(tokens_BL, padding_mask_BL=mask_BL, deterministic=not dropout)
    logits_BK = heads.ClassifierHead(self.num_classes, pool=self.pool, dropout_rate=self.head_dropout_rate,
                                     name="head")(h_BLD, padding_mask_BL=mask_BL, deterministic=not dropout)
    return logits_BK, heads.pool_tokens(h_BLD.astype(jnp.float32), mask_BL, self.pool)


class DropTokenClassifier(nn.Module):
  """Encoder + [CLS] linear head; DropToken (module docstring) when `drop` is on. Returns logits_BC."""
  encoder: transformer.TransformerEncoder
  num_classes: int
  drop_token: float = 0.0
  head_dropout_rate: float = 0.0
  pool: str = "first"   # "first": the [CLS] state; "mean": the mean over the (kept) tokens

  @nn.compact
  def __call__(self, tokens_BL, *, train: bool = False, drop: bool | None = None, keep_BK=None):
    """drop (default: train) samples the kept positions from the 'droptoken' rng; `keep_BK` gives them
    explicitly (sorted, [CLS] first). The kept positions are sown as intermediates/keep_BK."""
    drop = train if drop is None else drop
    positions_BL = jnp.broadcast_to(jnp.arange(tokens_BL.shape[1]), tokens_BL.shape)
    if keep_BK is None and drop and self.drop_token > 0:
      keep_BK, _ = token_drop.keep_drop_indices(self.make_rng("droptoken"), tokens_BL,
                                                token_drop.num_kept(tokens_BL.shape[1], self.drop_token))
    if keep_BK is not None:
      self.sow("intermediates", "keep_BK", keep_BK)
      tokens_BL, positions_BL = token_drop.gather_BK(tokens_BL, keep_BK), keep_BK
    mask_BL = tokens_BL != vocab.PAD_ID
    h_BLD = self.encoder.hidden(tokens_BL, positions_BL=positions_BL, padding_mask_BL=mask_BL,
                                deterministic=not train)
    return heads.ClassifierHead(self.num_classes, pool=self.pool, dropout_rate=self.head_dropout_rate,
                                name="head")(h_BLD, padding_mask_BL=mask_BL, deterministic=not train)
