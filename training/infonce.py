"""InfoNCE with in-batch negatives (a.k.a. MultipleNegativesRankingLoss).

Given B queries q_i and passages p_j, where p_1..p_B are the positives (p_i belongs to q_i) and
p_{B+1}.. are hard negatives, with s(a, b) the cosine similarity and τ the temperature:

    L_q→p = -1/B Σ_i log( exp(s(q_i, p_i)/τ) / Σ_j exp(s(q_i, p_j)/τ) )

Every other passage in the batch serves as a negative for q_i, so a batch of B pairs gives B·(B-1)
negatives for free. With ``symmetric=True`` the passage→query direction is added,

    L_p→q = -1/B Σ_i log( exp(s(p_i, q_i)/τ) / Σ_k exp(s(p_i, q_k)/τ) ),   L = (L_q→p + L_p→q) / 2

which uses only the positives (a hard negative has no query of its own).

Example::

    q = encoder(tokenize(queries)); p = encoder(tokenize(positives + hard_negatives))
    loss = info_nce(q, p, temperature=0.05)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def similarity_matrix(queries: torch.Tensor, passages: torch.Tensor) -> torch.Tensor:
    return F.normalize(queries, dim=-1) @ F.normalize(passages, dim=-1).T


def info_nce_from_scores(scores: torch.Tensor, temperature: float = 0.05, symmetric: bool = False):
    """``scores[i, j]`` = s(q_i, p_j); columns 0..B-1 hold the positives on the diagonal."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = scores.shape[0]
    labels = torch.arange(b, device=scores.device)
    logits = scores.float() / temperature
    loss = F.cross_entropy(logits, labels)
    if symmetric:
        loss = (loss + F.cross_entropy(logits[:, :b].T, labels)) / 2
    return loss


def info_nce(
    queries: torch.Tensor, passages: torch.Tensor, temperature: float = 0.05, symmetric: bool = False
):
    return info_nce_from_scores(similarity_matrix(queries, passages), temperature, symmetric)
