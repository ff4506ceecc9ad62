"""Losses behind one small interface, chosen by name in the training configuration.

A loss is called as ``loss(q, p, batch) -> scalar tensor``:
- ``q``: (B, D) query embeddings; ``p``: (B + N, D) passage embeddings, the B positives first (p_i belongs to
  q_i), then the batch's N hard negatives;
- ``batch``: the batch's ``Pair`` objects, for losses that need more than the embeddings.

Gradient caching computes the loss on cached embeddings and pushes its gradient back through the encoder
chunk by chunk, so a loss must depend on the encoder only through ``q`` and ``p``.

Example::

    loss_fn = make_loss(cfg)               # cfg.loss == "infonce"
    loss = loss_fn(encoder(queries), encoder(passages), batch)
    loss.backward()
"""
from __future__ import annotations

from typing import Protocol

import torch

from .infonce import info_nce
from .pairs import Pair


class Loss(Protocol):
    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: list[Pair]) -> torch.Tensor: ...


class InfoNCE:
    """In-batch negatives + hard negatives, temperature τ; ``symmetric`` adds the passage→query term
    (the math is in ``training/infonce.py``)."""

    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        self.temperature, self.symmetric = temperature, symmetric

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: list[Pair]) -> torch.Tensor:
        return info_nce(q, p, self.temperature, self.symmetric)


# name → how to build it from a TrainConfig
LOSSES = {
    "infonce": lambda cfg: InfoNCE(cfg.temperature, cfg.symmetric),
}


def make_loss(cfg) -> Loss:
    return LOSSES[cfg.loss](cfg)
