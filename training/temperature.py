"""The InfoNCE temperature τ that follows the base model.

InfoNCE sees similarities divided by τ, and every base has its own cosine scale. On SciFact's training pairs
(256 of them, 128 tokens) all-MiniLM-L6-v2 puts a query 0.47 closer to its positive than to the other queries'
positives; bge-small-en-v1.5, whose similarities crowd into 0.5–0.8, only 0.21. One τ is then a sharp loss for
one base and a soft one for the other: at τ 0.05 a bge query tower fell below bge on unseen queries and forgot
MedQuAD, at τ 0.02 it met every bar (docs/bases.md). So the default τ keeps the base's margin at a fixed
number of logits:

    margin = mean_i s(q_i, p_i) − mean_{i≠j} s(q_i, p_j)      (the base's cosines, in-batch negatives)
    τ      = round(margin / MARGIN_LOGITS, 2)                 clipped to [0.01, 0.10]

MARGIN_LOGITS = 9 puts all-MiniLM-L6-v2 at 0.05, the value measured best for it (sentence-transformers'
MultipleNegativesRankingLoss scale 20), and bge-small at 0.02, the value measured best for it. Rounding to
0.01 keeps τ from moving with the sample. ``--temperature`` still sets it.

    >>> tau, margin = base_temperature(base_encoder.encode, pairs, seed=42)
"""

from __future__ import annotations

import numpy as np

from common.vectors import normalize

MARGIN_LOGITS = 9.0
SAMPLE = 256
BOUNDS = (0.01, 0.10)
# Where no margin can be measured: late interaction (MaxSim sums over query tokens, not one cosine: the margin
# above is not its scale), or fewer than two usable pairs.
FIXED = 0.05


def margin(queries: np.ndarray, positives: np.ndarray) -> float:
    """Mean cosine of each query with its positive minus the mean with the other queries' positives."""
    sims = queries @ positives.T
    off = ~np.eye(len(sims), dtype=bool)
    return float(np.diag(sims).mean() - sims[off].mean())


def temperature_for(base_margin: float) -> float:
    return float(np.clip(round(base_margin / MARGIN_LOGITS, 2), *BOUNDS))


def sample_pairs(pairs: list, seed: int) -> list:
    """Up to SAMPLE pairs with distinct queries and positives (a repeated positive is no negative)."""
    order = np.random.default_rng(seed).permutation(len(pairs))
    seen_q, seen_p, picked = set(), set(), []
    for i in order:
        p = pairs[i]
        if p.query not in seen_q and p.positive not in seen_p:
            seen_q.add(p.query)
            seen_p.add(p.positive)
            picked.append(p)
            if len(picked) == SAMPLE:
                break
    return picked


def base_temperature(embed, pairs: list, seed: int) -> tuple[float, float | None]:
    """(τ, the base's margin) from ``embed(texts, kind)`` (the base's vectors) over a sample of ``pairs``;
    (FIXED, None) where fewer than two pairs can be compared."""
    sample = sample_pairs(pairs, seed)
    if len(sample) < 2:
        return FIXED, None
    m = margin(
        normalize(embed([p.query for p in sample], "query")),
        normalize(embed([p.positive for p in sample], "passage")),
    )
    return temperature_for(m), m
