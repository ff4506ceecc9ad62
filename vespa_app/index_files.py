"""The embedded index on disk (``IndexFiles``): built and written from an export and a corpus, read back with
every file checked against meta.json, and the checks that keep it true to the export and corpus it is used
with. Searching it is ``vespa_app/embedded.py``'s::

    meta.json        export dir and its manifest's hash, dimension, HNSW settings, document count and the
                     corpus fingerprint (opening checks every file against them)
    docs.jsonl       id, title, text
    embeddings.npy   float32 document vectors (exact search and re-indexing need no model)
    hnsw.faiss       the HNSW graph
    bm25/            the BM25 index
    chunks.jsonl     chunked indexes only: each chunk's document and text, in embeddings.npy's order
    colbert/         with a late-interaction export: every document's token vectors (tokens.npy, float16),
                     their packed sign bits (bits.npy) and where each document's rows start (bounds.npy)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np

from common.atomic import atomic_dir, check_output
from common.bm25 import BM25
from common.data import Doc, corpus_fingerprint
from common.errors import ConfigError, UserError
from common.vectors import cached_vectors, normalize, pack_bits
from exporter.manifest import MANIFEST, Manifest, sha256
from exporter.runtime import OnnxEmbedder, OnnxTokenEmbedder
from vespa_app.hnsw import HnswSettings, for_corpus
from vespa_app.serving import BM25_WEIGHT


class BadIndexError(UserError):
    """An index directory that is damaged, or does not belong to the corpus or export it is used with."""


REBUILD = "Rebuild it: delete the directory and re-run `siamese run` (or EmbeddedIndex.build)."
NO_TOKENS = (
    "built without a late-interaction export, so the MaxSim profiles have no token vectors. Build one with "
    "them: `siamese run --colbert COLBERT_MODEL ...` (a model from `siamese train --late-interaction`)."
)
META_KEYS = (
    "export_dir",
    "manifest_sha256",
    "dimension",
    "count",
    "corpus_sha256",
    "hnsw",
)


def write_index(
    tmp: Path,
    meta: dict,
    docs: list[Doc],
    embeddings: np.ndarray,
    hnsw,
    bm25: BM25,
    tokens: list | None,
    chunks: list[tuple[int, str]] | None,
) -> None:
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    with open(tmp / "docs.jsonl", "w") as fh:
        for d in docs:
            fh.write(json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n")
    np.save(tmp / "embeddings.npy", embeddings)
    faiss.write_index(hnsw, str(tmp / "hnsw.faiss"))
    bm25.save(tmp / "bm25")
    if tokens is not None:
        (tmp / "colbert").mkdir()
        flat = np.concatenate(tokens)
        np.save(tmp / "colbert" / "bounds.npy", np.cumsum([0] + [len(t) for t in tokens]))
        np.save(tmp / "colbert" / "tokens.npy", flat.astype(np.float16))
        np.save(tmp / "colbert" / "bits.npy", pack_bits(flat))  # from float32, as Vespa packs
    if chunks:
        with open(tmp / "chunks.jsonl", "w") as fh:
            for doc, text in chunks:
                fh.write(json.dumps({"doc": doc, "text": text}) + "\n")


def read_colbert(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(where each document's rows start, the token vectors memory-mapped, their packed bits)."""
    folder = path / "colbert"
    return (
        np.load(folder / "bounds.npy"),
        np.load(folder / "tokens.npy", mmap_mode="r"),
        np.load(folder / "bits.npy"),
    )


