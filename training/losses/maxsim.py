"""InfoNCE over late-interaction (ColBERT) scores, with an optional teacher term.

loss = MaxSimInfoNCE(0.05, teacher=base_encoder, teacher_weight=1.0)
loss(q_tokens, p_tokens, Batch(pairs))   # (B, Lq, D) and (B + N, Ld, D)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..infonce import info_nce_from_scores
from ..late_interaction import maxsim
from .base import Batch


class MaxSimInfoNCE:
    """InfoNCE over late-interaction scores (``training/late_interaction.py``): q is (B, Lq, D) and p is
    (B + N, Ld, D), unit token vectors with zero rows as padding, and

        s(q, p) = (1/|q|) Σ_i max_j q_i · p_j

    the MaxSim Vespa ranks by, divided by the query's |q| vectors so that τ reads as it does for a cosine
    (every query has the same |q| vectors in Vespa, so the order is Vespa's)."""

    def __init__(
        self, temperature: float = 0.05, symmetric: bool = False, teacher=None, teacher_weight: float = 0.0
    ):
        self.temperature, self.symmetric = temperature, symmetric
        self.teacher, self.teacher_weight = teacher, teacher_weight

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:

        per_query = (q.abs().sum(-1) > 0).sum(-1, keepdim=True).clamp(min=1)
        scores = maxsim(q, p) / per_query
        loss = info_nce_from_scores(scores, self.temperature, self.symmetric)
        if self.teacher_weight:
            loss = loss + self.teacher_weight * self._teacher_kl(scores, batch)
        return loss

    def _teacher_kl(self, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
        """KL(softmax_j(t_i · t_j / τ) ‖ softmax_j(s_ij / τ)): each query's distribution over the batch's
        passages, kept as the frozen single-vector teacher (the base model) has it, so the new head learns the
        base model's general-domain judgement besides the labels."""
        queries = [p.query for p in batch.pairs]
        passages = [p.positive for p in batch.pairs] + [n for p in batch.pairs for n in p.negatives]
        t_q, t_p = (
            torch.from_numpy(self.teacher.encode(texts, kind)).to(scores.device)
            for texts, kind in ((queries, "query"), (passages, "passage"))
        )
        target = F.softmax(F.normalize(t_q, dim=-1) @ F.normalize(t_p, dim=-1).T / self.temperature, dim=-1)
        return F.kl_div(F.log_softmax(scores / self.temperature, dim=-1), target, reduction="batchmean")
