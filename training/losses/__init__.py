"""Losses behind one small interface, one a file, chosen by name in the training configuration (``LOSSES``).

A loss is called as ``loss(q, p, batch) -> scalar tensor``:
- ``q``: (B, D) query embeddings; ``p``: (B + N, D) passage embeddings, the B positives first (p_i belongs to
  q_i), then the batch's N hard negatives;
- ``batch``: a ``Batch``: the batch's ``Pair`` objects and, for a loss that asked for them
  (``general_texts``), the student's embeddings of this step's general-domain texts.

Gradient caching computes the loss on cached embeddings and pushes its gradient back through the encoder
chunk by chunk, so a loss must depend on the encoder only through what it is given here.

Example::

    loss_fn = make_loss(cfg)                 # cfg.loss == "infonce", cfg.anchor == "none"
    loss = loss_fn(encoder(queries), encoder(passages), Batch(pairs))
    loss.backward()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..encoder import Encoder
from .anchored import Anchored, anchor_kl, anchor_mse
from .base import Batch, Loss
from .corpus_infonce import CorpusInfoNCE
from .infonce import InfoNCE
from .matryoshka import Matryoshka
from .maxsim import MaxSimInfoNCE

__all__ = [
    "Anchored",
    "Batch",
    "CorpusInfoNCE",
    "InfoNCE",
    "LOSSES",
    "Loss",
    "Matryoshka",
    "MaxSimInfoNCE",
    "anchor_kl",
    "anchor_mse",
    "make_loss",
]


@dataclass(frozen=True)
class Registered:
    """How a loss is built from a TrainConfig (and what the trainer holds: ``bank``, ``pairs``, ``device``),
    and which towers (``training/config.py: TOWERS``) can use it."""

    build: Callable[..., Loss]
    towers: tuple[str, ...]


# name → the loss. A new loss is a file beside these and a line here; every tower it names can train with it.
LOSSES = {
    "infonce": Registered(lambda cfg, **_: InfoNCE(cfg.temperature, cfg.symmetric), ("shared", "separate")),
    "symmetric-infonce": Registered(
        lambda cfg, **_: InfoNCE(cfg.temperature, symmetric=True), ("shared", "separate")
    ),
    "corpus-infonce": Registered(
        lambda cfg, bank, pairs, device="cpu", **_: CorpusInfoNCE(*bank, pairs, cfg.temperature, device),
        ("query", "adapter"),
    ),
}
ANCHORS = ("none", *Anchored.KINDS)


def make_loss(cfg, general: list[str] | None = None, teacher: torch.Tensor | None = None) -> Loss:
    """The configured loss, summed over ``cfg.matryoshka`` prefixes if any; with ``cfg.anchor`` not "none",
    anchored (on the whole embedding) to ``teacher``'s vectors of ``general``."""
    if cfg.temperature is None:
        raise ValueError(
            "no temperature: training.loop.train sets it from the base model; give one to build "
            "the loss alone"
        )
    loss = LOSSES[cfg.loss].build(cfg)
    if cfg.late_interaction:
        teacher = None
        if cfg.colbert_teacher_weight:
            teacher = Encoder.load(cfg.base, max_length=cfg.max_length).eval()
        loss = MaxSimInfoNCE(loss.temperature, loss.symmetric, teacher, cfg.colbert_teacher_weight)
    if cfg.matryoshka_dims:
        loss = Matryoshka(loss, cfg.matryoshka_dims)
    if cfg.anchor == "none":
        return loss
    return Anchored(loss, cfg.anchor, general, teacher, cfg.anchor_weight, cfg.anchor_batch, cfg.seed)
