"""The embedded backend: the Vespa schema's profiles (``profiles.py``) on this machine, from maintained
libraries, searching an index's files (``index_files.py``: what is stored, how it is built, read and checked;
reopening it needs no re-embedding).

HNSW from faiss (cosine, with the package's settings, ``hnsw.HnswSettings``: M and efConstruction as the
schema's links and exploration at insert, efSearch what Vespa explores for a query), BM25 from bm25s,
packed sign bits with exact hamming search for the ``binary`` profile, and the exported ONNX model
embedding documents and queries as Vespa's embedder does.

With a late-interaction export (``build(..., colbert_dir=)``), the MaxSim profiles re-rank over the stored
token vectors: the packed bits unpacked to 0/1 (``cells="int8"``, as the package's int8 field) or the vectors
(``"float"``).

Chunked (``build(..., chunker=)``), as a chunked Vespa package: a vector per chunk, HNSW over all of them,
and a document as close as its best chunk, which each hit carries as its passage.
"""

from __future__ import annotations

from functools import cached_property

import faiss
import numpy as np

from common.data import Doc
from common.late import maxsim
from common.vectors import chunk_scores, exact_search, normalize, pack_bits, top_k, unpack_bits
from exporter.runtime import OnnxEmbedder, OnnxTokenEmbedder
from vespa_app import profiles
from vespa_app.backend import Hit
from vespa_app.hnsw import HnswSettings
from vespa_app.index_files import BadIndexError, IndexFiles
from vespa_app.serving import BM25_WEIGHT, TARGET_HITS

__all__ = ["BadIndexError", "EmbeddedIndex", "closeness"]  # BadIndexError: what opening refuses with


def closeness(distance: np.ndarray) -> np.ndarray:
    """Vespa's closeness: 1 / (1 + distance), for angular and hamming distances alike."""
    return 1.0 / (1.0 + distance)


