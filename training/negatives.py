"""Hard negatives: passages near the query that are not known positives, mined two ways (``--miner``).

- ``bm25``: drawn at random (seeded) from the top ``depth`` BM25 hits that are not a known positive of the
  query, rather than always the top hit, because the very top is where unlabelled positives hide.
- ``dense``: drawn from the base model's own ranking of the corpus, ranks ``window`` (10-100: past the top,
  where unlabelled positives hide), less any scoring within ``margin`` of the pair's positive (as
  sentence-transformers' ``mine_hard_negatives`` with ``absolute_margin`` and FlagEmbedding's ``hn_mine.py``
  ``range_for_sampling``): negatives the model itself finds close, which BM25's word overlap misses.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace

import numpy as np

from common.bm25 import BM25

from .pairs import Pair


def known_positives(pairs: list[Pair]) -> dict[str, set[str]]:
    known: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        known[p.query].add(p.positive)
    return known


def mine_hard_negatives(
    pairs: list[Pair], pool: list[str] | None = None, n: int = 1, depth: int = 10, seed: int = 0
) -> list[Pair]:
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
            candidates[q] = [pool[i] for i, s in zip(row, row_scores) if s > 0 and pool[i] not in known[q]][
                :depth
            ]
    rng = random.Random(seed)
    mined = []
    for p in pairs:
        negatives = list(p.negatives)
        if not negatives and candidates.get(p.query):
            negatives = rng.sample(candidates[p.query], min(n, len(candidates[p.query])))
        mined.append(replace(p, negatives=negatives))
    return mined


def mine_dense_negatives(
    pairs: list[Pair],
    pool: list[str] | None,
    embed,
    n: int = 1,
    window: tuple[int, int] = (10, 100),
    margin: float = 0.05,
    seed: int = 0,
) -> list[Pair]:
    """Copies of ``pairs`` with ``n`` negatives each from ranks ``window`` of ``embed``'s exact search over
    ``pool`` (the corpus; by default the pairs' own positives), scoring at most the positive's score less
    ``margin`` (cosine). ``embed(texts, kind)``: the base model's vectors. Pairs with negatives keep them."""
    known = known_positives(pairs)
    pool = list(dict.fromkeys(pool if pool is not None else (p.positive for p in pairs)))
    queries = list(dict.fromkeys(p.query for p in pairs if not p.negatives))
    if not queries:
        return list(pairs)

    def unit(vectors) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    docs, query_vectors = unit(embed(pool, "passage")), unit(embed(queries, "query"))
    row_of = {text: i for i, text in enumerate(pool)}
    positives = [p.positive for p in pairs if not p.negatives and p.positive not in row_of]
    extra = dict(zip(positives, unit(embed(positives, "passage")))) if positives else {}
    start, stop = window
    ranked: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # query → (pool rows in the window, their scores)
    for q, scores in zip(queries, query_vectors @ docs.T):
        top = np.argsort(-scores, kind="stable")[: stop + len(known[q])]
        top = [i for i in top if pool[i] not in known[q]][start:stop]
        ranked[q] = (np.array(top, dtype=int), scores[top])
    query_row = {q: i for i, q in enumerate(queries)}
    rng = random.Random(seed)
    mined = []
    for p in pairs:
        negatives = list(p.negatives)
        if not negatives and p.query in ranked:
            rows, scores = ranked[p.query]
            positive = docs[row_of[p.positive]] if p.positive in row_of else extra[p.positive]
            ceiling = float(query_vectors[query_row[p.query]] @ positive) - margin
            candidates = [pool[i] for i, s in zip(rows, scores) if s <= ceiling]
            negatives = rng.sample(candidates, min(n, len(candidates)))
        mined.append(replace(p, negatives=negatives))
    return mined
