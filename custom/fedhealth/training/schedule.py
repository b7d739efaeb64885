"""The learning-rate schedule the server sends with every train task (one definition for all)."""

from __future__ import annotations


def lr_for_round(lr: float, gamma: float, round_index: int) -> float:
    """The per-round learning-rate schedule sent with each task: ``lr * gamma ** round``."""
    return lr * gamma**round_index