class EmbeddedIndex:
    """The rank profiles' twins over an index's files (``IndexFiles``: what is stored, and its checks)."""

    def __init__(self, files: IndexFiles, embedder: OnnxEmbedder | None = None):
        self.files = files
        self._embedder = embedder
        self._binary = None
        self._colbert_embedder = None
        self.approximate = True  # False: nearestNeighbor by brute force, as Vespa's approximate:false
        self._last_query = None  # (embed, text, vector): the profiles of one query embed it once
        # which token vectors MaxSim reads: int8 (the packed bits, as the package's field) or float
        self.colbert_cells = (files.meta.get("colbert") or {}).get("cells", "int8")
        # chunked: chunk i belongs to document owners[i]; a document's chunks are rows bounds[p]:bounds[p + 1]
        chunks = files.chunks
        self.owners = np.asarray([doc for doc, _ in chunks], dtype=np.int64) if chunks else None
        self.bounds = np.searchsorted(self.owners, np.arange(len(files.docs) + 1)) if chunks else None

    @classmethod
    def build(cls, path, export_dir, docs: list[Doc], **options) -> EmbeddedIndex:
        """Build and write an index (``IndexFiles.build``: its options), ready to search."""
        return cls(*IndexFiles.build(path, export_dir, docs, **options))

    @classmethod
    def open(cls, path) -> EmbeddedIndex:
        """Open an index, every file checked against meta.json (``IndexFiles.read``)."""
        return cls(IndexFiles.read(path))

    # What is stored, as searching and its callers read it.
    path = property(lambda self: self.files.path)
    meta = property(lambda self: self.files.meta)
    docs = property(lambda self: self.files.docs)
    embeddings = property(lambda self: self.files.embeddings)
    hnsw = property(lambda self: self.files.hnsw)
    bm25 = property(lambda self: self.files.bm25)
    chunks = property(lambda self: self.files.chunks)

    @property
    def chunked(self) -> bool:
        return self.files.chunks is not None

    @cached_property
    def hnsw_settings(self) -> HnswSettings:
        """Read once: every approximate search sets efSearch from it."""
        return HnswSettings.from_record(self.meta["hnsw"])

    @property
    def bm25_weight(self) -> float:
        """hybrid-linear's weight of BM25, as in the package this index stands in for."""
        return float(self.meta.get("bm25_weight", BM25_WEIGHT))

    def set_bm25_weight(self, weight: float) -> None:
        self.files.set_bm25_weight(weight)

    def check_corpus(self, docs) -> None:
        self.files.check_corpus(docs)

    def serve(self, export_dir) -> None:
        """Embed queries with another export from now on (``IndexFiles.serve``: one with the same document
        side only)."""
        self.files.serve(export_dir)
        self._embedder = None

    @property
    def embedder(self) -> OnnxEmbedder:
        """The export the documents were embedded with (checked, then kept)."""
        if self._embedder is None:
            self._embedder = self.files.embedder()
        return self._embedder

    @property
    def colbert_embedder(self) -> OnnxTokenEmbedder:
        if self._colbert_embedder is None:
            self._colbert_embedder = self.files.colbert_embedder()
        return self._colbert_embedder

    def doc_tokens(self, position: int) -> np.ndarray:
        """A document's token vectors as MaxSim reads them: 0/1
        from the packed bits (int8 cells), or float."""
        bounds, tokens, bits = self.files.colbert()
        a, b = bounds[position], bounds[position + 1]
        return (
            unpack_bits(bits[a:b])
            if self.colbert_cells == "int8"
            else np.asarray(tokens[a:b], dtype=np.float32)
        )

    def maxsim(self, text: str, positions) -> np.ndarray:
        """MaxSim of the query's token vectors against each document at ``positions``."""
        return maxsim(
            self.colbert_embedder.embed_one(text, "query"), [self.doc_tokens(int(p)) for p in positions]
        )

    # ------------------------------------------------------------ what the profiles score with

    def embed_query(self, text: str) -> np.ndarray:
        embed = self.embedder.embed_one  # in the key: a swapped embedder (or its method) embeds afresh
        if self._last_query is None or self._last_query[:2] != (embed, text):
            vector = embed(text, "query")
            vector.setflags(write=False)  # shared by the profiles: none may change it
            self._last_query = (embed, text, vector)
        return self._last_query[2]

    def _documents(self, search, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``search(n) -> (rows, closeness)`` best first, over documents: chunk rows become their documents,
        each at its best chunk, asking for more chunks until ``k`` documents are found or all were seen."""
        if not self.chunked:
            return search(min(k, len(self.docs)))
        n = min(4 * k, len(self.embeddings))
        while True:
            rows, close = search(n)
            docs, first = np.unique(self.owners[rows], return_index=True)
            if len(docs) >= k or n == len(self.embeddings):
                order = np.sort(first)[:k]  # each document's first (best) chunk, in rank order
                return self.owners[rows[order]], close[order]
            n = min(4 * n, len(self.embeddings))

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """HNSW over the embeddings (chunked: over every chunk): (positions, closeness), best first."""

        def search(n):
            if not self.approximate:
                idx, similarity = exact_search(np.atleast_2d(vector), self.embeddings, n)
                return idx[0].astype(np.int64), closeness(1.0 - similarity[0])
            # Vespa explores targetHits + hnsw.exploreAdditionalHits candidates; n is the targetHits asked
            self.hnsw.hnsw.efSearch = self.hnsw_settings.explored(n)
            similarity, idx = self.hnsw.search(normalize(np.atleast_2d(vector)), n)
            keep = idx[0] >= 0
            return idx[0][keep].astype(np.int64), closeness(1.0 - similarity[0][keep])

        return self._documents(search, k)

    def nearest_binary(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact hamming search over packed sign bits: (positions, closeness), best first."""
        if self._binary is None:
            self._binary = faiss.IndexBinaryFlat(self.embeddings.shape[1])
            self._binary.add(pack_bits(self.embeddings))

        def search(n):
            distance, idx = self._binary.search(pack_bits(np.atleast_2d(vector)), n)
            return idx[0].astype(np.int64), closeness(distance[0].astype(np.float64))

        return self._documents(search, k)

    def cosine(self, vector: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Each document's cosine to ``vector``; chunked, its best chunk's."""
        if not self.chunked:
            return normalize(self.embeddings[positions]) @ normalize(vector)
        return np.asarray([self.best_chunk(vector, p)[1] for p in positions])

    def best_chunk(self, vector: np.ndarray, position: int) -> tuple[int, float]:
        """A chunked document's best chunk for ``vector``: (its row in chunks/embeddings, cosine)."""
        a, b = self.bounds[position], self.bounds[position + 1]
        sims = normalize(self.embeddings[a:b]) @ normalize(vector)
        return a + int(np.argmax(sims)), float(sims.max())

    def lexical(self, text: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions, scores = self.bm25.search([text], k)
        keep = scores[0] > 0  # a document matching no query term is not a BM25 hit
        return positions[0][keep], scores[0][keep]

    def query(
        self,
        text: str,
        profile: str = "semantic",
        hits: int = 10,
        target_hits: int = TARGET_HITS,
        exact: bool = False,
    ) -> list[Hit]:
        """The rank profile's embedded twin (``profiles.PROFILES``); only profiles with query inputs embed the
        text. ``exact``: nearestNeighbor by brute force (Vespa's approximate:false)."""
        k = hits if profile == "bm25" else max(hits, target_hits)
        chosen = profiles.get(profile)
        self.approximate = not exact
        try:
            idx, scores = chosen.rank(self, text, k)
        finally:
            self.approximate = True
        found = [
            Hit(self.docs[i].id, float(s), self.docs[i].title) for i, s in zip(idx[:hits], scores[:hits])
        ]
        if self.chunked and chosen.embeds_query:  # the passage to show: each hit's best chunk
            vector = self.embed_query(text)
            for hit, i in zip(found, idx[:hits]):
                hit.passage = self.chunks[self.best_chunk(vector, i)[0]][1]
        return found

    def exact(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Brute force (chunked: documents by their best chunk): the ground truth HNSW is measured against."""
        if not self.chunked:
            return exact_search(vectors, self.embeddings, k)
        sims = normalize(vectors) @ normalize(self.embeddings).T
        return top_k(chunk_scores(sims, self.owners), k)