def read_index(path: Path):
    """(meta, docs, embeddings, hnsw, bm25, chunks), or BadIndexError naming the file that disagrees."""
    if not (path / "meta.json").exists():
        raise BadIndexError(f"{path}: not an index (no meta.json). Build one with `siamese run`.")

    def corrupt(what: str):
        return BadIndexError(f"{path}: {what}. {REBUILD}")

    meta = _read_meta(path, corrupt)
    docs = _read_docs(path, meta, corrupt)
    try:
        embeddings = np.load(path / "embeddings.npy")
        hnsw = faiss.read_index(str(path / "hnsw.faiss"))
        bm25 = BM25.load(path / "bm25")
    except Exception as e:  # numpy, faiss and bm25s each fail their own way on a damaged file
        raise corrupt(f"a file is unreadable ({e.__class__.__name__}: {str(e)[:200]})") from None
    chunks = _read_chunks(path, len(docs), corrupt) if meta.get("chunking") else None
    vectors = meta.get("vectors", meta["count"])
    sizes = {
        "embeddings.npy": (embeddings.shape[0], vectors),
        "hnsw.faiss": (hnsw.ntotal, vectors),
        "bm25": (bm25.size, meta["count"]),
        "chunks.jsonl": (len(chunks) if chunks else vectors, vectors),
    }
    wrong = {name: n for name, (n, want) in sizes.items() if n != want}
    if wrong or embeddings.ndim != 2 or embeddings.shape[1] != meta["dimension"]:
        raise corrupt(
            f"files disagree with meta.json's {meta['count']} documents ({vectors} vectors) of "
            f"dimension {meta['dimension']}: {wrong or {'embeddings.npy': embeddings.shape}}"
        )
    try:
        HnswSettings.from_record(meta["hnsw"])
    except (TypeError, ConfigError) as e:
        raise corrupt(f"meta.json's HNSW settings are not readable ({str(e)[:200]})") from None
    if meta.get("colbert"):
        _check_colbert(path, meta, len(docs), corrupt)
    return meta, docs, embeddings, hnsw, bm25, chunks


def _read_meta(path: Path, corrupt) -> dict:
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, ValueError) as e:
        raise corrupt(f"meta.json is unreadable ({e})") from None
    missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise corrupt(f"meta.json lacks {', '.join(missing)} (written by an older version, or damaged)")
    return meta


def _read_docs(path: Path, meta: dict, corrupt) -> list[Doc]:
    docs, number = [], 0
    try:
        lines = (path / "docs.jsonl").read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):  # noqa: B007 (number: the line the error names)
            record = json.loads(line)
            docs.append(Doc(str(record["id"]), str(record["title"]), str(record["text"])))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise corrupt(f"docs.jsonl is damaged at line {number} ({e.__class__.__name__}: {e})") from None
    if len(docs) != meta["count"]:
        raise corrupt(
            f"docs.jsonl holds {len(docs)} documents, meta.json says {meta['count']} (truncated or extended)"
        )
    if corpus_fingerprint(docs) != meta["corpus_sha256"]:
        raise corrupt("docs.jsonl differs from what was indexed (documents changed or reordered)")
    return docs


def _read_chunks(path: Path, n_docs: int, corrupt) -> list[tuple[int, str]]:
    try:
        chunks = [
            (int(r["doc"]), str(r["text"]))
            for r in map(json.loads, (path / "chunks.jsonl").read_text(encoding="utf-8").splitlines())
        ]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise corrupt(f"chunks.jsonl is damaged ({e.__class__.__name__}: {e})") from None
    owners = [doc for doc, _ in chunks]
    if owners != sorted(owners) or set(owners) != set(range(n_docs)):
        raise corrupt("chunks.jsonl does not give every document its chunks, in order")
    return chunks


def _check_colbert(path: Path, meta: dict, n_docs: int, corrupt) -> None:
    try:
        bounds, tokens, bits = read_colbert(path)
    except Exception as e:
        raise corrupt(f"colbert/ is unreadable ({e.__class__.__name__}: {str(e)[:200]})") from None
    want = meta["colbert"]["tokens"]
    if len(bounds) != n_docs + 1 or bounds[-1] != want or len(tokens) != want or len(bits) != want:
        raise corrupt(f"colbert/ disagrees with meta.json's {n_docs} documents and {want} token vectors")


