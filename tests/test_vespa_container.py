"""Vespa's own container code on our feed and our queries, in-process (``siamese app check``): the package's
indexing statements with its embedder, the query stack (query profile, embed, YQL parser) on every request our
client builds, and the global phase on the embedded backend's features. Each way of breaking them on purpose
must be caught."""

import dataclasses
import shutil

import pytest
from conftest import needs_java

from common.data import Doc
from vespa_app import profiles
from vespa_app.check.container import HOSTILE_QUERIES, PLAIN_QUERIES, sample_documents
from vespa_app.check.java import vespa_container, vespa_model_check
from vespa_app.check.query_tree import check_tree
from vespa_app.check.structure import PackageError, check_package
from vespa_app.client import feed as feed_api
from vespa_app.client import query as query_api
from vespa_app.package.build import write_package
from vespa_app.package.options import AppOptions
from vespa_app.package.record import AppPackage


@pytest.fixture(scope="module")
def package(tiny_export, tmp_path_factory):
    return write_package(tiny_export, tmp_path_factory.mktemp("pkg") / "app")


def copy_with(package, tmp_path, old, new):
    copy = tmp_path / "edited"
    shutil.copytree(package, copy)
    sd = copy / "schemas" / "doc.sd"
    assert old in sd.read_text()
    sd.write_text(sd.read_text().replace(old, new, 1))
    return copy


# ---------------------------------------------------------------- pure Python: the tree rules

FIELDS = {"embedding": "tensor<float>(x[32])", "title": "STRING", "text": "STRING"}
NN = {"type": "NEAREST_NEIGHBOR", "index": "embedding", "query_tensor": "q", "target_hits": 100}


def words(*terms):
    return {
        "type": "WEAK_AND",
        "n": 100,
        "children": [{"type": "WORD", "index": "", "term": t} for t in terms],
    }


def test_tree_rules():
    semantic, hybrid, bm25 = (profiles.get(n) for n in ("semantic", "hybrid", "bm25"))
    assert check_tree(NN, semantic, "any text", 10, FIELDS, {"q": []}) == ""
    assert (
        check_tree(
            {"type": "OR", "children": [NN, words("red", "wine")]}, hybrid, "red wine", 10, FIELDS, {"q": []}
        )
        == ""
    )
    assert check_tree(words("red", "wine"), bm25, "red wine", 10, FIELDS, {}) == ""
    # a second nearestNeighbor the text smuggled in, a wrong targetHits, a field or tensor Vespa does not know
    assert "2 nearestNeighbor" in check_tree(
        {"type": "OR", "children": [NN, NN]}, semantic, "x", 10, FIELDS, {"q": []}
    )
    assert "targetHits 1" in check_tree(NN | {"target_hits": 1}, semantic, "x", 10, FIELDS, {"q": []})
    assert "not a tensor field" in check_tree(
        NN | {"index": "embeding"}, semantic, "x", 10, FIELDS, {"q": []}
    )
    assert "does not declare" in check_tree(NN, semantic, "x", 10, FIELDS, {"q_binary": []})
    # the package's HNSW exploration, asked for; never brute force in a served query
    explored = NN | {"explore_additional_hits": 250}
    assert check_tree(explored, semantic, "x", 10, FIELDS, {"q": []}, explore_additional=250) == ""
    assert "exploreAdditionalHits 0, the package's HNSW settings ask for 250" in check_tree(
        NN, semantic, "x", 10, FIELDS, {"q": []}, explore_additional=250
    )
    assert "approximate:false" in check_tree(
        NN | {"approximate": False}, semantic, "x", 10, FIELDS, {"q": []}
    )
    # terms that are not the user's, or in a query that parses no user text
    assert "did not give as words" in check_tree(words("red", "true"), bm25, "red wine", 10, FIELDS, {})
    assert "parses no user text" in check_tree(
        {"type": "AND", "children": [NN, words("x")]}, semantic, "x", 10, FIELDS, {"q": []}
    )
    # the text is data: query syntax read from it (-word as NOT, *suffix, field:word) is refused
    text = "smoking -induced * from title:lung"
    assert "did not give as words" in check_tree(
        {"type": "WEAK_AND", "children": [{"type": "SUFFIX", "index": "", "term": "*from"}]},
        bm25,
        text,
        10,
        FIELDS,
        {},
    )
    assert "did not give as words" in check_tree(
        {"type": "WEAK_AND", "children": [{"type": "WORD", "index": "title", "term": "lung"}]},
        bm25,
        text,
        10,
        FIELDS,
        {},
    )
    assert "operators the user did not ask for: ['NOT']" in check_tree(
        {"type": "NOT", "children": [words("smoking"), words("induced")]}, bm25, text, 10, FIELDS, {}
    )
    assert check_tree(words("smoking", "induced", "from", "title", "lung"), bm25, text, 10, FIELDS, {}) == ""


