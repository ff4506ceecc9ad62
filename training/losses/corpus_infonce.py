"""The frozen document tower's loss: each query against every document of the corpus at once.

loss = CorpusInfoNCE(bank_texts, bank_vectors, pairs, temperature=0.05)
loss(q, None, Batch(pairs))    # q: (B, D) queries; the bank stands for the passages

L = −(1/B) Σ_i log softmax_j(q_i · b_j / τ)[row of p_i], the query's other known positives masked out
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

from ..negatives import known_positives


class CorpusInfoNCE:
    """InfoNCE of each query against a fixed bank of document vectors (the frozen tower's), the positive's row
    the target, the query's other known positives masked out. Called as a ``Loss`` (``training/losses/``): the
    passages argument is unused, the bank stands for it.

    The bank goes to ``device`` once. On a GPU where it would take more than ``BANK_SHARE`` of the free memory
    it stays in the host's memory and is scored a chunk at a time
    (``BankScores``); on the CPU it is where it is."""

    def __init__(self, texts: list[str], vectors: np.ndarray, pairs, temperature: float, device="cpu"):
        self.row = {t: i for i, t in enumerate(texts)}
        self.bank = _bank_on(torch.from_numpy(vectors), torch.device(device))
        self.known = known_positives(pairs)
        self.temperature = temperature

    def __call__(self, q: torch.Tensor, p, batch) -> torch.Tensor:
        q = q.float()
        scores = (
            q @ self.bank.T if self.bank.device == q.device else BankScores.apply(q, self.bank)
        ) / self.temperature
        target = torch.tensor([self.row[pair.positive] for pair in batch.pairs], device=q.device)
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for i, pair in enumerate(batch.pairs):
            others = [self.row[t] for t in self.known[pair.query] if t != pair.positive and t in self.row]
            mask[i, others] = True
        return F.cross_entropy(scores.masked_fill(mask, float("-inf")), target)


BANK_SHARE = 0.5  # of a GPU's free memory that the bank may take; above it, the bank is scored from the host
BANK_CHUNK = 65_536  # documents a chunk, scored from the host


def _bank_on(bank: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if bank.numel() * bank.element_size() > BANK_SHARE * free:
            print(
                f"towers: the bank ({bank.numel() * 4 / 2**30:.1f} GiB) stays in host memory and is scored "
                f"{BANK_CHUNK} documents at a time",
                file=sys.stderr,
            )
            return bank.pin_memory()
    return bank.to(device)


class BankScores(torch.autograd.Function):
    """q @ bankᵀ for a bank that stays on the host: each chunk goes to q's device, is scored and dropped, in
    the forward pass and again in the backward (∂L/∂q = ∂L/∂scores @ bank); the bank gets no gradient."""

    @staticmethod
    def forward(ctx, q, bank):
        ctx.save_for_backward(q)
        ctx.bank = bank
        return torch.cat(
            [q @ chunk.to(q.device, non_blocking=True).T for chunk in bank.split(BANK_CHUNK)], dim=1
        )

    @staticmethod
    def backward(ctx, grad):
        (q,) = ctx.saved_tensors
        parts = zip(grad.split(BANK_CHUNK, dim=1), ctx.bank.split(BANK_CHUNK))
        return sum(g @ chunk.to(q.device, non_blocking=True) for g, chunk in parts), None
