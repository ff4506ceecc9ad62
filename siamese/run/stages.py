"""What every stage of `siamese run` shares: its progress line (printed, and in ``OUT/progress.json`` for the
search page to show while the run writes the folder), its timings, and the run record each stage adds its
part to (what the report's checks and notes show; ``results.json``'s ``record``)."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

_progress: dict = {}  # the run in progress: its progress.json and what it says (one run a process)


def say(message: str) -> None:
    print(f"\n== {message}", file=sys.stderr, flush=True)
    _write_progress(message=message)


def _write_progress(**changes) -> None:
    if not _progress.get("path"):
        return
    _progress["state"] |= changes | {"updated": time.time()}
    path = _progress["path"]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_progress["state"]))
    tmp.replace(path)


@dataclass
class RunRecord:
    """What the stages found beside their artefacts, field by field (each set by the stage named)."""

    base: str = ""  # pipeline: the base model, as the user named it
    recipe: dict = field(default_factory=dict)  # pipeline: fixed | auto, why, and auto's choice
    towers: dict | None = None  # train: which tower trained and which stayed the base (towers.json)
    merge: dict | None = None  # merge: α and how it was chosen
    parity: dict | None = None  # export: the ONNX graph against PyTorch
    chunking: str = ""  # how documents are embedded, and why
    bm25_weight: dict | None = None  # serve: hybrid-linear's BM25 weight and how it was chosen
    hnsw: dict | None = None  # serve: the HNSW settings of the package and the index, and why
    served_recall: dict | None = None  # evaluate: each served dense profile against exact search
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

    def follow(self, out: Path) -> None:
        """Write the run's progress to ``out/progress.json`` from now on."""
        out.mkdir(parents=True, exist_ok=True)
        _progress.update(path=out / "progress.json", state={"running": True, "stage": None, "done": {}})
        _write_progress(started=time.time())

    def finish(self) -> None:
        _write_progress(running=False, stage=None)
        _progress.clear()

    def timed(self, name: str, fn, *args, **kwargs):
        started = time.time()
        _write_progress(stage=name)
        result = fn(*args, **kwargs)
        self.timings[name] = time.time() - started
        if _progress.get("path"):
            _write_progress(done=_progress["state"]["done"] | {name: round(self.timings[name], 1)})
        return result
