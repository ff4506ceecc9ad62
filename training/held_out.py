"""Training queries held out to choose on: one dev slice where they are many, k folds where they are few.

Both are cut from the training pairs alone, so no test query can be among them; by query, so no held-out
query has a pair in training; by a seeded hash of the query's text, so the cut is the same on any order.

- ``KFOLD_BELOW`` training queries or more: one dev slice of ``DEV_FRACTION`` of them (at least
  ``DEV_MINIMUM`` while two thirds stay to train on). SciFact's 809 queries hold out 121.
- fewer: ``FOLDS`` folds; each query is held out exactly once, by a model trained on the others, so the
  choice rests on every training query rather than on a slice of 20 (a slice that small cannot tell a
  5-point change from noise: ``common/significance.py``).

A held-out query whose positive is also a positive of a kept query is *seen*, as a test query is; the rest
are *unseen*. Each held-out set is a retrieval set over the same corpus as training (the pool; without one,
every positive of every pair), judged by the held-out pairs' positives::

    for fold in held_out_folds(pairs, pool):
        train(config, fold.kept, pool)   # and score it on fold.held, fold.seen
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from common.data import Beir, Doc
from common.errors import ConfigError
from common.metrics import passage_key

from .pairs import Pair

DEV_FRACTION, DEV_MINIMUM, FEWEST_QUERIES = 0.15, 50, 30
KFOLD_BELOW, FOLDS = 400, 5


@dataclass
class Fold:
    """One split: the pairs a candidate trains on, and the held-out queries it is scored on."""

    number: int
    kept: list[Pair]
    held_pairs: list[Pair]
    held: Beir  # the held-out queries as a retrieval set over the corpus
    seen: set[str]  # held-out query ids with a positive that a kept pair has too

    @property
    def kept_queries(self) -> int:
        return len({p.query for p in self.kept})


def hashed_queries(pairs: list[Pair], seed: int = 0) -> list[str]:
    """The distinct queries in a seeded hash order: the same on any order of the pairs."""
    return sorted({p.query for p in pairs}, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())


def too_few(pairs: list[Pair]) -> str | None:
    """Why no query can be held out of ``pairs`` to choose on, or None."""
    queries = len({p.query for p in pairs})
    if queries < FEWEST_QUERIES:
        return (
            f"{queries} training queries are too few to hold any out to choose on (it takes {FEWEST_QUERIES})"
        )
    return None


def held_out_groups(pairs: list[Pair], seed: int = 0) -> list[set[str]]:
    """The queries held out in each fold: one dev slice, or ``FOLDS`` groups that cover every query once."""
    queries = hashed_queries(pairs, seed)
    if reason := too_few(pairs):
        raise ConfigError(
            f"--recipe auto: {reason}. Give more pairs, or choose the recipe yourself (--recipe fixed)"
        )
    if len(queries) < KFOLD_BELOW:
        return [set(queries[i::FOLDS]) for i in range(FOLDS)]
    size = max(round(DEV_FRACTION * len(queries)), min(DEV_MINIMUM, len(queries) // 3))
    return [set(queries[:size])]


def held_out_folds(pairs: list[Pair], pool: list | None, seed: int = 0) -> list[Fold]:
    corpus = _corpus(pairs, pool)
    folds = []
    for number, held_queries in enumerate(held_out_groups(pairs, seed)):
        kept = [p for p in pairs if p.query not in held_queries]
        held_pairs = [p for p in pairs if p.query in held_queries]
        held, seen = held_set(held_pairs, kept, corpus)
        folds.append(Fold(number, kept, held_pairs, held, seen))
    return folds


def _corpus(pairs: list[Pair], pool: list | None) -> dict[str, Doc]:
    """The documents held-out queries are ranked against, by passage key: the pool, then any positive the
    pool lacks."""
    corpus: dict[str, Doc] = {}
    for item in pool or []:
        doc = item if isinstance(item, Doc) else Doc(f"text-{passage_key(item)}", "", item)
        corpus.setdefault(passage_key(doc.passage), doc)
    for p in pairs:
        corpus.setdefault(passage_key(p.positive), Doc(f"text-{passage_key(p.positive)}", "", p.positive))
    return corpus


def query_id(query: str) -> str:
    return f"held-{passage_key(query)}"


def held_set(held: list[Pair], kept: list[Pair], corpus: dict[str, Doc]) -> tuple[Beir, set[str]]:
    """The held-out pairs as a retrieval set over ``corpus`` (by passage key), and its seen queries."""
    queries, qrels = {}, {}
    for p in held:
        qid = query_id(p.query)
        queries[qid] = p.query
        qrels.setdefault(qid, {})[corpus[passage_key(p.positive)].id] = 1
    trained = {passage_key(p.positive) for p in kept}
    seen = {query_id(p.query) for p in held if passage_key(p.positive) in trained}
    return Beir({d.id: d for d in corpus.values()}, queries, qrels), seen