def test_sample_documents_cover_each_kind():
    docs = [
        Doc("a", "Title A", "Body of a."),
        Doc("b", "Bêta", "Ünïcode body " * 50),
        Doc("c", "", "only text"),
        Doc("d", "only title", ""),
    ]
    kinds = dict(sample_documents(docs))
    assert list(kinds) == ["title", "title-only", "text-only", "non-ASCII", "long"]
    assert kinds["title-only"].id == "d" and kinds["text-only"].id == "c" and kinds["long"].id == "b"
    # a corpus where every document has both: the title-only and text-only documents are cut from a real one
    made = dict(sample_documents(docs[:2]))
    assert made["title-only"] == Doc("a-title-only", "Title A", "")
    assert made["text-only"] == Doc("a-text-only", "", "Body of a.")


# ---------------------------------------------------------------- Vespa's code


@pytest.mark.java
@needs_java()
def test_feed_and_query_path_agree(package):
    report = check_package(package)
    c = report.container
    assert [d["kind"] for d in c.documents] == ["title", "title-only", "text-only", "non-ASCII", "long"]
    assert min(d["cosine"] for d in c.documents) >= 0.9999
    names = [p.name for p in profiles.in_package(False)]
    assert len(c.queries) == len(names) * (len(PLAIN_QUERIES) + len(HOSTILE_QUERIES))
    assert {q["shape"] for q in c.queries} == {
        "nearestNeighbor(embedding, q, targetHits 100)",
        "or(nearestNeighbor(embedding, q, targetHits 100), user text)",
        "user text",
    }
    assert min(q["cosine"] for q in c.queries if q["cosine"] is not None) >= 0.9999
    assert set(c.fusion) == {"hybrid", "hybrid-linear"}
    assert all(f["hits"] > 0 and f["max_diff"] <= 1e-6 for f in c.fusion.values())
    assert {r["what"] for r in c.rejected} >= {"a profile the package lacks", "YQL that does not parse"}
    assert "nearestNeighbour" in next(
        r["message"] for r in c.rejected if r["what"] == "YQL that does not parse"
    )
    assert any("Vespa query stack" in line for line in report.summary().splitlines())
    assert (
        c.responses == len(names) * len(PLAIN_QUERIES) - 2
    )  # every plain query with hits; bm25 has none here


@pytest.mark.java
@needs_java()
def test_binarized_package_sends_the_packed_bits(tiny_export, tmp_path):
    app = write_package(tiny_export, tmp_path / "app", AppOptions(binarized=True))
    c = check_package(app).container
    assert "nearestNeighbor(embedding_binary, q_binary, targetHits 100)" in {q["shape"] for q in c.queries}
    assert not any("binary profile" in r["what"] for r in c.rejected)


@pytest.mark.java
@needs_java()
def test_indexing_statement_that_drops_the_title_is_caught(package, tmp_path):
    app = copy_with(package, tmp_path, '(input title || "") . " " . (input text || "")', '(input text || "")')
    with pytest.raises(PackageError, match=r"indexing title document .* cosine"):
        check_package(app)


@pytest.mark.java
@needs_java()
@pytest.mark.parametrize(
    "where, caught",
    [
        (
            "{{{ann}}}nearestNeighbour(embedding, q)",
            "refused our client's request.*nearestNeighbour",
        ),
        ("{{{ann}}}nearestNeighbor(embeding, q)", "not a tensor field of the schema"),
    ],
)
def test_yql_typo_in_the_client_is_caught(package, monkeypatch, where, caught):
    monkeypatch.setitem(
        profiles.PROFILES, "semantic", dataclasses.replace(profiles.get("semantic"), where=where)
    )
    with pytest.raises(PackageError, match=caught):
        check_package(package)


def caught_in_client(package, monkeypatch, edit, match):
    """Our client with ``edit(body, text, profile)`` applied to
    every request it builds: app check must refuse it."""
    real = query_api.query_body
    monkeypatch.setattr(
        query_api,
        "query_body",
        lambda text, profile="semantic", hits=10, **kw: edit(real(text, profile, hits, **kw), text, profile),
    )
    with pytest.raises(PackageError, match=match):
        check_package(package)


