"""The anchor against forgetting: any loss plus a term holding the student to the frozen base model on
general-domain text.

    loss = Anchored(InfoNCE(0.05), "mse", texts, teacher_vectors, weight=20.0)
    texts, ids = loss.general_texts(step)
    loss(q, p, Batch(pairs, student(texts), ids))
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F

from .base import Batch, Loss


def anchor_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of the unit vectors: (1/n) Σ_i ‖ŝ_i − t̂_i‖² (= 2 − 2 cos, per text)."""
    return (F.normalize(student, dim=-1) - F.normalize(teacher, dim=-1)).pow(2).sum(-1).mean()


def anchor_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """How each text's similarities to the others are distributed, kept as the teacher had them:
    (1/n) Σ_i KL(softmax_j(t̂_i·t̂_j/τ) ‖ softmax_j(ŝ_i·ŝ_j/τ)), j ≠ i."""
    s, t = F.normalize(student, dim=-1), F.normalize(teacher, dim=-1)
    eye = torch.eye(len(s), dtype=torch.bool, device=s.device)
    s_logits = (s @ s.T / temperature).masked_fill(eye, float("-inf"))
    t_logits = (t @ t.T / temperature).masked_fill(eye, float("-inf"))
    s_log = F.log_softmax(s_logits, -1).masked_fill(eye, 0.0)
    t_log = F.log_softmax(t_logits, -1).masked_fill(eye, 0.0)
    return (t_log.exp() * (t_log - s_log)).sum(-1).mean()


class Anchored:
    """A contrastive loss plus an anchor to the frozen base model on general-domain text, against forgetting:

        L = L_contrastive(q, p) + λ · L_anchor(student(g), teacher(g))

    for ``per_step`` general texts g a step (``anchor_mse`` or ``anchor_kl``). The teacher's vectors are
    computed once, before training; when the student still equals the teacher, L_anchor is 0.
    """

    KINDS = {"mse": anchor_mse, "kl": anchor_kl}

    def __init__(
        self,
        inner: Loss,
        kind: str,
        texts: list[str],
        teacher: torch.Tensor,
        weight: float,
        per_step: int = 64,
        seed: int = 0,
    ):
        self.inner, self.anchor, self.texts, self.teacher = inner, self.KINDS[kind], texts, teacher
        self.weight, self.per_step, self.seed = weight, min(per_step, len(texts)), seed

    def general_texts(self, step: int) -> tuple[list[str], list[int]]:
        """This step's texts: drawn from (seed, step) alone, so a resumed run draws what it would have."""
        ids = random.Random(self.seed * 1_000_003 + step).sample(range(len(self.texts)), self.per_step)
        return [self.texts[i] for i in ids], ids

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:
        teacher = self.teacher[batch.general_ids].to(batch.general.device)
        return self.inner(q, p, batch) + self.weight * self.anchor(batch.general, teacher)
