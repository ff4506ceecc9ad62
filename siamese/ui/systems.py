"""The columns of the search page: every system of a run on one query, each with its latency.

BM25, the base model as a user would deploy it, the model the run serves (the ``semantic`` profile), and its
two fusions with BM25, all over the run's embedded index; with a live Vespa (``--vespa URL``), every rank
profile through Vespa's query API instead, beside the local base. The base column ranks the index's documents
by the base model's own vectors: a frozen document tower's (and a kept base's) are the index's vectors
already; otherwise they come from the vector cache the run filled (computed once if it is gone)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.vectors import cached_vectors, exact_search
from exporter.manifest import Manifest
from exporter.runtime import OnnxEmbedder
from training.encoder import Encoder
from training.model_dir import model_cache_key
from vespa_app.backend import Hit
from vespa_app.embedded import EmbeddedIndex

HITS = 10
PROFILES = (
    ("BM25", "bm25"),
    ("served", "semantic"),
    ("hybrid", "hybrid"),
    ("hybrid-linear", "hybrid-linear"),
)


@dataclass
class Column:
    name: str
    hits: list[Hit] = field(default_factory=list)
    ms: float = 0.0
    error: str | None = None


class BaseColumn:
    """The base model's ranking of the index's documents (exact search: the truth HNSW approximates).

    Where the run's document tower is the base, frozen (the query tower's runs, a kept base), its exported
    graph embeds the query, as a deployed base would: ONNX Runtime, one text (about 12 ms on 2 cores against
    PyTorch's 47). Otherwise the base model itself, in PyTorch."""

    def __init__(self, base: str, index: EmbeddedIndex, frozen: bool, export: Path | None = None):
        self.base, self.index, self._encoder = base, index, None
        self.onnx = document_tower(export) if frozen and export else None
        if frozen and not index.chunked:
            vectors = index.embeddings
        else:
            texts = [d.passage for d in index.docs]
            key = model_cache_key(base, self.encoder.config)
            vectors = cached_vectors(key, texts, lambda: self.encoder.encode(texts, "passage", progress=True))
        self.vectors = np.asarray(vectors, dtype=np.float32)

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder.load(self.base).eval()
        return self._encoder

    def embed(self, text: str) -> np.ndarray:
        if self.onnx is not None:
            return self.onnx.embed_one(text, "query")[None, :]
        return self.encoder.encode([text], "query")

    def query(self, text: str, hits: int = HITS) -> list[Hit]:
        idx, scores = exact_search(self.embed(text), self.vectors, hits)
        return [
            Hit(self.index.docs[i].id, float(s), self.index.docs[i].title) for i, s in zip(idx[0], scores[0])
        ]


def document_tower(export: Path) -> OnnxEmbedder | None:
    """The export's document tower for queries too; None where it is not the base as trained (int8)."""
    if Manifest.load(export).quantization:
        return None
    return OnnxEmbedder(export, query_tower=False)


class Systems:
    """What answers each column: the run's index (or a live Vespa) and the base model."""

    def __init__(self, index: EmbeddedIndex, base: BaseColumn | None, served_label: str, vespa=None):
        self.index, self.base, self.vespa = index, base, vespa
        self.served_label = served_label

    def names(self) -> list[str]:
        names = [self.served_label if name == "served" else name for name, _ in PROFILES]
        return [names[0], *(["base (untrained)"] if self.base else []), *names[1:]]

    def search(self, text: str, hits: int = HITS) -> list[Column]:
        columns = []
        for name, profile in PROFILES:
            label = self.served_label if name == "served" else name
            if self.vespa is not None:
                label = f"{label} (Vespa)"
            columns.append(
                self._timed(label, lambda p=profile: (self.vespa or self.index).query(text, p, hits))
            )
            if profile == "bm25" and self.base is not None:
                columns.append(self._timed("base (untrained)", lambda: self.base.query(text, hits)))
        return columns

    @staticmethod
    def _timed(name: str, run) -> Column:
        started = time.perf_counter()
        try:
            found = run()
        except Exception as e:  # a live Vespa that went away: said in its column, the others still answer
            return Column(name, error=f"{e.__class__.__name__}: {str(e)[:200]}")
        return Column(name, found, 1000 * (time.perf_counter() - started))
