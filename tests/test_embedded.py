"""The embedded backend: HNSW agrees with exact search, profiles mean what the Vespa schema says."""

import numpy as np
import pytest

from common.data import Beir, read_beir
from vespa_app.backend import evaluate_backend
from vespa_app.embedded import EmbeddedIndex
from vespa_app.hnsw import RECALL_GOAL, HnswSettings
from vespa_app.serving import RRF_K, TARGET_HITS


@pytest.fixture(scope="module")
def index(tiny_export, small_beir, tmp_path_factory):
    beir = read_beir(small_beir, "test")
    return EmbeddedIndex.build(
        tmp_path_factory.mktemp("idx") / "index", tiny_export, list(beir.corpus.values()), progress=False
    ), beir


def test_hnsw_agrees_with_exact_search(index):
    idx, beir = index
    vectors = idx.embedder.embed(list(beir.queries.values()) + [d.passage for d in idx.docs[:80]], "query")
    exact, _ = idx.exact(vectors, 10)
    # as a served query asks: targetHits 100, its top 10 shown
    hits = [set(idx.nearest(v, TARGET_HITS)[0][:10].tolist()) for v in vectors]
    recall = np.mean([len(h & set(e.tolist())) / 10 for h, e in zip(hits, exact)])
    assert recall >= 0.99


def test_a_query_explores_what_vespa_would_and_exact_is_brute_force(index, tiny_export, tmp_path):
    idx, beir = index
    settings = HnswSettings(max_links=8, explore_at_insert=50, explore_additional=37)
    wide = EmbeddedIndex.build(
        tmp_path / "i", tiny_export, idx.docs, embeddings=idx.embeddings, hnsw=settings, progress=False
    )
    assert wide.hnsw.hnsw.nb_neighbors(0) == 2 * 8 and wide.hnsw.hnsw.efConstruction == 50  # faiss: 2M at 0
    assert EmbeddedIndex.open(tmp_path / "i").hnsw_settings == settings  # recorded in meta.json
    text = next(iter(beir.queries.values()))
    wide.query(text, "semantic")
    assert wide.hnsw.hnsw.efSearch == TARGET_HITS + 37  # Vespa: targetHits + hnsw.exploreAdditionalHits
    vector = wide.embed_query(text)
    truth, _ = wide.exact(vector[None, :], TARGET_HITS)
    assert [h.id for h in wide.query(text, "semantic", hits=TARGET_HITS, exact=True)] == [
        wide.docs[i].id for i in truth[0]
    ]
    assert wide.approximate  # exact for that query only


def starved_index(tiny_export, path, documents=3000):
    """An index HNSW can hardly search: 2 links a node, 2 explored at insert, nothing beyond targetHits, over
    random vectors (no neighbourhoods to find)."""
    from common.data import Doc
    from exporter.runtime import OnnxEmbedder

    dim = OnnxEmbedder(tiny_export).dim
    vectors = np.random.default_rng(0).standard_normal((documents, dim)).astype(np.float32)
    docs = [Doc(f"d{i}", "", f"document {i}") for i in range(documents)]
    return EmbeddedIndex.build(
        path, tiny_export, docs, embeddings=vectors, hnsw=HnswSettings(2, 2, 0), progress=False
    )


def test_served_recall_is_measured_against_exact_search_and_a_starved_index_falls_below_the_goal(
    index, tiny_export, tmp_path
):
    idx, beir = index
    healthy = evaluate_backend(idx, beir, ("bm25", "semantic", "hybrid"), progress=False)
    recall = {r["profile"]: r.get("served_recall") for r in healthy}
    assert recall["bm25"] is None and recall["hybrid"] is None  # their hits are not HNSW's alone
    assert recall["semantic"]["@10"] >= RECALL_GOAL and recall["semantic"]["queries"] == len(beir.queries)
    starved = starved_index(tiny_export, tmp_path / "starved")
    queries = Beir(
        {}, {f"q{i}": f"query number {i}" for i in range(40)}, {f"q{i}": {"d1": 1} for i in range(40)}
    )
    (row,) = evaluate_backend(starved, queries, ("semantic",), progress=False)
    assert row["served_recall"]["@10"] < RECALL_GOAL
    assert row["served_recall"]["@100"] < row["served_recall"]["@10"] + 0.5  # measured, not a constant


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
    nn_idx, nn_close = idx.nearest(idx.embedder.embed_one(text, "query"), 100)
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
        assert [h.id for h in reopened.query(text, profile, 10)] == [
            h.id for h in idx.query(text, profile, 10)
        ]


