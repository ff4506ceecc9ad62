"""Batches with no false in-batch negatives.

In-batch negatives assume every other passage in the batch is wrong for a query. That is false when the
same passage appears twice (two queries sharing a positive, as SciFact's negated claim pairs do) or when
a passage in the batch is a known positive of another query in it. Such pairs are deferred to a later
batch instead. The order depends only on (seed, epoch), so a resumed run replays it exactly.
"""

from __future__ import annotations

import random
from collections import deque

from .negatives import known_positives
from .pairs import Pair


def plan_epoch(pairs: list[Pair], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Index batches for one epoch. Each batch holds pairs of one source only (labelled pairs, or one kind
    of corpus pair), so in-batch negatives stay within their domain; sources take turns in a seeded order."""
    if batch_size < 1:
        raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
    known = known_positives(pairs)
    order = list(range(len(pairs)))
    rng = random.Random(seed * 1_000_003 + epoch)
    rng.shuffle(order)
    sources = list(dict.fromkeys(pairs[i].source for i in order))
    if len(sources) == 1:
        return _plan(pairs, order, batch_size, known)
    batches = [
        b
        for source in sources
        for b in _plan(pairs, [i for i in order if pairs[i].source == source], batch_size, known)
    ]
    rng.shuffle(batches)
    return batches


def _plan(pairs: list[Pair], order: list[int], batch_size: int, known) -> list[list[int]]:
    pending = deque(order)
    batches = []
    while pending:
        batch, queries, passages, batch_known, deferred = [], set(), set(), set(), []
        while pending and len(batch) < batch_size:
            i = pending.popleft()
            p = pairs[i]
            texts = {p.positive, *p.negatives}
            clash = p.query in queries or texts & passages or texts & batch_known or known[p.query] & passages
            if clash and batch:
                deferred.append(i)
                continue
            batch.append(i)
            queries.add(p.query)
            passages |= texts
            batch_known |= known[p.query]
        pending.extendleft(reversed(deferred))
        if len(batch) > 1:  # a lone pair has no in-batch negatives: its loss would be 0 and teach nothing
            batches.append(batch)
    return batches
