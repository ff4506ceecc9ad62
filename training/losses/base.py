"""What every loss is called with: ``loss(q, p, batch) -> scalar
tensor`` (see ``training/losses/__init__.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..pairs import Pair


@dataclass
class Batch:
    pairs: list[Pair]
    general: torch.Tensor | None = None  # the student's embeddings of the texts ``general_texts`` chose
    general_ids: list[int] | None = None  # their rows in the teacher's vectors


class Loss(Protocol):
    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor: ...
