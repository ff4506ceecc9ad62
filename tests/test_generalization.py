"""Evaluation that cannot flatter: seen/unseen split, guard halves, forgetting named in words."""
import pytest

from common.data import Doc
from common.metrics import passage_key, positives_of, report_half, score_split, seen_queries
from training.evaluate import generalisation
from training.pairs import Pair


def test_seen_and_unseen_split_on_hand_made_qrels():
    corpus = {d: Doc(d, "", f"text of {d}") for d in ("d1", "d2", "d3", "d4")}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1, "d3": 1}, "q3": {"d4": 1}, "q4": {"d3": 1}}
    # d1 trained on by id; d2 by its text only (a pairs file without ids); d3, d4 never
    positives = positives_of([Pair("a", "text of d1", positive_id="d1"), Pair("b", "text of   d2")])
    assert seen_queries(qrels, corpus, positives) == {"q1", "q2"}
    run = {"q1": [("d1", 1.0)], "q2": [("d9", 1.0)], "q3": [("d4", 1.0)], "q4": [("d9", 1.0)]}
    row = score_split(run, qrels, {"q1", "q2"})
    assert row["ndcg@10 seen"] == pytest.approx(0.5) and row["ndcg@10 unseen"] == pytest.approx(0.5)
    assert row["ndcg@10"] == pytest.approx(0.5) and "ndcg@10 seen" not in score_split(run, qrels, None)
    assert passage_key("a  b\n") == passage_key("a b")


def test_the_report_half_is_fixed_and_about_half():
    qids = [str(i) for i in range(1000)]
    half = report_half(qids)
    assert half == report_half(reversed(qids)) and 400 < len(half) < 600


def test_a_guard_that_falls_is_named_in_words():
    rows = [{"name": "base", "ndcg@10": 0.60, "ndcg@10 unseen": 0.68, "guard cisi": 0.40, "guard medquad": 0.80},
            {"name": "tuned", "ndcg@10": 0.70, "ndcg@10 unseen": 0.66, "guard cisi": 0.39, "guard medquad": 0.799}]
    text = "\n".join(generalisation(rows, "base", "tuned"))
    assert "- all queries: +10.0 points" in text and "- unseen queries: -2.0 points" in text
    assert "more than 0.5 points below the base model on cisi." in text and "medquad." not in text
    assert "On unseen queries the fine-tuned model is worse" in text
