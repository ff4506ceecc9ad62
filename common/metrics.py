"""Retrieval and STS metrics, BEIR/trec_eval style.

A *run* maps each query id to its ranked list of (doc id, score), best first; *qrels* map each query id
to {doc id: graded relevance > 0}. Queries without judgements are not scored.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

Run = dict[str, list[tuple[str, float]]]


def ndcg_at(ranked: list[str], rels: dict[str, int], k: int) -> float:
    """nDCG@k with linear gains, as trec_eval: Σ rel_i / log2(i + 1) over the top k, divided by the ideal."""
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sum(r / math.log2(i + 2) for i, r in enumerate(sorted(rels.values(), reverse=True)[:k]))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int) -> float:
    return len(set(ranked[:k]) & rels.keys()) / len(rels) if rels else 0.0


def mrr_at(ranked: list[str], rels: dict[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def score_run(run: Run, qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR@10 over the judged queries (a query missing from the run scores 0)."""
    per_query = []
    for qid, rels in qrels.items():
        ranked = [d for d, _ in run.get(qid, [])]
        per_query.append((ndcg_at(ranked, rels, 10), recall_at(ranked, rels, 100), mrr_at(ranked, rels, 10)))
    if not per_query:
        raise ValueError("no judged queries to score")
    means = np.mean(per_query, axis=0)
    return {"ndcg@10": float(means[0]), "recall@100": float(means[1]), "mrr@10": float(means[2])}


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a, b) -> float:
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    return float(np.corrcoef(ra, rb)[0, 1])


METRICS = ("ndcg@10", "recall@100", "mrr@10")


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
