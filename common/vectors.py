"""Vector math shared by every stage, and the one "embed → exact search → score" evaluation step.

An *embed function* is ``embed(texts, kind) -> (N, D) float32`` with kind ``"query"`` or ``"passage"``:
the PyTorch encoder's ``encode`` and the ONNX runtime's ``embed`` both are one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .data import Beir
from .metrics import Run, score_run
from .poolings import CHUNK_POOLINGS

EmbedFn = Callable[[list[str], str], np.ndarray]


def normalize(x: np.ndarray) -> np.ndarray:
    """Unit length along the last axis (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12, None)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped arrays."""
    return (normalize(a) * normalize(b)).sum(-1)


def pack_bits(vectors: np.ndarray) -> np.ndarray:
    """Vespa's binarization into an int8 field: one bit per dimension, 1 where the value is > 0, first
    dimension in the highest bit (as uint8; ``.view(np.int8)`` gives Vespa's cell values)."""
    return np.packbits(np.asarray(vectors) > 0, axis=-1)


def unpack_bits(packed: np.ndarray) -> np.ndarray:
    """Vespa's unpack_bits(t) (big-endian, the default): each int8 cell → 8 cells of 0.0 or 1.0."""
    return np.unpackbits(np.asarray(packed).view(np.uint8), axis=-1).astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise indices and values of the k largest scores, best first; equal scores go to the lower index.

    numpy's partition and sort break ties by whatever SIMD kernel the CPU runs (AVX-512 or not), so a ranking
    with ties (BM25's scores, duplicate documents' vectors) came out in another order on another machine: the
    same run scored the MedQuAD guard's BM25 0.7987 on one CPU and 0.8006 on another. Here every row is
    ranked by (score descending, index ascending): the same on any machine."""
    scores = np.asarray(scores)
    rows, n = scores.shape
    k = min(k, n)
    idx, vals = np.empty((rows, k), dtype=np.int64), np.empty((rows, k), dtype=scores.dtype)
    if k == 0:
        return idx, vals
    kth = np.partition(scores, n - k, axis=1)[:, n - k]  # each row's k-th largest value: ties decided below
    for r in range(rows):
        row = scores[r]
        above = np.flatnonzero(row > kth[r])
        tied = np.flatnonzero(row == kth[r])[: k - len(above)]
        chosen = np.concatenate([above, tied])
        order = np.lexsort((chosen, -row[chosen]))  # the last key sorts first: score, then index
        idx[r], vals[r] = chosen[order], row[chosen][order]
    return idx, vals


def exact_search(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity by brute force: the ground truth that HNSW is measured against."""
    return top_k(normalize(queries) @ normalize(docs).T, k)


def to_run(qids: list[str], doc_ids: list[str], idx: np.ndarray, scores: np.ndarray) -> Run:
    return {
        q: [(doc_ids[j], float(s)) for j, s in zip(row_i, row_s)]
        for q, row_i, row_s in zip(qids, idx, scores)
    }


def dense_run(
    embed: EmbedFn,
    beir: Beir,
    k: int = 100,
    doc_vectors: np.ndarray | None = None,
    doc_ids: list[str] | None = None,
    cache: str | None = None,
) -> Run:
    """Embed the corpus (unless its vectors are given, in ``doc_ids`` order) and the queries, search exactly.
    ``cache``: a key naming the model; its corpus vectors are kept on disk and reused (``cached_vectors``)."""
    doc_ids = doc_ids or list(beir.corpus)
    if doc_vectors is None:
        texts = [beir.corpus[d].passage for d in doc_ids]
        doc_vectors = (
            cached_vectors(cache, texts, lambda: embed(texts, "passage"))
            if cache
            else embed(texts, "passage")
        )
    qids = list(beir.queries)
    return to_run(
        qids, doc_ids, *exact_search(embed([beir.queries[q] for q in qids], "query"), doc_vectors, k)
    )


def prefix_embed(embed: EmbedFn, dim: int, cache: str | None = None) -> EmbedFn:
    """``embed`` keeping only the first ``dim`` dimensions, normalised after the cut: a Matryoshka prefix, as
    Vespa's embedder fills a smaller tensor. Passages' full vectors are cached under ``cache`` (the key
    ``dense_run`` uses), so every prefix of one model reuses one embedding of the corpus."""

    def cut(texts: list[str], kind: str) -> np.ndarray:
        full = (
            cached_vectors(cache, texts, lambda: embed(texts, kind))
            if cache and kind == "passage"
            else embed(texts, kind)
        )
        return normalize(full[:, :dim])

    return cut


def chunk_scores(sims: np.ndarray, owners: np.ndarray, pooling: str = "best") -> np.ndarray:
    """(queries, chunks) similarities → (queries, documents) scores; ``owners[i]`` is chunk i's document
    position, and each document's chunks are contiguous."""
    if pooling not in CHUNK_POOLINGS:
        raise ValueError(f"chunk pooling {pooling!r}: choose one of {', '.join(CHUNK_POOLINGS)}")
    bounds = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1], True])
    scores = np.empty((sims.shape[0], len(bounds) - 1), dtype=np.float32)
    for d, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        block = sims[:, a:b]
        scores[:, d] = block.max(1) if pooling == "best" else np.sort(block, axis=1)[:, -2:].mean(1)
    return scores