def _hnsw(dim: int, settings: HnswSettings):
    # Inner product over unit vectors is cosine similarity. efSearch is set by each search (EmbeddedIndex).
    index = faiss.IndexHNSWFlat(dim, settings.max_links, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = settings.explore_at_insert
    return index


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


@dataclass
class IndexFiles:
    """An index directory as searching reads it: its documents, their vectors, the HNSW graph, BM25, a chunked
    index's chunks and meta.json; every file checked against meta.json when read (``read``), every export it
    serves checked against the one it was built with (``embedder``, ``serve``)."""

    path: Path
    meta: dict
    docs: list[Doc]
    embeddings: np.ndarray
    hnsw: object  # faiss.IndexHNSWFlat
    bm25: BM25
    chunks: list[tuple[int, str]] | None = None
    _colbert: tuple | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        path,
        export_dir,
        docs: list[Doc],
        *,
        hnsw: HnswSettings | None = None,
        embeddings: np.ndarray | None = None,
        progress: bool = True,
        force: bool = False,
        chunker=None,
        dim: int | None = None,
        colbert_dir=None,
        colbert_cells: str = "int8",
        bm25_weight: float = BM25_WEIGHT,
        documents=None,
    ) -> tuple[IndexFiles, OnnxEmbedder]:
        """Embed ``docs`` with the export (cached by its document side: an export with another query tower
        embeds nothing; ``documents``: (cache key, passage embed) of vectors known equal to the export's, a
        frozen tower's), build HNSW and BM25 over them and write the directory atomically; returns the index
        and the export's embedder (``dim``: a Matryoshka prefix, cut then normalised as Vespa does; ``hnsw``:
        its settings, by default chosen for the number of vectors as the package's are)."""
        path, export_dir = Path(path), Path(export_dir).resolve()
        colbert_dir = Path(colbert_dir).resolve() if colbert_dir else None
        check_output(path, "index", force, inputs=[export_dir])
        ids = [d.id for d in docs]
        if len(set(ids)) != len(ids):
            raise ConfigError("document ids must be unique")
        embedder = OnnxEmbedder(export_dir, dim=dim)
        chunks = None
        if chunker:
            chunks = [(p, c) for p, d in enumerate(docs) for c in chunker.passage_chunks(d.title, d.text)]
        started = time.time()
        side = embedder.manifest.document_side()
        if embeddings is None:
            texts = [c for _, c in chunks] if chunks else [d.passage for d in docs]
            key, embed = documents or (
                f"onnx documents {side} @{embedder.dim}",
                lambda t: embedder.embed(t, "passage", progress=progress),
            )
            embeddings = cached_vectors(key, texts, lambda: embed(texts))
        embed_s = time.time() - started
        started = time.time()
        settings = hnsw or for_corpus(len(embeddings))
        hnsw = _hnsw(embedder.dim, settings)
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
            "hnsw": settings.record(),
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
        return cls(path, meta, docs, embeddings, hnsw, bm25, chunks), embedder

    @classmethod
    def read(cls, path) -> IndexFiles:
        """Open an index, checking every file against meta.json: a truncated, extended, reordered or otherwise
        damaged index is refused with one line that says how to rebuild it."""
        path = Path(path)
        meta, docs, embeddings, hnsw, bm25, chunks = read_index(path)
        return cls(path, meta, docs, embeddings, hnsw, bm25, chunks)

    def write_meta(self) -> None:
        tmp = self.path / f"meta.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(self.meta, indent=2))
        tmp.replace(self.path / "meta.json")

    def embedder(self) -> OnnxEmbedder:
        """The export the documents were embedded with; refused if it is gone or changed since."""
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
        return OnnxEmbedder(export_dir, dim=self.meta["dimension"])

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
        self.write_meta()

    def set_bm25_weight(self, weight: float) -> None:
        """Record the weight the package is built with (chosen after the index, on its vectors)."""
        self.meta["bm25_weight"] = float(weight)
        self.write_meta()

    def colbert_embedder(self) -> OnnxTokenEmbedder:
        """The late-interaction export the documents' token vectors came from; refused if it changed since."""
        info = self.meta.get("colbert")
        if not info:
            raise ConfigError(f"{self.path}: {NO_TOKENS}")
        export_dir = Path(info["export_dir"])
        if not (export_dir / MANIFEST).exists() or sha256(export_dir / MANIFEST) != info["manifest_sha256"]:
            raise BadIndexError(
                f"{self.path}: its late-interaction export {export_dir} is gone or was re-written "
                f"after the index was built. {REBUILD}"
            )
        return OnnxTokenEmbedder(export_dir)

    def colbert(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(where each document's token rows start, the token vectors, their packed bits), read once."""
        if self._colbert is None:
            self._colbert = read_colbert(self.path)
        return self._colbert

    def check_corpus(self, docs) -> None:
        """Refuse to stand for a corpus it was not built from (evaluation would score every query 0)."""
        docs = list(docs)
        if corpus_fingerprint(docs) != self.meta["corpus_sha256"]:
            raise BadIndexError(
                f"{self.path}: built from another corpus ({self.meta['count']} documents; this one "
                f"has {len(docs)}, or the same ones changed or in another order). Evaluate with the "
                f"corpus it was built from, or build an index for this one. {REBUILD}"
            )
