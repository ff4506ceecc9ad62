"""Hard negatives mined with BM25: passages that share words with the query but are not known positives.

A negative is drawn at random (seeded) from the top ``depth`` BM25 hits that are not a known positive of
the query, rather than always the top hit, because the very top is where unlabelled positives hide.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

from common.bm25 import BM25

from .pairs import Pair


def known_positives(pairs: list[Pair]) -> dict[str, set[str]]:
    known: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        known[p.query].add(p.positive)
    return known


def mine_hard_negatives(pairs: list[Pair], pool: list[str] | None = None, n: int = 1, depth: int = 10,
                        seed: int = 0) -> list[Pair]:
    """Return copies of ``pairs`` with ``n`` BM25-mined negatives each, drawn from ``pool``
    (the corpus; by default the pairs' own positives). Pairs that already have negatives keep them."""
    known = known_positives(pairs)
    pool = list(dict.fromkeys(pool if pool is not None else (p.positive for p in pairs)))
    index = BM25(pool)
    queries = list(dict.fromkeys(p.query for p in pairs if not p.negatives))
    candidates: dict[str, list[str]] = {}
    if queries:
        hits, scores = index.search(queries, depth + max(len(known[q]) for q in queries))
        for q, row, row_scores in zip(queries, hits, scores):
            # a passage sharing no word with the query is no hard negative
            candidates[q] = [pool[i] for i, s in zip(row, row_scores) if s > 0 and pool[i] not in known[q]][:depth]
    rng = random.Random(seed)
    mined = []
    for p in pairs:
        negatives = list(p.negatives)
        if not negatives and candidates.get(p.query):
            negatives = rng.sample(candidates[p.query], min(n, len(candidates[p.query])))
        mined.append(replace(p, negatives=negatives))
    return mined
