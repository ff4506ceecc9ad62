"""Any loss summed over nested prefixes of the embedding.

loss = Matryoshka(InfoNCE(0.05), [384, 128, 64])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Batch, Loss


class Matryoshka:
    """The inner loss summed over nested prefixes of the embedding, each prefix re-normalised (Kusupati et
    al., "Matryoshka Representation Learning", 2022):

        L = Σ_{d ∈ dims} L_inner(q[:, :d] / ‖q[:, :d]‖, p[:, :d] / ‖p[:, :d]‖)

    so the first d dimensions alone embed well. Truncating, then normalising, is also what Vespa's embedder
    does for a smaller target tensor, so a package may serve a prefix (``siamese app build --dim d``)."""

    def __init__(self, inner: Loss, dims: list[int]):
        self.inner, self.dims = inner, sorted(set(dims), reverse=True)

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:
        return sum(
            self.inner(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1), batch) for d in self.dims
        )
