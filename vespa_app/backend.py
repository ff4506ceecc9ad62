"""The search backend interface shared by Vespa and the embedded backend, and evaluation through it.

Profiles (``profiles.py``) mean the same on both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from common.data import Beir
from common.metrics import per_query_ndcg, score_split
from vespa_app.profiles import CORE, get


@dataclass
class Hit:
    id: str
    score: float
    title: str = ""
    passage: str = ""  # chunked: the best chunk, the part of the document that matched


class SearchBackend(Protocol):
    def query(self, text: str, profile: str = "semantic", hits: int = 10, exact: bool = False) -> list[Hit]:
        """``exact``: nearestNeighbor by brute force (Vespa's approximate:false): served recall's truth."""
        ...


def served_recall(served: dict[str, list[str]], exact: dict[str, list[str]]) -> dict:
    """How much of exact search's top 10 and top 100 the served hits hold, averaged over the queries
    (pyvespa's VespaNNRecallEvaluator measures the same against approximate:false)."""

    def recall(k):
        shares = [len(set(served[q][:k]) & set(ids[:k])) / len(ids[:k]) for q, ids in exact.items() if ids]
        return round(sum(shares) / len(shares), 4) if shares else None

    return {"@10": recall(10), "@100": recall(100), "queries": len(exact)}


def evaluate_backend(
    backend: SearchBackend,
    beir: Beir,
    profiles=CORE,
    label: str = "",
    progress=True,
    seen: set[str] | None = None,
):
    """One row per profile, in the table format of `siamese eval` (with ``seen``: all, seen and unseen). A
    profile that matches by nearestNeighbor alone also gets ``served_recall``: its hits against the same query
    by brute force (``served_recall``), timed apart from its ``seconds``."""
    from tqdm.auto import tqdm

    rows = []
    for profile in profiles:
        seconds, run, exact = 0.0, {}, {}
        for qid, text in tqdm(
            beir.queries.items(),
            desc=f"{label or 'backend'} {profile}",
            unit="q",
            leave=False,
            disable=not progress,
        ):
            started = time.time()
            run[qid] = [(h.id, h.score) for h in backend.query(text, profile, hits=100)]
            seconds += time.time() - started
            if get(profile).dense:
                exact[qid] = [h.id for h in backend.query(text, profile, hits=100, exact=True)]
        rows.append(
            {
                "name": f"{label} {profile}".strip(),
                "kind": "served",
                "profile": profile,
                **score_split(run, beir.qrels, seen),
                "seconds": round(seconds, 1),
                **({"served_recall": served_recall(_ids(run), exact)} if exact else {}),
                "per_query": {"main": per_query_ndcg(run, beir.qrels)},
            }
        )
    return rows


def _ids(run: dict) -> dict[str, list[str]]:
    return {q: [doc for doc, _ in hits] for q, hits in run.items()}
