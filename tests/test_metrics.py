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
