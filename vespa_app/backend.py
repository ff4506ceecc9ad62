"""The search backend interface shared by Vespa and the embedded backend, and evaluation through it.

Profiles mean the same on both: ``bm25`` (BM25 over title and text), ``semantic`` (closeness of the
query embedding to the document embedding, HNSW) and ``hybrid`` (reciprocal rank fusion of the two).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from training.data import Beir
from training.metrics import score_run

PROFILES = ("bm25", "semantic", "hybrid")


@dataclass
class Hit:
    id: str
    score: float
    title: str = ""


class SearchBackend(Protocol):
    def query(self, text: str, profile: str = "semantic", hits: int = 10) -> list[Hit]: ...


def evaluate_backend(backend: SearchBackend, beir: Beir, profiles=PROFILES, label: str = "", progress=True):
    """One row per profile, in the table format of `siamese eval`."""
    from tqdm.auto import tqdm

    rows = []
    for profile in profiles:
        started = time.time()
        run = {}
        for qid, text in tqdm(beir.queries.items(), desc=f"{label or 'backend'} {profile}", unit="q",
                              leave=False, disable=not progress):
            run[qid] = [(h.id, h.score) for h in backend.query(text, profile, hits=100)]
        rows.append({"name": f"{label} {profile}".strip(), **score_run(run, beir.qrels),
                     "seconds": round(time.time() - started, 1)})
    return rows
