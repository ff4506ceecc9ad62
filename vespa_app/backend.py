"""The search backend interface shared by Vespa and the embedded backend, and evaluation through it.

Profiles (``profiles.py``) mean the same on both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from common.data import Beir
from common.metrics import per_query_ndcg, score_split
from vespa_app.profiles import CORE


@dataclass
class Hit:
    id: str
    score: float
    title: str = ""
    passage: str = ""  # chunked: the best chunk, the part of the document that matched


class SearchBackend(Protocol):
    def query(self, text: str, profile: str = "semantic", hits: int = 10) -> list[Hit]: ...


def evaluate_backend(
    backend: SearchBackend,
    beir: Beir,
    profiles=CORE,
    label: str = "",
    progress=True,
    seen: set[str] | None = None,
):
    """One row per profile, in the table format of `siamese eval` (with ``seen``: all, seen and unseen)."""
    from tqdm.auto import tqdm

    rows = []
    for profile in profiles:
        started = time.time()
        run = {}
        for qid, text in tqdm(
            beir.queries.items(),
            desc=f"{label or 'backend'} {profile}",
            unit="q",
            leave=False,
            disable=not progress,
        ):
            run[qid] = [(h.id, h.score) for h in backend.query(text, profile, hits=100)]
        rows.append(
            {
                "name": f"{label} {profile}".strip(),
                "kind": "served",
                "profile": profile,
                **score_split(run, beir.qrels, seen),
                "seconds": round(time.time() - started, 1),
                "per_query": {"main": per_query_ndcg(run, beir.qrels)},
            }
        )
    return rows
