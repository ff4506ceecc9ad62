"""What every stage of `siamese run` shares: its progress line, its timings, and the run record each stage
adds its part to (what the report's checks and notes show; ``results.json``'s ``record``)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field


def say(message: str) -> None:
    print(f"\n== {message}", file=sys.stderr, flush=True)


@dataclass
class RunRecord:
    """What the stages found beside their artefacts, field by field (each set by the stage named)."""

    recipe: dict = field(default_factory=dict)  # pipeline: fixed | auto, why, and auto's choice
    towers: dict | None = None  # train: which tower trained and which stayed the base (towers.json)
    merge: dict | None = None  # merge: α and how it was chosen
    parity: dict | None = None  # export: the ONNX graph against PyTorch
    chunking: str = ""  # how documents are embedded, and why
    bm25_weight: dict | None = None  # serve: hybrid-linear's BM25 weight and how it was chosen
    vespa_check: str | None = None  # package: Vespa's config model on it
    vespa_embedder: dict | None = None  # package: Vespa's HuggingFaceEmbedder against ours
    vespa_container: list[str] | None = None  # package: Vespa's container code on it
    feed: str | None = None  # --vespa: what the feed did
    backend: str = "embedded"  # where the served rows come from: embedded | vespa
    evaluation: dict | None = None  # evaluate: queries, seen, unseen, each guard's report half
    evaluation_skipped: str | None = None  # why there are no rows


class Stages:
    """Times each stage and holds the run record."""

    def __init__(self):
        self.timings: dict[str, float] = {}
        self.record = RunRecord()

    def timed(self, name: str, fn, *args, **kwargs):
        started = time.time()
        result = fn(*args, **kwargs)
        self.timings[name] = time.time() - started
        return result
