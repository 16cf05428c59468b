"""Evaluation functions used by study drivers on saved checkpoints (no training-loop code)."""
