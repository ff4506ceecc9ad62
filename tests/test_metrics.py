import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from common.metrics import mrr_at, ndcg_at, recall_at, score_run, spearman


def test_ndcg_by_hand():
    rels = {"a": 1, "b": 2}
    ranked = ["x", "b", "a"]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(ranked, rels, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at(ranked, rels, 1) == 0.0


def test_recall_and_mrr():
    rels = {"a": 1, "b": 1}
    assert recall_at(["a", "x", "b"], rels, 2) == 0.5
    assert mrr_at(["x", "y", "b"], rels, 10) == pytest.approx(1 / 3)
    assert mrr_at(["x", "y", "b"], rels, 2) == 0.0


def test_missing_query_scores_zero():
    scores = score_run({"q1": [("a", 1.0)]}, {"q1": {"a": 1}, "q2": {"b": 1}})
    assert scores["ndcg@10"] == pytest.approx(0.5)
    assert scores["mrr@10"] == pytest.approx(0.5)


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 200).astype(float)
    b = a + rng.normal(0, 2, 200)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_top_k_ranks_by_score_then_by_index_whatever_the_ties():
    """The ranking is (score descending, index ascending) on every machine: a full stable sort's, which
    numpy's partition and default sort do not promise (their tie order follows the CPU's SIMD kernels)."""
    from common.vectors import top_k

    rng = np.random.default_rng(0)
    for _ in range(200):
        rows, n = int(rng.integers(1, 6)), int(rng.integers(1, 60))
        scores = rng.integers(0, 4, size=(rows, n)).astype(np.float32)  # ties everywhere, at the cut too
        k = int(rng.integers(0, n + 3))
        idx, vals = top_k(scores, k)
        expected = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, n)]
        assert (idx == expected).all() and (vals == np.take_along_axis(scores, expected, 1)).all()


def test_bm25_ranks_equal_documents_in_corpus_order():
    """Duplicate documents (MedQuAD has repeated answers) score alike: they come in corpus order, the same on
    any machine, and every document that scores is ranked by its score."""
    from common.bm25 import BM25

    texts = [
        "glaucoma is a disease of the eye",
        "other words",
        "glaucoma is a disease of the eye",
        "what is glaucoma",
        "glaucoma is a disease of the eye",
        "nothing here",
    ]
    positions, scores = BM25(texts).search(["glaucoma eye disease", "zebra xylophone"], k=10)
    first = [p for p in positions[0] if scores[0][list(positions[0]).index(p)] > 0]
    assert first[:3] == [0, 2, 4] and first[3] == 3
    assert list(scores[0]) == sorted(scores[0], reverse=True)
    assert (scores[1] == 0).all() and list(positions[1]) == list(
        range(len(texts))
    )  # no word known: by position