def test_evaluation_through_the_backend(index):
    idx, beir = index
    rows = evaluate_backend(idx, beir, progress=False)
    assert [r["name"] for r in rows] == ["bm25", "semantic", "hybrid", "hybrid-linear"]
    bm25 = rows[0]
    assert bm25["ndcg@10"] > 0.5  # real SciFact text: BM25 is strong
    assert all(0 <= r["recall@100"] <= 1 for r in rows)


def test_existing_index_is_not_overwritten(index, tiny_export):
    idx, _ = index
    with pytest.raises(FileExistsError):
        EmbeddedIndex.build(idx.path, tiny_export, idx.docs)


def test_every_profile_answers_on_the_embedded_backend(index):
    from vespa_app.profiles import PROFILES

    idx, beir = index
    text = list(beir.queries.values())[2]
    for profile in [p.name for p in PROFILES.values() if not p.colbert]:  # those: test_late_interaction.py
        hits = idx.query(text, profile, hits=10)
        assert len(hits) == 10 and len({h.id for h in hits}) == 10, profile
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), profile


def test_a_bm25_query_is_not_embedded(index, monkeypatch):
    idx, beir = index
    text = list(beir.queries.values())[0]
    expected = [h.id for h in idx.query(text, "bm25", 10)]

    def no_embedding(*args, **kwargs):
        raise AssertionError("a BM25 query was embedded")

    monkeypatch.setattr(idx.embedder, "embed_one", no_embedding)
    assert [h.id for h in idx.query(text, "bm25", 10)] == expected
    with pytest.raises(AssertionError, match="was embedded"):
        idx.query(text, "semantic", 10)


def test_hybrid_linear_is_the_sum_of_min_max_normalised_features(index):
    idx, beir = index
    text = list(beir.queries.values())[3]
    nn_idx, nn_close = idx.nearest(idx.embedder.embed_one(text, "query"), 100)
    bm_idx, bm_score = idx.lexical(text, 1000)
    close = dict(zip(nn_idx.tolist(), nn_close.tolist()))
    lexical = dict(zip(bm_idx.tolist(), bm_score.tolist()))
    candidates = set(close) | set(lexical)

    def linear(feature):
        values = [feature.get(j, 0.0) for j in candidates]
        low, high = min(values), max(values)
        return {j: (feature.get(j, 0.0) - low) / (high - low) for j in candidates}

    fused = {j: linear(close)[j] + linear(lexical)[j] for j in candidates}
    hits = idx.query(text, "hybrid-linear", hits=5)
    best = max(fused, key=fused.get)
    assert hits[0].id == idx.docs[best].id
    assert [h.score for h in hits] == pytest.approx(sorted(fused.values(), reverse=True)[:5])


def test_a_feature_equal_on_every_hit_normalises_to_one_half_as_vespas_linear_normalizer():
    """Vespa's LinearNormalizer: 0.5 + scale · (x − midpoint), scale 0 when max = min (found when a two-tower
    package's hits all had the same BM25 score: Vespa's global phase and ours then differed by 0.5)."""
    from vespa_app.profiles import _linear

    fused = _linear(({0: 0.9, 1: 0.5, 2: 0.1}, {0: 3.0, 1: 3.0, 2: 3.0}), [0, 1, 2], (1.0, 0.2))
    assert fused == pytest.approx({0: 1.0 + 0.1, 1: 0.5 + 0.1, 2: 0.0 + 0.1})


