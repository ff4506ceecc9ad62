"""The embedded backend: the Vespa schema's profiles (``profiles.py``) on this machine, from maintained
libraries.

HNSW from faiss (cosine, the same M / ef-construction knobs as the Vespa schema), BM25 from bm25s,
packed sign bits with exact hamming search for the ``binary`` profile, and the exported ONNX model
embedding documents and queries as Vespa's embedder does. Persisted to a directory; reopening it needs
no re-embedding::

    meta.json        export dir and its manifest's hash, dimension, HNSW settings, document count and the
                     corpus fingerprint (opening checks every file against them)
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
from common.data import Doc, corpus_fingerprint
from common.errors import ConfigError, UserError
from common.vectors import exact_search, normalize
from exporter.manifest import MANIFEST, sha256
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


class BadIndexError(UserError):
    """An index directory that is damaged, or does not belong to the corpus or export it is used with."""


REBUILD = "Rebuild it: delete the directory and re-run `siamese run` (or EmbeddedIndex.build)."
META_KEYS = ("export_dir", "manifest_sha256", "dimension", "count", "corpus_sha256", "connectivity",
             "expansion_add", "expansion_search")


class EmbeddedIndex:
    def __init__(self, path, docs: list[Doc], embeddings: np.ndarray, hnsw, bm25: BM25, meta: dict,
                 embedder: OnnxEmbedder | None = None):
        self.path, self.docs, self.embeddings, self.hnsw, self.bm25, self.meta = path, docs, embeddings, hnsw, bm25, meta
        self._embedder = embedder
        self._binary = None

    @property
    def embedder(self) -> OnnxEmbedder:
        """The export the documents were embedded with; refused if it changed since."""
        if self._embedder is None:
            export_dir = Path(self.meta["export_dir"])
            manifest = export_dir / MANIFEST
            if not manifest.exists():
                raise BadIndexError(f"{self.path}: its export {export_dir} is gone, so queries cannot be embedded "
                                    f"as its documents were. {REBUILD}")
            if sha256(manifest) != self.meta["manifest_sha256"]:
                raise BadIndexError(f"{self.path}: the export {export_dir} was re-written after this index was built "
                                    f"(its manifest differs), so queries would not match the documents. {REBUILD}")
            self._embedder = OnnxEmbedder(export_dir)
        return self._embedder

    def check_corpus(self, docs) -> None:
        """Refuse to stand for a corpus it was not built from (evaluation would score every query 0)."""
        docs = list(docs)
        if corpus_fingerprint(docs) != self.meta["corpus_sha256"]:
            raise BadIndexError(f"{self.path}: built from another corpus ({self.meta['count']} documents; this one "
                                f"has {len(docs)}, or the same ones changed or in another order). Evaluate with the "
                                f"corpus it was built from, or build an index for this one. {REBUILD}")

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
        meta = {"export_dir": str(export_dir), "manifest_sha256": sha256(export_dir / MANIFEST),
                "dimension": embedder.dim, "count": len(docs), "corpus_sha256": corpus_fingerprint(docs),
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
        """Open an index, checking every file against meta.json: a truncated, extended, reordered or otherwise
        damaged index is refused with one line that says how to rebuild it."""
        path = Path(path)
        if not (path / "meta.json").exists():
            raise BadIndexError(f"{path}: not an index (no meta.json). Build one with `siamese run`.")

        def corrupt(what: str):
            return BadIndexError(f"{path}: {what}. {REBUILD}")

        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, ValueError) as e:
            raise corrupt(f"meta.json is unreadable ({e})") from None
        missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
        if missing:
            raise corrupt(f"meta.json lacks {', '.join(missing)} (written by an older version, or damaged)")
        docs, number = [], 0
        try:
            for number, line in enumerate((path / "docs.jsonl").read_text(encoding="utf-8").splitlines(), 1):
                record = json.loads(line)
                docs.append(Doc(str(record["id"]), str(record["title"]), str(record["text"])))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise corrupt(f"docs.jsonl is damaged at line {number} ({e.__class__.__name__}: {e})") from None
        if len(docs) != meta["count"]:
            raise corrupt(f"docs.jsonl holds {len(docs)} documents, meta.json says {meta['count']} (truncated or "
                          "extended)")
        if corpus_fingerprint(docs) != meta["corpus_sha256"]:
            raise corrupt("docs.jsonl differs from what was indexed (documents changed or reordered)")
        try:
            embeddings = np.load(path / "embeddings.npy")
            hnsw = faiss.read_index(str(path / "hnsw.faiss"))
            bm25 = BM25.load(path / "bm25")
        except Exception as e:  # numpy, faiss and bm25s each fail their own way on a damaged file
            raise corrupt(f"a file is unreadable ({e.__class__.__name__}: {str(e)[:200]})") from None
        sizes = {"embeddings.npy": embeddings.shape[0], "hnsw.faiss": hnsw.ntotal, "bm25": bm25.size}
        wrong = {name: n for name, n in sizes.items() if n != meta["count"]}
        if wrong or embeddings.ndim != 2 or embeddings.shape[1] != meta["dimension"]:
            raise corrupt(f"files disagree with meta.json's {meta['count']} documents of dimension "
                          f"{meta['dimension']}: {wrong or {'embeddings.npy': embeddings.shape}}")
        hnsw.hnsw.efSearch = meta["expansion_search"]
        return cls(path, docs, embeddings, hnsw, bm25, meta)

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
