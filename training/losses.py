"""Losses behind one small interface, chosen by name in the training configuration.

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

import random
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from .infonce import info_nce, info_nce_from_scores
from .pairs import Pair


@dataclass
class Batch:
    pairs: list[Pair]
    general: torch.Tensor | None = None  # the student's embeddings of the texts ``general_texts`` chose
    general_ids: list[int] | None = None  # their rows in the teacher's vectors


class Loss(Protocol):
    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor: ...


class InfoNCE:
    """In-batch negatives + hard negatives, temperature τ; ``symmetric`` adds the passage→query term
    (the math is in ``training/infonce.py``)."""

    def __init__(self, temperature: float = 0.05, symmetric: bool = False):
        self.temperature, self.symmetric = temperature, symmetric

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:
        return info_nce(q, p, self.temperature, self.symmetric)


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

    def __init__(self, inner: Loss, kind: str, texts: list[str], teacher: torch.Tensor, weight: float,
                 per_step: int = 64, seed: int = 0):
        self.inner, self.anchor, self.texts, self.teacher = inner, self.KINDS[kind], texts, teacher
        self.weight, self.per_step, self.seed = weight, min(per_step, len(texts)), seed

    def general_texts(self, step: int) -> tuple[list[str], list[int]]:
        """This step's texts: drawn from (seed, step) alone, so a resumed run draws what it would have."""
        ids = random.Random(self.seed * 1_000_003 + step).sample(range(len(self.texts)), self.per_step)
        return [self.texts[i] for i in ids], ids

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:
        teacher = self.teacher[batch.general_ids].to(batch.general.device)
        return self.inner(q, p, batch) + self.weight * self.anchor(batch.general, teacher)


class MaxSimInfoNCE:
    """InfoNCE over late-interaction scores (``training/late_interaction.py``): q is (B, Lq, D) and p is
    (B + N, Ld, D), unit token vectors with zero rows as padding, and

        s(q, p) = (1/|q|) Σ_i max_j q_i · p_j

    the MaxSim Vespa ranks by, divided by the query's |q| vectors so that τ reads as it does for a cosine
    (every query has the same |q| vectors in Vespa, so the order is Vespa's)."""

    def __init__(self, temperature: float = 0.05, symmetric: bool = False, teacher=None, teacher_weight: float = 0.0):
        self.temperature, self.symmetric = temperature, symmetric
        self.teacher, self.teacher_weight = teacher, teacher_weight

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:
        from .late_interaction import maxsim

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
        t_q, t_p = (torch.from_numpy(self.teacher.encode(texts, kind)).to(scores.device)
                    for texts, kind in ((queries, "query"), (passages, "passage")))
        target = F.softmax(F.normalize(t_q, dim=-1) @ F.normalize(t_p, dim=-1).T / self.temperature, dim=-1)
        return F.kl_div(F.log_softmax(scores / self.temperature, dim=-1), target, reduction="batchmean")


class Matryoshka:
    """The inner loss summed over nested prefixes of the embedding, each prefix re-normalised (Kusupati et al.,
    "Matryoshka Representation Learning", 2022):

        L = Σ_{d ∈ dims} L_inner(q[:, :d] / ‖q[:, :d]‖, p[:, :d] / ‖p[:, :d]‖)

    so the first d dimensions alone embed well. Truncating, then normalising, is also what Vespa's embedder
    does for a smaller target tensor, so a package may serve a prefix (``siamese app build --dim d``)."""

    def __init__(self, inner: Loss, dims: list[int]):
        self.inner, self.dims = inner, sorted(set(dims), reverse=True)

    def __call__(self, q: torch.Tensor, p: torch.Tensor, batch: Batch) -> torch.Tensor:
        return sum(self.inner(F.normalize(q[:, :d], dim=-1), F.normalize(p[:, :d], dim=-1), batch) for d in self.dims)


# name → how to build it from a TrainConfig
LOSSES = {
    "infonce": lambda cfg: InfoNCE(cfg.temperature, cfg.symmetric),
    "symmetric-infonce": lambda cfg: InfoNCE(cfg.temperature, symmetric=True),
}
ANCHORS = ("none", *Anchored.KINDS)


def make_loss(cfg, general: list[str] | None = None, teacher: torch.Tensor | None = None) -> Loss:
    """The configured loss, summed over ``cfg.matryoshka`` prefixes if any; with ``cfg.anchor`` not "none",
    anchored (on the whole embedding) to ``teacher``'s vectors of ``general``."""
    if cfg.temperature is None:
        raise ValueError("no temperature: training.loop.train sets it from the base model; give one to build "
                         "the loss alone")
    loss = LOSSES[cfg.loss](cfg)
    if cfg.late_interaction:
        teacher = None
        if cfg.colbert_teacher_weight:
            from .encoder import Encoder

            teacher = Encoder.load(cfg.base, max_length=cfg.max_length).eval()
        loss = MaxSimInfoNCE(loss.temperature, loss.symmetric, teacher, cfg.colbert_teacher_weight)
    if cfg.matryoshka_dims:
        loss = Matryoshka(loss, cfg.matryoshka_dims)
    if cfg.anchor == "none":
        return loss
    return Anchored(loss, cfg.anchor, general, teacher, cfg.anchor_weight, cfg.anchor_batch, cfg.seed)
