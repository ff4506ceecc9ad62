"""Does fine-tuning help? Exact-search retrieval metrics on a BEIR folder and Spearman on STS pairs,
for several models side by side, with a BM25 baseline."""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from common.data import Beir, Doc, limit_queries, read_beir
from common.metrics import Run, score_run, spearman
from common.vectors import cosine, dense_run, to_run

from .bm25 import BM25
from .encoder import Encoder
from .model_dir import default_base_model


def embed_fn(encoder: Encoder, progress: bool = False):
    """The encoder as an embed function ``(texts, kind) -> vectors`` (see ``common.vectors``)."""
    return partial(encoder.encode, progress=progress)


def bm25_run(corpus: dict[str, Doc], queries: dict[str, str], k: int = 100) -> Run:
    doc_ids = list(corpus)
    qids = list(queries)
    idx, scores = BM25([corpus[d].passage for d in doc_ids]).search([queries[q] for q in qids], k)
    return to_run(qids, doc_ids, idx, scores)


def sts_score(encoder: Encoder, rows) -> float:
    """Spearman between cosine similarity and the gold scores; both sides embedded as queries (symmetric task)."""
    a = encoder.encode([r[0] for r in rows], "query")
    b = encoder.encode([r[1] for r in rows], "query")
    return spearman(cosine(a, b), [r[2] for r in rows])


def during_training(data, split: str = "test", n_queries: int = 50, pool_depth: int = 50):
    """An evaluation cheap enough to run every few hundred steps: nDCG@10 / MRR@10 on ``n_queries`` queries,
    ranking only a candidate pool (BM25's top ``pool_depth`` per query plus the judged documents) instead of
    the whole corpus. The figures track progress; they are not comparable with full-corpus ones."""
    beir = limit_queries(read_beir(data, split), n_queries)
    qids = list(beir.queries)
    pool = {d for q in qids for d in beir.qrels[q]}
    for row in bm25_run(beir.corpus, beir.queries, pool_depth).values():
        pool |= {d for d, _ in row}
    candidates = Beir({d: beir.corpus[d] for d in pool}, beir.queries, beir.qrels)

    def eval_fn(encoder) -> dict:
        scores = score_run(dense_run(embed_fn(encoder), candidates), beir.qrels)
        return {"pool_ndcg@10": scores["ndcg@10"], "pool_mrr@10": scores["mrr@10"]}

    return eval_fn


def evaluate(models: list[str], beir: Beir | None = None, bm25: bool = True, sts_rows=None,
             progress: bool = True, max_length: int | None = None) -> list[dict]:
    """One row per system: {'name', 'ndcg@10', 'recall@100', 'mrr@10', 'sts_spearman', 'seconds'}."""
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
            row.update(score_run(dense_run(embed_fn(encoder, progress), beir), beir.qrels))
        if sts_rows:
            row["sts_spearman"] = sts_score(encoder, sts_rows)
        row["seconds"] = round(time.time() - started, 1)
        rows.append(row)
    return rows


def model_label(path) -> str:
    path = Path(path)
    if path.resolve() == default_base_model().resolve():
        return "all-MiniLM-L6-v2"
    return path.parent.name if path.name == "model" else path.name
