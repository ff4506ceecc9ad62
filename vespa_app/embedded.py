"""The embedded backend: the Vespa schema's profiles (``profiles.py``) on this machine, from maintained
libraries.

HNSW from faiss (cosine, the same M / ef-construction knobs as the Vespa schema), BM25 from bm25s,
packed sign bits with exact hamming search for the ``binary`` profile, and the exported ONNX model
embedding documents and queries as Vespa's embedder does. Persisted to a directory; reopening it needs
no re-embedding::

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

from common.atomic import atomic_dir, check_output
from common.data import Doc
from common.errors import ConfigError
from common.vectors import exact_search, normalize
from exporter.runtime import OnnxEmbedder
from training.bm25 import BM25

from . import profiles
from .backend import Hit
from .serving import HNSW_EXPLORE_AT_INSERT, HNSW_EXPLORE_AT_SEARCH, HNSW_MAX_LINKS, TARGET_HITS


def _hnsw(dim: int, connectivity: int, expansion_add: int, expansion_search: int):
    # Inner product over unit vectors is cosine similarity.
    index = faiss.IndexHNSWFlat(dim, connectivity, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = expansion_add
    index.hnsw.efSearch = expansion_search
    return index


def closeness(distance: np.ndarray) -> np.ndarray:
    """Vespa's closeness: 1 / (1 + distance), for angular and hamming distances alike."""
    return 1.0 / (1.0 + distance)


def pack_bits(vectors: np.ndarray) -> np.ndarray:
    """Vespa's binarization into an int8 field: one bit per dimension, 1 where the value is > 0, first
    dimension in the highest bit."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


class EmbeddedIndex:
    def __init__(self, path, docs: list[Doc], embeddings: np.ndarray, hnsw, bm25: BM25, meta: dict,
                 embedder: OnnxEmbedder | None = None):
        self.path, self.docs, self.embeddings, self.hnsw, self.bm25, self.meta = path, docs, embeddings, hnsw, bm25, meta
        self._embedder = embedder
        self._binary = None

    @property
    def embedder(self) -> OnnxEmbedder:
        if self._embedder is None:
            self._embedder = OnnxEmbedder(self.meta["export_dir"])
        return self._embedder

    @classmethod
    def build(cls, path, export_dir, docs: list[Doc], *, connectivity: int = HNSW_MAX_LINKS,
              expansion_add: int = HNSW_EXPLORE_AT_INSERT, expansion_search: int = HNSW_EXPLORE_AT_SEARCH,
              embeddings: np.ndarray | None = None, progress: bool = True, force: bool = False) -> "EmbeddedIndex":
        path, export_dir = Path(path), Path(export_dir).resolve()
        check_output(path, "index", force, inputs=[export_dir])
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise ConfigError("document ids must be unique")
        embedder = OnnxEmbedder(export_dir)
        started = time.time()
        if embeddings is None:
            embeddings = embedder.embed([d.passage for d in docs], "passage", progress=progress)
        embed_s = time.time() - started
        started = time.time()
        hnsw = _hnsw(embedder.dim, connectivity, expansion_add, expansion_search)
        hnsw.add(normalize(embeddings))
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

        atomic_dir(path, write, "index", replace=force, inputs=[export_dir])
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

    # ------------------------------------------------------------ what the profiles score with

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_one(text, "query")

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """HNSW over the embeddings: (positions, closeness), best first."""
        self.hnsw.hnsw.efSearch = max(self.meta["expansion_search"], k)
        similarity, idx = self.hnsw.search(normalize(np.atleast_2d(vector)), min(k, len(self.docs)))
        keep = idx[0] >= 0
        return idx[0][keep].astype(np.int64), closeness(1.0 - similarity[0][keep])

    def nearest_binary(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact hamming search over packed sign bits: (positions, closeness), best first."""
        if self._binary is None:
            self._binary = faiss.IndexBinaryFlat(self.embeddings.shape[1])
            self._binary.add(pack_bits(self.embeddings))
        distance, idx = self._binary.search(pack_bits(np.atleast_2d(vector)), min(k, len(self.docs)))
        return idx[0].astype(np.int64), closeness(distance[0].astype(np.float64))

    def cosine(self, vector: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return normalize(self.embeddings[positions]) @ normalize(vector)

    def lexical(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions, scores = self.bm25.search([text], k)
        keep = scores[0] > 0  # a document matching no query term is not a BM25 hit
        return positions[0][keep], scores[0][keep]

    def query(self, text: str, profile: str = "semantic", hits: int = 10, target_hits: int = TARGET_HITS) -> list[Hit]:
        """The rank profile's embedded twin (``profiles.PROFILES``); only profiles with query inputs embed the text."""
        k = hits if profile == "bm25" else max(hits, target_hits)
        idx, scores = profiles.get(profile).embedded(self, text, k)
        return [Hit(self.docs[i].id, float(s), self.docs[i].title) for i, s in zip(idx[:hits], scores[:hits])]

    def exact(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return exact_search(vectors, self.embeddings, k)
