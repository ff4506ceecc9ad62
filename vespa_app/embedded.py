"""The embedded backend: the Vespa schema's profiles (``profiles.py``) on this machine, from maintained
libraries.

HNSW from faiss (cosine, the same M / ef-construction knobs as the Vespa schema), BM25 from bm25s,
packed sign bits with exact hamming search for the ``binary`` profile, and the exported ONNX model
embedding documents and queries as Vespa's embedder does. Persisted to a directory (``index_files.py``);
reopening it needs no re-embedding.

With a late-interaction export (``build(..., colbert_dir=)``), the MaxSim profiles re-rank over the stored
token vectors: the packed bits unpacked to 0/1 (``cells="int8"``, as the package's int8 field) or the vectors
(``"float"``).

Chunked (``build(..., chunker=)``), as a chunked Vespa package: a vector per chunk, HNSW over all of them,
and a document as close as its best chunk, which each hit carries as its passage.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import faiss
import numpy as np

from common.atomic import atomic_dir, check_output
from common.bm25 import BM25
from common.data import Doc, corpus_fingerprint
from common.errors import ConfigError
from common.late import maxsim
from common.vectors import (
    cached_vectors,
    chunk_scores,
    exact_search,
    normalize,
    pack_bits,
    top_k,
    unpack_bits,
)
from exporter.manifest import MANIFEST, Manifest, sha256
from exporter.runtime import OnnxEmbedder, OnnxTokenEmbedder
from vespa_app import profiles
from vespa_app.backend import Hit
from vespa_app.index_files import REBUILD, BadIndexError, read_colbert, read_index, write_index
from vespa_app.serving import (
    BM25_WEIGHT,
    HNSW_EXPLORE_AT_INSERT,
    HNSW_EXPLORE_AT_SEARCH,
    HNSW_MAX_LINKS,
    TARGET_HITS,
)


def _hnsw(dim: int, connectivity: int, expansion_add: int, expansion_search: int):
    # Inner product over unit vectors is cosine similarity.
    index = faiss.IndexHNSWFlat(dim, connectivity, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = expansion_add
    index.hnsw.efSearch = expansion_search
    return index


def closeness(distance: np.ndarray) -> np.ndarray:
    """Vespa's closeness: 1 / (1 + distance), for angular and hamming distances alike."""
    return 1.0 / (1.0 + distance)


def _colbert_tokens(colbert_dir: Path, cells: str, docs: list[Doc], progress: bool) -> tuple[list, dict]:
    """Every document's token vectors from a late-interaction export, and what meta.json records of them."""
    if cells not in ("int8", "float"):
        raise ConfigError(f"colbert cells must be int8 or float, not {cells!r}")
    started = time.time()
    tokens = OnnxTokenEmbedder(colbert_dir).embed([d.passage for d in docs], "passage", progress=progress)
    return tokens, {
        "export_dir": str(colbert_dir),
        "manifest_sha256": sha256(colbert_dir / MANIFEST),
        "cells": cells,
        "tokens": int(sum(len(t) for t in tokens)),
        "embed_seconds": round(time.time() - started, 1),
    }


