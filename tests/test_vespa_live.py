"""Against a real Vespa: deploy, feed 100 SciFact documents, query each profile, evaluate.

Runs when VESPA_URL is set (the container's query endpoint; VESPA_CONFIG_URL, default HOST:19071, takes the
deploy) or when docker/podman is found (pyvespa starts vespaengine/vespa). Elsewhere it skips and says why.
"""

import os
from urllib.parse import urlparse

import pytest
from conftest import SCIFACT

from common.data import Beir, read_beir
from vespa_app.backend import evaluate_backend
from vespa_app.client.deploy import container_engine, deploy_docker, deploy_to_config_server
from vespa_app.client.query import VespaBackend
from vespa_app.package.build import write_package

ENGINE = None if os.environ.get("VESPA_URL") else container_engine()
pytestmark = [
    pytest.mark.vespa,
    pytest.mark.skipif(
        not (os.environ.get("VESPA_URL") or ENGINE),
        reason="no live Vespa here: VESPA_URL is not set and no running container engine (docker or podman "
        "with its daemon up) was found, so deploy/feed/query against a real Vespa cannot run on this machine",
    ),
]


def deploy(app) -> str:
    """Deploy to VESPA_URL's config server, or to a fresh container; the query endpoint's URL."""
    url = os.environ.get("VESPA_URL")
    if not url:
        return deploy_docker(app)
    host = urlparse(url if "://" in url else f"http://{url}").hostname
    deploy_to_config_server(app, os.environ.get("VESPA_CONFIG_URL", f"http://{host}:19071"), url)
    return url


@pytest.fixture(scope="module")
def vespa(tiny_export, tmp_path_factory):
    return VespaBackend(deploy(write_package(tiny_export, tmp_path_factory.mktemp("live") / "app")))


@pytest.fixture(scope="module")
def hundred():
    test = read_beir(SCIFACT, "test")
    qids = list(test.qrels)[:30]
    keep = {d for q in qids for d in test.qrels[q]}
    keep |= set(list(test.corpus)[: 100 - len(keep)])
    corpus = {d: test.corpus[d] for d in keep}
    return Beir(corpus, {q: test.queries[q] for q in qids}, {q: test.qrels[q] for q in qids})


def test_deploy_feed_query_evaluate(vespa, hundred, tmp_path):
    result = vespa.feed(
        list(hundred.corpus.values()),
        ledger=tmp_path / "l.jsonl",
        failed_file=tmp_path / "f.jsonl",
        progress=False,
    )
    assert result.acked == 100 and not result.failed
    query = next(iter(hundred.queries.values()))
    for profile in ("bm25", "semantic", "hybrid", "hybrid-linear"):
        hits = vespa.query(query, profile, hits=5)
        assert len(hits) == 5 and all(h.id in hundred.corpus for h in hits)
    rows = evaluate_backend(vespa, hundred, progress=False)
    assert [r["name"] for r in rows] == ["bm25", "semantic", "hybrid"]
    assert rows[0]["ndcg@10"] > 0.5


def test_chunked_package_returns_each_hits_best_chunk(tiny_export, hundred, tmp_path):
    """A chunked package on a real Vespa: the feed sends chunks, each hit comes back with the one chunk the
    content nodes selected (select-elements-by
    closest(embedding)), and it is the embedded backend's best chunk."""
    from vespa_app.embedded import EmbeddedIndex
    from vespa_app.package.options import AppOptions
    from vespa_app.package.record import AppPackage

    app = write_package(tiny_export, tmp_path / "app", AppOptions(chunk_tokens=32, chunk_overlap=8))
    vespa, chunker = VespaBackend(deploy(app), chunked=True), AppPackage.open(app).chunker()
    docs = list(hundred.corpus.values())
    result = vespa.feed(
        docs, ledger=tmp_path / "l.jsonl", failed_file=tmp_path / "f.jsonl", chunker=chunker, progress=False
    )
    assert result.acked == len(docs) and not result.failed
    index = EmbeddedIndex.build(tmp_path / "index", app / "models", docs, progress=False, chunker=chunker)
    query = next(iter(hundred.queries.values()))
    ours = {h.id: h.passage for h in index.query(query, "semantic", 5)}
    hits = vespa.query(query, "semantic", hits=5)
    assert all(h.passage for h in hits)
    assert all(h.passage == ours[h.id] for h in hits if h.id in ours)


def test_late_interaction_ranks_on_the_content_nodes_as_the_embedded_backend_does(
    tiny_export, late_export, hundred, tmp_path
):
    """A package with a ColBERT export beside the single-vector one: the colbert-embedder fills the int8
    colbert field at feed time, and the content nodes' MaxSim (second phase of colbert-maxsim, C++) scores
    each hit as the embedded backend does over the same packed bits."""
    from vespa_app.embedded import EmbeddedIndex

    app = write_package(tiny_export, tmp_path / "app", colbert_dir=late_export)
    vespa = VespaBackend(deploy(app))
    docs = list(hundred.corpus.values())
    result = vespa.feed(docs, ledger=tmp_path / "l.jsonl", failed_file=tmp_path / "f.jsonl", progress=False)
    assert result.acked == len(docs) and not result.failed
    index = EmbeddedIndex.build(
        tmp_path / "index", app / "models", docs, progress=False, colbert_dir=late_export
    )
    position = {d.id: i for i, d in enumerate(docs)}
    query = next(iter(hundred.queries.values()))
    hits = vespa.query(query, "colbert-maxsim", hits=10)
    assert len(hits) == 10
    ours = index.maxsim(query, [position[h.id] for h in hits])
    assert [h.score for h in hits] == pytest.approx(ours.tolist(), rel=1e-4)
    for profile in ("colbert", "hybrid-colbert", "bm25-colbert"):
        assert len(vespa.query(query, profile, hits=5)) == 5