def chunked_dense_run(
    embed: EmbedFn,
    beir: Beir,
    chunker,
    pooling: str = "best",
    k: int = 100,
    cache: str | None = None,
    vectors: np.ndarray | None = None,
) -> Run:
    """As ``dense_run``, with each document embedded as its chunks (``common.chunking.Chunker``) and scored by
    its best chunk (or the mean of its best two). ``vectors``: the chunks' vectors when they are at hand (an
    index built with the same chunker), in corpus order."""
    doc_ids = list(beir.corpus)
    owners, texts = [], []
    for position, doc_id in enumerate(doc_ids):
        doc = beir.corpus[doc_id]
        for chunk in chunker.passage_chunks(doc.title, doc.text):
            owners.append(position)
            texts.append(chunk)
    if vectors is not None and len(vectors) != len(texts):
        raise ValueError(
            f"{len(vectors)} vectors for {len(texts)} chunks: built with another chunker or corpus"
        )
    if vectors is None:
        vectors = (
            cached_vectors(cache, texts, lambda: embed(texts, "passage"))
            if cache
            else embed(texts, "passage")
        )
    qids = list(beir.queries)
    sims = normalize(embed([beir.queries[q] for q in qids], "query")) @ normalize(vectors).T
    return to_run(qids, doc_ids, *top_k(chunk_scores(sims, np.asarray(owners), pooling), k))


def dense_scores(embed: EmbedFn, beir: Beir, **kw) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 of exact search with ``embed``."""
    return score_run(dense_run(embed, beir, **kw), beir.qrels)


def rrf_run(*runs: Run, k: int = 100, constant: int = 60) -> Run:
    """Reciprocal rank fusion of exact runs, as Vespa's reciprocal_rank_fusion: Σ 1 / (60 + rank)."""
    fused: Run = {}
    for qid in runs[0]:
        scores: dict[str, float] = {}
        for run in runs:
            for rank, (doc, _) in enumerate(run.get(qid, []), 1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (constant + rank)
        fused[qid] = sorted(scores.items(), key=lambda item: -item[1])[:k]
    return fused


def cache_dir() -> Path:
    return Path(os.environ.get("SIAMESE_CACHE", Path.home() / ".cache" / "siamese-vespa")) / "vectors"


def cache_file(key: str, texts: list[str]) -> Path:
    """Where ``cached_vectors`` keeps the vectors of ``texts`` under ``key``."""
    import hashlib

    digest = hashlib.sha256(key.encode())
    for t in texts:
        digest.update(t.encode() + b"\0")
    return cache_dir() / f"{digest.hexdigest()[:32]}.npy"


def cached(key: str, texts: list[str], path: Path | None = None) -> np.ndarray | None:
    """The cached vectors of ``texts`` under ``key`` (kept in ``path``: ``cache_file``), or None."""
    path = path or cache_file(key, texts)
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    return None


def cached_vectors(key: str, texts: list[str], compute) -> np.ndarray:
    """Vectors of ``texts`` under the model named ``key``, computed once and kept on disk: the base model's
    vectors of the guard corpora do not change from run to run."""
    path = cache_file(key, texts)
    vectors = cached(key, texts, path)
    if vectors is not None:
        return vectors
    vectors = np.asarray(compute(), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}.npy")
    np.save(tmp, vectors)
    tmp.rename(path)
    return vectors
