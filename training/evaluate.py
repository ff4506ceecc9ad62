"""Does fine-tuning help? Exact-search retrieval metrics on a BEIR folder and Spearman on STS pairs,
for several models side by side, with a BM25 baseline."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from .bm25 import BM25
from .data import Beir, Doc, read_beir, read_sts_csv
from .encoder import Encoder
from .metrics import Run, score_run, spearman

METRICS = ("ndcg@10", "recall@100", "mrr@10")


def limit_queries(beir: Beir, n: int | None) -> Beir:
    """The first ``n`` judged queries (in file order), for quick runs; the corpus stays whole."""
    if not n:
        return beir
    keep = list(beir.qrels)[:n]
    return Beir(beir.corpus, {q: beir.queries[q] for q in keep}, {q: beir.qrels[q] for q in keep})


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise indices and values of the k largest scores, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def exact_search(queries: np.ndarray, docs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity by brute force: the ground truth that HNSW is measured against."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True).clip(1e-12)
    d = docs / np.linalg.norm(docs, axis=1, keepdims=True).clip(1e-12)
    return top_k(q @ d.T, k)


def to_run(qids: list[str], doc_ids: list[str], idx: np.ndarray, scores: np.ndarray) -> Run:
    return {q: [(doc_ids[j], float(s)) for j, s in zip(row_i, row_s)] for q, row_i, row_s in zip(qids, idx, scores)}


def dense_run(encoder: Encoder, corpus: dict[str, Doc], queries: dict[str, str], k: int = 100,
              progress: bool = True) -> Run:
    doc_ids = list(corpus)
    docs = encoder.encode([corpus[d].passage for d in doc_ids], "passage", progress=progress)
    qids = list(queries)
    idx, scores = exact_search(encoder.encode([queries[q] for q in qids], "query"), docs, k)
    return to_run(qids, doc_ids, idx, scores)


def bm25_run(corpus: dict[str, Doc], queries: dict[str, str], k: int = 100) -> Run:
    doc_ids = list(corpus)
    qids = list(queries)
    idx, scores = BM25([corpus[d].passage for d in doc_ids]).search([queries[q] for q in qids], k)
    return to_run(qids, doc_ids, idx, scores)


def sts_score(encoder: Encoder, rows) -> float:
    """Spearman between cosine similarity and the gold scores; both sides embedded as queries (symmetric task)."""
    a = encoder.encode([r[0] for r in rows], "query")
    b = encoder.encode([r[1] for r in rows], "query")
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-12)
    return spearman(cos, [r[2] for r in rows])


def during_training(data, split: str = "test", n_queries: int = 50, pool_depth: int = 50):
    """An evaluation cheap enough to run every few hundred steps: nDCG@10 / MRR@10 on ``n_queries`` queries,
    ranking only a candidate pool (BM25's top ``pool_depth`` per query plus the judged documents) instead of
    the whole corpus. The figures track progress; they are not comparable with full-corpus ones."""
    beir = limit_queries(read_beir(data, split), n_queries)
    qids = list(beir.queries)
    pool = {d for q in qids for d in beir.qrels[q]}
    for row in bm25_run(beir.corpus, beir.queries, pool_depth).values():
        pool |= {d for d, _ in row}
    corpus = {d: beir.corpus[d] for d in pool}

    def eval_fn(encoder) -> dict:
        scores = score_run(dense_run(encoder, corpus, beir.queries, progress=False), beir.qrels)
        return {"pool_ndcg@10": scores["ndcg@10"], "pool_mrr@10": scores["mrr@10"]}

    return eval_fn


def evaluate(models: list[str], data=None, split: str = "test", bm25: bool = True, sts=None,
             limit: int | None = None, progress: bool = True, max_length: int | None = None) -> list[dict]:
    """One row per system: {'name', 'ndcg@10', 'recall@100', 'mrr@10', 'sts_spearman', 'seconds'}."""
    beir = limit_queries(read_beir(data, split), limit) if data else None
    sts_rows = read_sts_csv(sts) if sts else None
    rows = []
    if beir and bm25:
        started = time.time()
        rows.append({"name": "BM25", **score_run(bm25_run(beir.corpus, beir.queries), beir.qrels),
                     "seconds": round(time.time() - started, 1)})
    for model in models:
        started = time.time()
        encoder = Encoder.load(model, max_length=max_length)
        row = {"name": model_label(model)}
        if beir:
            row.update(score_run(dense_run(encoder, beir.corpus, beir.queries, progress=progress), beir.qrels))
        if sts_rows:
            row["sts_spearman"] = sts_score(encoder, sts_rows)
        row["seconds"] = round(time.time() - started, 1)
        rows.append(row)
    return rows


def model_label(path) -> str:
    from .encoder import default_base_model

    path = Path(path)
    if path.resolve() == default_base_model().resolve():
        return "all-MiniLM-L6-v2"
    return path.parent.name if path.name == "model" else path.name


def format_table(rows: list[dict]) -> str:
    """A Markdown table; columns are the metrics any row has."""
    cols = [c for c in (*METRICS, "sts_spearman") if any(c in r for r in rows)]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = [f"{r[c]:.4f}" if c in r else "–" for c in cols]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(rows: list[dict], path) -> None:
    Path(path).write_text(json.dumps(rows, indent=2))
