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
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a, b) -> float:
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    return float(np.corrcoef(ra, rb)[0, 1])


COLUMNS = ("ndcg@10", "ndcg@10 seen", "ndcg@10 unseen", "recall@100", "mrr@10", "sts_spearman")
GUARD = "guard "  # row key prefix of a guard's nDCG@10 (report half), e.g. "guard cisi"


def format_table(rows: list[dict]) -> str:
    """A Markdown table; columns are the metrics any row has, guards last."""
    guards = sorted({k for r in rows for k in r if k.startswith(GUARD)})
    cols = [c for c in (*COLUMNS, *guards) if any(c in r for r in rows)]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        cells = [f"{r[c]:.4f}" if c in r else "–" for c in cols]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(rows: list[dict], path) -> None:
    Path(path).write_text(json.dumps(rows, indent=2))


# ------------------------------------------------------------------ evaluation that cannot flatter


def passage_key(text: str) -> str:
    import hashlib

    return hashlib.sha1(" ".join(text.split()).encode()).hexdigest()


def positives_of(pairs) -> dict:
    """The documents training pairs use as positives: their ids where known, and hashes of their texts."""
    return {
        "ids": sorted({p.positive_id for p in pairs if p.positive_id}),
        "passages": sorted({passage_key(p.positive) for p in pairs}),
    }


def seen_queries(qrels: dict, corpus: dict, positives: dict) -> set[str]:
    """Queries with a relevant document that was a training positive: a gain on them may be memorised
    documents; a gain on the others ("unseen") is generalisation."""
    ids, passages = set(positives["ids"]), set(positives["passages"])
    return {
        q
        for q, rels in qrels.items()
        if any(d in ids or (d in corpus and passage_key(corpus[d].passage) in passages) for d in rels)
    }


def per_query_ndcg(run: Run, qrels: dict[str, dict[str, int]], k: int = 10) -> dict[str, float]:
    """nDCG@k of every judged query (0 for one missing from the run): what paired tests compare."""
    return {qid: ndcg_at([d for d, _ in run.get(qid, [])], rels, k) for qid, rels in qrels.items()}


def score_split(run: Run, qrels: dict, seen: set[str] | None) -> dict[str, float]:
    """``score_run`` over all queries, plus nDCG@10 over the seen
    and the unseen ones when ``seen`` is known."""
    row = score_run(run, qrels)
    if seen is not None:
        for name, part in (
            ("seen", {q: r for q, r in qrels.items() if q in seen}),
            ("unseen", {q: r for q, r in qrels.items() if q not in seen}),
        ):
            if part:
                row[f"ndcg@10 {name}"] = score_run(run, part)["ndcg@10"]
    return row


def report_half(qids) -> set[str]:
    """The fixed half of a guard's queries that figures are reported on (odd sha256 of the id); the other
    half is where choices (such as a merge's α) are made."""
    import hashlib

    return {q for q in qids if hashlib.sha256(q.encode()).digest()[-1] % 2}
