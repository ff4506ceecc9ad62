"""hybrid-linear's BM25 weight, chosen on the training queries.

    score = normalize_linear(closeness) + w · normalize_linear(bm25sum)

With w = 1 a strong fine-tuned model is pulled down by BM25 (SciFact, bge-small fine-tuned: semantic 0.7557,
hybrid-linear 0.7378). The right w depends on how strong the model is against BM25 on this corpus, so `siamese
run` measures it: the embedded backend ranks each training query (whose judged documents are in the corpus)
with every w of ``BM25_WEIGHT_GRID``, and the best nDCG@10 wins. Test queries are never looked at; the
choice is recorded in the package (``models/package.json``) and the report. The model has learnt the training
queries, so they favour closeness: the choice errs towards a small w (measured in docs/fusion.md).

    weight, record = choose_bm25_weight(index, train_queries, train_qrels)
"""

from __future__ import annotations

from common.metrics import score_run
from vespa_app import profiles
from vespa_app.serving import BM25_WEIGHT_GRID, TARGET_HITS


def judged(qrels: dict[str, dict[str, int]], doc_ids: set) -> dict[str, dict[str, int]]:
    """The judgements a choice can use: each query's relevant documents among ``doc_ids`` (queries with none
    are left out)."""
    kept = {q: {d: r for d, r in rels.items() if d in doc_ids and r > 0} for q, rels in qrels.items()}
    return {q: rels for q, rels in kept.items() if rels}


def choose_bm25_weight(
    index, queries: dict[str, str], qrels: dict[str, dict[str, int]], grid=BM25_WEIGHT_GRID
) -> tuple[float, dict]:
    """The weight of ``grid`` with the best nDCG@10 on the judged ``queries`` (ties: the smaller weight), and
    a record of every weight's score."""
    profile = profiles.get("hybrid-linear")
    ids = [d.id for d in index.docs]
    runs = {w: {} for w in grid}
    for qid in qrels:
        features, rerank = profiles.fusion_inputs(profile, index, queries[qid], TARGET_HITS)
        for w in grid:  # the first phase is the same for every weight: only the fusion is redone
            fused = profile.fuse(features, rerank, w)
            runs[w][qid] = [(ids[i], fused[i]) for i in sorted(rerank, key=lambda i: -fused[i])[:TARGET_HITS]]
    scores = {w: round(score_run(run, qrels)["ndcg@10"], 4) for w, run in runs.items()}
    best = max(grid, key=lambda w: (scores[w], -w))
    return best, {
        "method": f"chosen on {len(qrels)} training queries (nDCG@10 of each weight)",
        "ndcg@10": {f"{w:g}": s for w, s in scores.items()},
    }