def test_binary_matches_by_hamming_and_reranks_by_cosine(index):
    from common.vectors import pack_bits

    idx, beir = index
    text = list(beir.queries.values())[4]
    v = idx.embedder.embed_one(text, "query")
    bits = np.unpackbits(pack_bits(idx.embeddings), axis=1).astype(bool)
    assert (bits == (idx.embeddings > 0)).all()  # Vespa's pack_bits: 1 where > 0, first dimension first
    hamming = (bits != (v > 0)).sum(1)
    hits = idx.query(text, "binary", hits=10, target_hits=100)
    matched = {idx.docs[i].id for i in np.argsort(hamming, kind="stable")[:100]}
    assert {h.id for h in hits} <= matched | {
        idx.docs[i].id for i in np.flatnonzero(hamming <= np.sort(hamming)[99])
    }
    positions = [[d.id for d in idx.docs].index(h.id) for h in hits]
    cosine = (
        idx.embeddings[positions] @ v / np.linalg.norm(idx.embeddings[positions], axis=1) / np.linalg.norm(v)
    )
    assert [h.score for h in hits] == pytest.approx(cosine.tolist(), abs=1e-5)


def test_hybrid_linear_weighs_bm25_by_the_index_weight_and_the_choice_takes_the_best_on_judged_queries(
    tiny_export, small_beir, tmp_path
):
    from siamese.run.fusion_weight import choose_bm25_weight
    from vespa_app.serving import BM25_WEIGHT_GRID

    beir = read_beir(small_beir)
    idx = EmbeddedIndex.build(tmp_path / "index", tiny_export, list(beir.corpus.values()), progress=False)
    text = next(iter(beir.queries.values()))
    assert idx.bm25_weight == 1.0
    equal = idx.query(text, "hybrid-linear", 10)
    idx.set_bm25_weight(0.0)  # closeness alone, over the hybrid's candidates
    assert EmbeddedIndex.open(tmp_path / "index").bm25_weight == 0.0  # recorded in meta.json
    alone = idx.query(text, "hybrid-linear", 10)
    semantic = idx.query(text, "semantic", 10)
    assert [h.id for h in alone] == [h.id for h in semantic][: len(alone)]
    assert [h.id for h in alone] != [h.id for h in equal] or [h.score for h in alone] != [
        h.score for h in equal
    ]
    weight, record = choose_bm25_weight(idx, beir.queries, beir.qrels)
    scores = {float(w): s for w, s in record["ndcg@10"].items()}
    assert set(scores) == set(BM25_WEIGHT_GRID) and weight in scores
    assert scores[weight] == max(scores.values()) and weight == min(
        w for w, s in scores.items() if s == scores[weight]
    )
    assert record["method"].startswith(f"chosen on {len(beir.qrels)} training queries")


def test_the_report_names_a_served_profile_below_the_recall_goal():
    from siamese.run.report import served_recall_lines
    from siamese.run.stages import RunRecord
    from vespa_app.hnsw import for_corpus

    hnsw = for_corpus(5000).record()
    fine = RunRecord(served_recall={"semantic": {"@10": 0.998, "@100": 0.99, "queries": 300}}, hnsw=hnsw)
    assert "Every served dense profile finds at least 0.95" in "\n".join(served_recall_lines(fine))
    low = RunRecord(served_recall={"semantic": {"@10": 0.61, "@100": 0.55, "queries": 40}}, hnsw=hnsw)
    text = "\n".join(served_recall_lines(low))
    assert "| semantic | 0.6100 | 0.5500 |" in text and "**semantic: below 0.95 recall@10**" in text
    assert "chosen for 5,000 vectors" in text


def test_the_profiles_of_one_query_embed_it_once(index, monkeypatch):
    idx, beir = index
    first, second = list(beir.queries.values())[5:7]
    calls = []
    embed = idx.embedder.embed_one
    monkeypatch.setattr(idx.embedder, "embed_one", lambda text, kind: calls.append(text) or embed(text, kind))
    ranked = {p: [h.id for h in idx.query(first, p, 10)] for p in ("semantic", "hybrid", "hybrid-linear")}
    assert calls == [first]
    idx.query(second, "semantic", 10)
    assert calls == [first, second]
    assert [h.id for h in idx.query(first, "semantic", 10)] == ranked["semantic"] and len(calls) == 3
    with pytest.raises(ValueError):  # the shared vector is read-only
        idx.embed_query(first)[0] = 0.0