@pytest.mark.java
@needs_java()
def test_the_packages_hnsw_exploration_reaches_vespas_parser_and_a_client_that_drops_it_is_caught(
    tiny_export, tmp_path, monkeypatch
):
    app = write_package(
        tiny_export,
        tmp_path / "app",
        AppOptions(max_links_per_node=24, neighbors_to_explore_at_insert=300, explore_additional=250),
    )
    assert AppPackage.open(app).hnsw_settings.explore_additional == 250
    sd = (app / "schemas" / "doc.sd").read_text()
    assert "max-links-per-node: 24" in sd and "neighbors-to-explore-at-insert: 300" in sd
    report = check_package(app)  # every request our client builds, parsed by Vespa, asks for 250
    assert report.vespa == "accepted" and not report.container.problems
    caught_in_client(
        app,
        monkeypatch,
        lambda body, text, profile: (
            body | {"yql": body["yql"].replace(", hnsw.exploreAdditionalHits:250", "")}
        ),
        r"hnsw.exploreAdditionalHits 0, the package's HNSW settings ask for 250",
    )


@pytest.mark.java
@needs_java()
def test_request_that_does_not_set_the_query_tensor_is_caught(package, monkeypatch):
    caught_in_client(
        package,
        monkeypatch,
        lambda body, text, profile: {n: v for n, v in body.items() if not n.startswith("input.")},
        r"semantic query .* query\(q\) is not set",
    )


@pytest.mark.java
@needs_java()
def test_client_that_lets_vespa_read_query_syntax_in_the_text_is_caught(package, monkeypatch):
    # Vespa's default user-text syntax: "-induced" would become NOT induced, "title:lung" a field restriction
    caught_in_client(
        package,
        monkeypatch,
        lambda body, text, profile: (
            {n: v for n, v in body.items() if not n.startswith("model.type")} | {"type": "weakAnd"}
        ),
        r"bm25 query 'smoking -induced [^\n]*did not give as words",
    )


@pytest.mark.java
@needs_java()
def test_client_that_writes_the_text_into_yql_is_caught(package, monkeypatch):
    def injecting(body, text, profile):  # the classic mistake: the user's text pasted into the YQL
        if profile == "bm25":
            body["yql"] = f'select id, title from doc where default contains "{text}"'
        return body

    caught_in_client(package, monkeypatch, injecting, r"bm25 query '\"\) or true or \(\"'")


# ---------------------------------------------------------------- chunked packages


@pytest.fixture(scope="module")
def chunked(tiny_export, tmp_path_factory):
    return write_package(
        tiny_export, tmp_path_factory.mktemp("chunked") / "app", AppOptions(chunk_tokens=32, chunk_overlap=8)
    )


def test_chunked_schema(chunked):
    sd = (chunked / "schemas" / "doc.sd").read_text()
    assert "field chunks type array<string>" in sd and "tensor<float>(chunk{}, x[32])" in sd
    assert "input chunks | embed embedder | attribute | index" in sd
    assert "bm25(chunks)" in sd and "bm25(text)" not in sd and "closest(embedding)" in sd
    assert "select-elements-by: best_chunk" in sd and "summary-features {\n            best_chunk" in sd
    assert AppPackage.open(chunked).chunking == {"tokens": 32, "overlap": 8}


@pytest.mark.java
@needs_java()
def test_chunked_package_embeds_each_chunk_as_we_do(chunked):
    report = check_package(chunked)
    c = report.container
    assert all(d["chunks"] >= 1 for d in c.documents) and sum(d["chunks"] for d in c.documents) > 20
    assert min(d["cosine"] for d in c.documents) >= 0.9999
    assert "labels in feed order" in report.summary()
    assert set(c.fusion) == {"hybrid", "hybrid-linear"} and all(
        f["max_diff"] <= 1e-6 for f in c.fusion.values()
    )
    assert c.responses > 0 and "and its best chunk" in report.summary()


@pytest.mark.java
@needs_java()
def test_client_that_misreads_the_best_chunk_is_caught(chunked, monkeypatch):
    monkeypatch.setattr(query_api, "_best_chunk", lambda fields: "")
    with pytest.raises(PackageError, match=r"reads Vespa's rendered response wrongly: best chunk of"):
        check_package(chunked)


@pytest.mark.java
@needs_java()
def test_request_that_does_not_select_the_chunks_is_caught(chunked, monkeypatch):
    real = query_api.query_body
    monkeypatch.setattr(query_api, "query_body", lambda *a, chunked=False, **kw: real(*a, **kw))
    with pytest.raises(PackageError, match=r"does not select the chunks summary"):
        check_package(chunked)


