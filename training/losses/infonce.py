"""InfoNCE with in-batch and hard negatives: the shared and separate towers' loss.

loss = InfoNCE(temperature=0.05)
loss(q, p, Batch(pairs))     # q: (B, D) queries, p: (B + N, D): the B positives, then N hard negatives
"""

from __future__ import annotations

import torch

from ..infonce import info_nce
from .base import Batch


class InfoNCE:
    """In-batch negatives + hard negatives, temperature τ; ``symmetric`` adds the passage→query term
    (the math is in ``training/infonce.py``)."""

    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        self.temperature, self.symmetric = temperature, symmetric

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:
        return info_nce(q, p, self.temperature, self.symmetric)