class EmbeddedIndex:
    def __init__(
        self,
        path,
        docs: list[Doc],
        embeddings: np.ndarray,
        hnsw,
        bm25: BM25,
        meta: dict,
        embedder: OnnxEmbedder | None = None,
        chunks: list[tuple[int, str]] | None = None,
    ):
        self.path, self.docs, self.embeddings, self.hnsw, self.bm25, self.meta = (
            path,
            docs,
            embeddings,
            hnsw,
            bm25,
            meta,
        )
        self._embedder = embedder
        self._binary = None
        self._colbert_embedder = None
        self.colbert_cells = (meta.get("colbert") or {}).get("cells", "int8")  # which vectors MaxSim reads
        # chunked: chunk i belongs to document owners[i]; a document's chunks are rows bounds[p]:bounds[p + 1]
        self.chunks = chunks
        self.owners = np.asarray([doc for doc, _ in chunks], dtype=np.int64) if chunks else None
        self.bounds = np.searchsorted(self.owners, np.arange(len(docs) + 1)) if chunks else None

    @property
    def chunked(self) -> bool:
        return self.chunks is not None

    @property
    def bm25_weight(self) -> float:
        """hybrid-linear's weight of BM25, as in the package this index stands in for."""
        return float(self.meta.get("bm25_weight", BM25_WEIGHT))

    def set_bm25_weight(self, weight: float) -> None:
        """Record the weight the package is built with (chosen after the index, on its vectors)."""
        self.meta["bm25_weight"] = float(weight)
        self._write_meta()

    @property
    def embedder(self) -> OnnxEmbedder:
        """The export the documents were embedded with; refused if it changed since."""
        if self._embedder is None:
            export_dir = Path(self.meta["export_dir"])
            manifest = export_dir / MANIFEST
            if not manifest.exists():
                raise BadIndexError(
                    f"{self.path}: its export {export_dir} is gone, so queries cannot be embedded "
                    f"as its documents were. {REBUILD}"
                )
            if sha256(manifest) != self.meta["manifest_sha256"]:
                raise BadIndexError(
                    f"{self.path}: the export {export_dir} was re-written after this index was built "
                    f"(its manifest differs), so queries would not match the documents. {REBUILD}"
                )
            self._embedder = OnnxEmbedder(export_dir, dim=self.meta["dimension"])
        return self._embedder

    def serve(self, export_dir) -> None:
        """Embed queries with another export from now on (recorded in meta.json), as a Vespa redeploy of a new
        query tower: allowed only where its documents embed as this index's did (``Manifest.document_side``),
        so not one document is re-embedded; refused otherwise."""
        export_dir = Path(export_dir).resolve()
        side = Manifest.load(export_dir).document_side()
        if side != self.meta.get("document_side"):
            raise BadIndexError(
                f"{self.path}: {export_dir} embeds documents otherwise than the export this index was "
                f"built with ({self.meta['export_dir']}), so every document would need embedding again. "
                f"Build a new index for it; only an export with the same document tower (a new query "
                f"tower: `siamese train --tower query`) can be served over this one."
            )
        self.meta.update(export_dir=str(export_dir), manifest_sha256=sha256(export_dir / MANIFEST))
        self._embedder = None
        self._write_meta()

    def _write_meta(self) -> None:
        tmp = self.path / f"meta.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(self.meta, indent=2))
        tmp.replace(self.path / "meta.json")

    @property
    def colbert_embedder(self) -> OnnxTokenEmbedder:
        """The late-interaction export the documents' token vectors came from; refused if it changed since."""
        info = self.meta.get("colbert")
        if not info:
            raise ConfigError(
                f"{self.path}: built without a late-interaction export, so the MaxSim profiles have "
                "no token vectors. Build one with them: `siamese run --colbert COLBERT_MODEL ...` (a model "
                "from `siamese train --late-interaction`)."
            )
        if self._colbert_embedder is None:
            export_dir = Path(info["export_dir"])
            if (
                not (export_dir / MANIFEST).exists()
                or sha256(export_dir / MANIFEST) != info["manifest_sha256"]
            ):
                raise BadIndexError(
                    f"{self.path}: its late-interaction export {export_dir} is gone or was re-written "
                    f"after the index was built. {REBUILD}"
                )
            self._colbert_embedder = OnnxTokenEmbedder(export_dir)
        return self._colbert_embedder

    def _colbert_arrays(self):
        if not hasattr(self, "_colbert"):
            self._colbert = read_colbert(self.path)
        return self._colbert

    def doc_tokens(self, position: int) -> np.ndarray:
        """A document's token vectors as MaxSim reads them: 0/1
        from the packed bits (int8 cells), or float."""
        bounds, tokens, bits = self._colbert_arrays()
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

    def check_corpus(self, docs) -> None:
        """Refuse to stand for a corpus it was not built from (evaluation would score every query 0)."""
        docs = list(docs)
        if corpus_fingerprint(docs) != self.meta["corpus_sha256"]:
            raise BadIndexError(
                f"{self.path}: built from another corpus ({self.meta['count']} documents; this one "
                f"has {len(docs)}, or the same ones changed or in another order). Evaluate with the "
                f"corpus it was built from, or build an index for this one. {REBUILD}"
            )

    @classmethod
    def build(
        cls,
        path,
        export_dir,
        docs: list[Doc],
        *,
        connectivity: int = HNSW_MAX_LINKS,
        expansion_add: int = HNSW_EXPLORE_AT_INSERT,
        expansion_search: int = HNSW_EXPLORE_AT_SEARCH,
        embeddings: np.ndarray | None = None,
        progress: bool = True,
        force: bool = False,
        chunker=None,
        dim: int | None = None,
        colbert_dir=None,
        colbert_cells: str = "int8",
        bm25_weight: float = BM25_WEIGHT,
        documents=None,
    ) -> EmbeddedIndex:
        path, export_dir = Path(path), Path(export_dir).resolve()
        colbert_dir = Path(colbert_dir).resolve() if colbert_dir else None
        check_output(path, "index", force, inputs=[export_dir])
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise ConfigError("document ids must be unique")
        embedder = OnnxEmbedder(
            export_dir, dim=dim
        )  # dim: a Matryoshka prefix, cut then normalised as Vespa does
        chunks = None
        if chunker:
            chunks = [(p, c) for p, d in enumerate(docs) for c in chunker.passage_chunks(d.title, d.text)]
        started = time.time()
        side = embedder.manifest.document_side()
        if embeddings is None:  # kept by the document side: an export with another query tower embeds nothing
            texts = [c for _, c in chunks] if chunks else [d.passage for d in docs]
            # ``documents``: (cache key, passage embed) of vectors
            # known equal to the export's (a frozen tower's)
            key, embed = documents or (
                f"onnx documents {side} @{embedder.dim}",
                lambda t: embedder.embed(t, "passage", progress=progress),
            )
            embeddings = cached_vectors(key, texts, lambda: embed(texts))
        embed_s = time.time() - started
        started = time.time()
        hnsw = _hnsw(embedder.dim, connectivity, expansion_add, expansion_search)
        hnsw.add(normalize(embeddings))
        bm25 = BM25([d.passage for d in docs])
        tokens, colbert = (
            _colbert_tokens(colbert_dir, colbert_cells, docs, progress) if colbert_dir else (None, None)
        )
        meta = {
            "export_dir": str(export_dir),
            "manifest_sha256": sha256(export_dir / MANIFEST),
            "document_side": side,
            "dimension": embedder.dim,
            "count": len(docs),
            "corpus_sha256": corpus_fingerprint(docs),
            "connectivity": connectivity,
            "expansion_add": expansion_add,
            "expansion_search": expansion_search,
            "embed_seconds": round(embed_s, 1),
            "index_seconds": round(time.time() - started, 2),
            "vectors": len(embeddings),
            "chunking": chunker.spec() if chunker else None,
            "colbert": colbert,
            "bm25_weight": bm25_weight,
        }

        atomic_dir(
            path,
            lambda tmp: write_index(tmp, meta, docs, embeddings, hnsw, bm25, tokens, chunks),
            "index",
            replace=force,
            inputs=[export_dir] + ([colbert_dir] if colbert_dir else []),
        )
        return cls(path, docs, embeddings, hnsw, bm25, meta, embedder, chunks)

    @classmethod
    def open(cls, path) -> EmbeddedIndex:
        """Open an index, checking every file against meta.json: a truncated, extended, reordered or otherwise
        damaged index is refused with one line that says how to rebuild it."""
        path = Path(path)
        meta, docs, embeddings, hnsw, bm25, chunks = read_index(path)
        return cls(path, docs, embeddings, hnsw, bm25, meta, chunks=chunks)

    # ------------------------------------------------------------ what the profiles score with

    def embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed_one(text, "query")

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
            self.hnsw.hnsw.efSearch = max(self.meta["expansion_search"], n)
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
        self, text: str, profile: str = "semantic", hits: int = 10, target_hits: int = TARGET_HITS
    ) -> list[Hit]:
        """The rank profile's embedded twin (``profiles.PROFILES``);
        only profiles with query inputs embed the text."""
        k = hits if profile == "bm25" else max(hits, target_hits)
        chosen = profiles.get(profile)
        idx, scores = chosen.rank(self, text, k)
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
