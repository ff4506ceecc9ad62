"""The embedded backend: the Vespa schema's profiles on this machine, from maintained libraries.

HNSW from faiss (cosine, the same M / ef-construction knobs as the Vespa schema), BM25 from bm25s,
and the exported ONNX model embedding documents and queries as Vespa's embedder does. Persisted to a
directory; reopening it needs no re-embedding::

    meta.json        export dir, dimension, HNSW settings, document count
    docs.jsonl       id, title, text
    embeddings.npy   float32 document vectors (exact search and re-indexing need no model)
    hnsw.faiss       the HNSW graph
    bm25/            the BM25 index
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import faiss
import numpy as np

from exporter.runtime import OnnxEmbedder
from training.atomic import atomic_dir
from training.bm25 import BM25
from training.data import Doc

from .backend import Hit

RRF_K = 60  # Vespa's reciprocal_rank_fusion default
RERANK_COUNT = 1000  # the hybrid profile's global-phase rerank-count


def _hnsw(dim: int, connectivity: int, expansion_add: int, expansion_search: int):
    # Inner product over unit vectors is cosine similarity.
    index = faiss.IndexHNSWFlat(dim, connectivity, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = expansion_add
    index.hnsw.efSearch = expansion_search
    return index


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.array(vectors, dtype=np.float32, ndmin=2)
    faiss.normalize_L2(vectors)
    return vectors


def closeness(cosine_distance: np.ndarray) -> np.ndarray:
    """Vespa's closeness for (prenormalized-)angular distance: 1 / (1 + distance)."""
    return 1.0 / (1.0 + cosine_distance)


class EmbeddedIndex:
    def __init__(self, path, docs: list[Doc], embeddings: np.ndarray, hnsw, bm25: BM25, meta: dict,
                 embedder: OnnxEmbedder | None = None):
        self.path, self.docs, self.embeddings, self.hnsw, self.bm25, self.meta = path, docs, embeddings, hnsw, bm25, meta
        self._embedder = embedder

    @property
    def embedder(self) -> OnnxEmbedder:
        if self._embedder is None:
            self._embedder = OnnxEmbedder(self.meta["export_dir"])
        return self._embedder

    @classmethod
    def build(cls, path, export_dir, docs: list[Doc], *, connectivity: int = 16, expansion_add: int = 200,
              expansion_search: int = 200, embeddings: np.ndarray | None = None, progress: bool = True,
              force: bool = False) -> "EmbeddedIndex":
        path, export_dir = Path(path), Path(export_dir).resolve()
        if path.exists() and not force:
            raise FileExistsError(f"{path} already exists. Choose another directory or pass --force.")
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise ValueError("document ids must be unique")
        embedder = OnnxEmbedder(export_dir)
        started = time.time()
        if embeddings is None:
            embeddings = embedder.embed([d.passage for d in docs], "passage", progress=progress)
        embed_s = time.time() - started
        started = time.time()
        hnsw = _hnsw(embedder.dim, connectivity, expansion_add, expansion_search)
        hnsw.add(_unit(embeddings))
        bm25 = BM25([d.passage for d in docs])
        meta = {"export_dir": str(export_dir), "dimension": embedder.dim, "count": len(docs),
                "connectivity": connectivity, "expansion_add": expansion_add, "expansion_search": expansion_search,
                "embed_seconds": round(embed_s, 1), "index_seconds": round(time.time() - started, 2)}

        def write(tmp: Path):
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            with open(tmp / "docs.jsonl", "w") as fh:
                for d in docs:
                    fh.write(json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n")
            np.save(tmp / "embeddings.npy", embeddings)
            faiss.write_index(hnsw, str(tmp / "hnsw.faiss"))
            bm25.save(tmp / "bm25")

        atomic_dir(path, write)
        return cls(path, docs, embeddings, hnsw, bm25, meta, embedder)

    @classmethod
    def open(cls, path) -> "EmbeddedIndex":
        path = Path(path)
        if not (path / "meta.json").exists():
            raise FileNotFoundError(f"{path}: not an index (no meta.json). Build one with `siamese run`.")
        meta = json.loads((path / "meta.json").read_text())
        docs = [Doc(**json.loads(line)) for line in (path / "docs.jsonl").read_text().splitlines()]
        hnsw = faiss.read_index(str(path / "hnsw.faiss"))
        hnsw.hnsw.efSearch = meta["expansion_search"]
        return cls(path, docs, np.load(path / "embeddings.npy"), hnsw, BM25.load(path / "bm25"), meta)

    # ------------------------------------------------------------ the rank profiles

    def semantic(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        self.hnsw.hnsw.efSearch = max(self.meta["expansion_search"], k)
        similarity, idx = self.hnsw.search(_unit(vector), min(k, len(self.docs)))
        keep = idx[0] >= 0
        return idx[0][keep].astype(np.int64), closeness(1.0 - similarity[0][keep])

    def lexical(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions, scores = self.bm25.search([text], k)
        keep = scores[0] > 0  # a document matching no query term is not a BM25 hit
        return positions[0][keep], scores[0][keep]

    def query(self, text: str, profile: str = "semantic", hits: int = 10, target_hits: int = 100) -> list[Hit]:
        if profile == "bm25":
            idx, scores = self.lexical(text, hits)
        elif profile == "semantic":
            idx, scores = self.semantic(self.embedder.embed_one(text, "query"), max(hits, target_hits))
        elif profile == "hybrid":
            idx, scores = self._hybrid(text, max(hits, target_hits))
        else:
            raise ValueError(f"unknown profile {profile!r}: choose bm25, semantic or hybrid")
        return [Hit(self.docs[i].id, float(s), self.docs[i].title) for i, s in zip(idx[:hits], scores[:hits])]

    def _hybrid(self, text: str, target_hits: int):
        """As the Vespa profile: match nearestNeighbor OR the text; first phase closeness (0 for documents the
        nearest-neighbour search did not return); global phase RRF of closeness and BM25 over the top 1000."""
        nn_idx, nn_close = self.semantic(self.embedder.embed_one(text, "query"), target_hits)
        bm_idx, bm_score = self.lexical(text, RERANK_COUNT)
        close = dict(zip(nn_idx.tolist(), nn_close.tolist()))
        lexical = dict(zip(bm_idx.tolist(), bm_score.tolist()))
        matched = list(dict.fromkeys(nn_idx.tolist() + bm_idx.tolist()))
        matched.sort(key=lambda i: -close.get(i, 0.0))
        rerank = matched[:RERANK_COUNT]
        fused = dict.fromkeys(rerank, 0.0)
        for feature in (close, lexical):
            for rank, i in enumerate(sorted(rerank, key=lambda i: -feature.get(i, 0.0)), 1):
                fused[i] += 1.0 / (RRF_K + rank)
        order = sorted(rerank, key=lambda i: -fused[i])
        return np.asarray(order, dtype=np.int64), np.asarray([fused[i] for i in order])

    def exact(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        from training.evaluate import exact_search

        return exact_search(vectors, self.embeddings, k)