def test_hits_from_response_reads_each_tensor_form():
    chunks = ["t first", "t second", "t third"]
    forms = [
        {"type": "tensor(chunk{})", "cells": {"2": 1.0}},  # short (Vespa 8's default)
        {"type": "tensor(chunk{})", "cells": [{"address": {"chunk": "2"}, "value": 1.0}]},  # long
        {"2": 1.0},
    ]  # short-value
    for closest in forms:
        body = {
            "root": {
                "children": [
                    {
                        "id": "id:doc:doc::d1",
                        "relevance": 0.5,
                        "fields": {
                            "id": "d1",
                            "title": "t",
                            "chunks": chunks,
                            "matchfeatures": {"closest(embedding)": closest},
                        },
                    }
                ]
            }
        }
        assert query_api.hits_from_response(body)[0].passage == "t third"
    selected = {
        "root": {
            "children": [
                {
                    "id": "x",
                    "relevance": 0.5,
                    "fields": {  # the package's select-elements-by
                        "chunks": ["t third"],
                        "matchfeatures": {"closest(embedding)": {"cells": {"2": 1.0}}},
                    },
                }
            ]
        }
    }
    assert query_api.hits_from_response(selected)[0].passage == "t third"
    unchunked = {"root": {"children": [{"id": "id:doc:doc::d1", "relevance": 0.5, "fields": {"id": "d1"}}]}}
    assert query_api.hits_from_response(unchunked)[0].passage == ""
    out_of_range = {
        "root": {
            "children": [
                {
                    "id": "x",
                    "relevance": 0.5,
                    "fields": {
                        "chunks": chunks,
                        "matchfeatures": {"closest(embedding)": {"cells": {"7": 1.0}}},
                    },
                }
            ]
        }
    }
    assert query_api.hits_from_response(out_of_range)[0].passage == ""


@pytest.mark.java
@needs_java()
def test_hnsw_over_a_chunk_dimension_of_the_wrong_type_is_rejected(chunked, tmp_path):
    app = copy_with(chunked, tmp_path, "tensor<float>(chunk{}, x[32])", "tensor<float>(chunk[8], x[32])")
    with pytest.raises(PackageError, match=r"only tensors with 1 indexed dimension or 1 mapped \+ 1 indexed"):
        vespa_model_check(app)


def test_the_feed_sends_the_packages_chunks(chunked, package):
    chunker = AppPackage.open(chunked).chunker()
    assert AppPackage.open(package).chunker() is None
    assert chunker.max_tokens == 32 and chunker.overlap == 8
    doc = Doc("d1", "A title", " ".join(["Sentence about cells and proteins."] * 30))
    fields = feed_api.feed_fields(doc, chunker)
    assert len(fields["chunks"]) > 3 and all(c.startswith("A title ") for c in fields["chunks"])
    assert fields["text"] == doc.text  # the whole text stays, for display


@pytest.mark.java
@needs_java()
def test_a_hundred_pages_go_to_vespa_whole(chunked):
    """A 50,000-word document: the feed request carries every
    chunk, Vespa's indexing embeds each one as we do."""
    import numpy as np
    from conftest import SCIFACT, hundred_pages

    from common.data import read_beir
    from common.vectors import cosine
    from exporter.runtime import OnnxEmbedder

    doc = hundred_pages(read_beir(SCIFACT, "test").corpus)
    fields = feed_api.feed_fields(doc, AppPackage.open(chunked).chunker())
    assert len(fields["chunks"]) > 1500 and fields["chunks"][-1].endswith(doc.text[-30:])
    out = vespa_container(
        chunked, {"schema": "doc", "tensor_field": "embedding", "documents": [fields], "queries": []}
    )
    vespa = out["documents"][0]["embedding"]
    assert list(vespa) == [str(i) for i in range(len(fields["chunks"]))]
    ours = OnnxEmbedder(chunked / "models")
    worst = min(
        float(cosine(np.asarray(vespa[str(i)], dtype=np.float32), ours.embed_one(c, "passage")))
        for i, c in enumerate(fields["chunks"])
    )
    assert worst >= 0.9999


