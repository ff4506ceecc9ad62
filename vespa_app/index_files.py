"""The embedded index on disk: what ``EmbeddedIndex.build``
writes, and what ``EmbeddedIndex.open`` reads back,
every file checked against meta.json::

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
from pathlib import Path

import faiss
import numpy as np

from common.bm25 import BM25
from common.data import Doc, corpus_fingerprint
from common.errors import UserError
from common.vectors import pack_bits


class BadIndexError(UserError):
    """An index directory that is damaged, or does not belong to the corpus or export it is used with."""


REBUILD = "Rebuild it: delete the directory and re-run `siamese run` (or EmbeddedIndex.build)."
META_KEYS = (
    "export_dir",
    "manifest_sha256",
    "dimension",
    "count",
    "corpus_sha256",
    "connectivity",
    "expansion_add",
    "expansion_search",
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
    hnsw.hnsw.efSearch = meta["expansion_search"]
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
