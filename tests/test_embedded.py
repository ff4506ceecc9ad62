"""The embedded backend: HNSW agrees with exact search, profiles mean what the Vespa schema says."""
import numpy as np
import pytest

from training.data import read_beir
from vespa_app.backend import evaluate_backend
from vespa_app.embedded import RRF_K, EmbeddedIndex


@pytest.fixture(scope="module")
def index(tiny_export, small_beir, tmp_path_factory):
    beir = read_beir(small_beir, "test")
    return EmbeddedIndex.build(tmp_path_factory.mktemp("idx") / "index", tiny_export, list(beir.corpus.values()),
                               progress=False), beir


def test_hnsw_agrees_with_exact_search(index):
    idx, beir = index
    vectors = idx.embedder.embed(list(beir.queries.values()) + [d.passage for d in idx.docs[:80]], "query")
    exact, _ = idx.exact(vectors, 10)
    hits = [set(idx.semantic(v, 10)[0].tolist()) for v in vectors]
    recall = np.mean([len(h & set(e.tolist())) / 10 for h, e in zip(hits, exact)])
    assert recall >= 0.99


def test_semantic_scores_are_vespa_closeness(index):
    idx, beir = index
    text = next(iter(beir.queries.values()))
    hits = idx.query(text, "semantic", hits=5)
    v = idx.embedder.embed_one(text, "query")
    best = idx.embeddings[[d.id for d in idx.docs].index(hits[0].id)]
    cos = float(v @ best / np.linalg.norm(v) / np.linalg.norm(best))
    assert hits[0].score == pytest.approx(1 / (1 + (1 - cos)), abs=1e-5)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_is_reciprocal_rank_fusion(index):
    idx, beir = index
    text = list(beir.queries.values())[1]
    nn_idx, nn_close = idx.semantic(idx.embedder.embed_one(text, "query"), 100)
    bm_idx, bm_score = idx.lexical(text, 1000)
    top = idx.query(text, "hybrid", hits=1)[0]
    i = [d.id for d in idx.docs].index(top.id)
    close = dict(zip(nn_idx.tolist(), nn_close.tolist()))
    lexical = dict(zip(bm_idx.tolist(), bm_score.tolist()))
    candidates = set(close) | set(lexical)
    rank_close = 1 + sum(close.get(j, 0) > close.get(i, 0) for j in candidates)
    rank_lex = 1 + sum(lexical.get(j, 0) > lexical.get(i, 0) for j in candidates)
    assert top.score == pytest.approx(1 / (RRF_K + rank_close) + 1 / (RRF_K + rank_lex), rel=0.05)


def test_reopening_needs_no_embedding(index, monkeypatch):
    idx, beir = index
    import exporter.runtime

    def no_embedding(*args, **kwargs):
        raise AssertionError("documents were embedded again")

    monkeypatch.setattr(exporter.runtime.OnnxEmbedder, "embed", no_embedding)
    reopened = EmbeddedIndex.open(idx.path)
    text = next(iter(beir.queries.values()))
    for profile in ("bm25", "semantic", "hybrid"):
        assert [h.id for h in reopened.query(text, profile, 10)] == [h.id for h in idx.query(text, profile, 10)]


def test_evaluation_through_the_backend(index):
    idx, beir = index
    rows = evaluate_backend(idx, beir, progress=False)
    assert [r["name"] for r in rows] == ["bm25", "semantic", "hybrid"]
    bm25 = rows[0]
    assert bm25["ndcg@10"] > 0.5  # real SciFact text: BM25 is strong
    assert all(0 <= r["recall@100"] <= 1 for r in rows)


def test_existing_index_is_not_overwritten(index, tiny_export):
    idx, _ = index
    with pytest.raises(FileExistsError):
        EmbeddedIndex.build(idx.path, tiny_export, idx.docs)