@pytest.mark.java
@needs_java()
def test_vespas_own_chunkers_do_not_cut_where_ours_do(tiny_export):
    """Why a chunked package's feed sends the chunks instead of letting `chunk fixed-length N` in the indexing
    statement cut the text: Vespa's chunkers count characters or sentences, not the model's tokens."""
    from conftest import SCIFACT

    from common.chunking import Chunker
    from common.data import read_beir
    from vespa_app.check.java import vespa_chunks

    texts = [d.text for d in list(read_beir(SCIFACT, "test").corpus.values())[:40]]
    ours = [Chunker.for_model(tiny_export, 64).chunks(t) for t in texts]
    chars = round(sum(len(c) for cs in ours for c in cs) / sum(map(len, ours)))
    for kind, args in (("fixed-length", (chars,)), ("sentence", ())):
        theirs = vespa_chunks(texts, kind, args)
        assert ["".join(cs) for cs in theirs] == texts  # nothing lost: they only cut elsewhere
        same = sum(
            [c.strip() for c in a] == [c.strip() for c in b] for a, b in zip(theirs, ours) if len(b) > 1
        )
        assert same < sum(len(b) > 1 for b in ours) / 2, kind


# ---------------------------------------------------------------- a prefix of the embedding (--dim)


@pytest.mark.java
@needs_java()
def test_vespa_serves_a_prefix_as_we_cut_it(tiny_export, tmp_path):
    """--dim 16 of a 32-dimension model: Vespa's embedder fills x[16] with the first 16 values, normalised
    after the cut (so prenormalized-angular stays right); ours must equal it, feed and query side."""
    import numpy as np

    from exporter.runtime import OnnxEmbedder

    app = write_package(tiny_export, tmp_path / "app", AppOptions(dim=16))
    sd = (app / "schemas" / "doc.sd").read_text()
    assert "tensor<float>(x[16])" in sd and "prenormalized-angular" in sd
    assert "tensor<float>(x[16])" in sd.split("rank-profile semantic")[1]  # the query tensor too
    report = check_package(app)
    assert (
        report.embedding["document_min_cosine"] >= 0.9999 and report.embedding["query_min_cosine"] >= 0.9999
    )
    assert min(d["cosine"] for d in report.container.documents) >= 0.9999
    full, cut = OnnxEmbedder(tiny_export), OnnxEmbedder(tiny_export, dim=16)
    v = cut.embed_one("a query about proteins")
    assert v.shape == (16,) and np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    w = full.embed_one("a query about proteins")[:16]
    assert np.allclose(v, w / np.linalg.norm(w), atol=1e-6)  # cut first, then normalise


def test_a_schema_cut_short_without_dim_is_refused(package, tmp_path):
    from vespa_app.check.structure import structural_check

    app = copy_with(package, tmp_path, "tensor<float>(x[32])", "tensor<float>(x[16])")
    with pytest.raises(PackageError, match="build with --dim to serve a prefix on purpose"):
        structural_check(app)
    with pytest.raises(Exception, match="between 8 and the model's 32"):
        write_package(package / "models", tmp_path / "too-big", AppOptions(dim=64))


def test_embedded_index_serves_the_prefix(tiny_export, tmp_path):
    import numpy as np

    from common.data import Doc
    from vespa_app.embedded import EmbeddedIndex

    docs = [Doc(f"d{i}", f"title {i}", f"text about topic {i} and proteins") for i in range(30)]
    index = EmbeddedIndex.build(tmp_path / "index", tiny_export, docs, progress=False, dim=16)
    assert index.embeddings.shape == (30, 16) and index.meta["dimension"] == 16
    reopened = EmbeddedIndex.open(tmp_path / "index")
    q = reopened.embed_query("proteins")
    assert q.shape == (16,) and np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)
    assert reopened.query("topic 3 proteins", "semantic", 3)[0].id.startswith("d")


@pytest.mark.java
@needs_java()
def test_a_weighted_hybrid_ranks_in_vespa_as_on_the_embedded_backend_and_a_mismatch_is_caught(
    tiny_export, tmp_path
):
    weighted = write_package(tiny_export, tmp_path / "app", AppOptions(bm25_weight=0.2))
    sd = (weighted / "schemas" / "doc.sd").read_text()
    assert "normalize_linear(closeness(field, embedding)) + 0.2 * normalize_linear(bm25sum)" in sd
    assert AppPackage.open(weighted).bm25_weight == 0.2
    c = check_package(weighted).container
    assert c.fusion["hybrid-linear"]["hits"] > 0 and c.fusion["hybrid-linear"]["max_diff"] <= 1e-6
    # the embedded backend fusing with another weight than the schema's global phase is caught
    record = AppPackage.open(weighted)
    record.bm25_weight = 1.0
    record.write(weighted)
    with pytest.raises(PackageError, match="hybrid-linear"):
        check_package(weighted)
