"""Two towers (training/towers.py): the frozen side learns nothing, the adapter starts as the base, both
towers export with parity, a two-embedder package is judged by Vespa's own code, and a new query tower is
served over fed documents without re-embedding or re-feeding one."""

import numpy as np
import pytest
import torch
from conftest import needs_java, toy_pairs

from training.config import recipe_config


def feed_key(package) -> str:
    from vespa_app.package.record import AppPackage

    return AppPackage.open(package).feed_key


def _corpus(pairs):
    from common.data import Doc

    return [Doc(p.positive_id, "", p.positive) for p in pairs]


def _towers(tiny_model, out, tower: str, seed: int = 42, **kw):
    from training.loop import train

    pairs = toy_pairs(24)
    cfg = recipe_config(
        str(tiny_model),
        str(out),
        tower=tower,
        epochs=2,
        batch_size=8,
        max_length=48,
        anchor_batch=8,
        seed=seed,
        **({"lr": 1e-2} if tower == "adapter" else {}) | kw,
    )
    return train(cfg, pairs, _corpus(pairs), progress=False)


@pytest.fixture(scope="module")
def query_tower(tiny_model, tmp_path_factory):
    return _towers(tiny_model, tmp_path_factory.mktemp("qt") / "run", "query")


@pytest.fixture(scope="module")
def query_export(query_tower, tmp_path_factory):
    from exporter.onnx_export import export

    return export(query_tower, tmp_path_factory.mktemp("qt-export") / "export", progress=False)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_the_frozen_document_tower_gets_no_gradient_and_stays_bit_identical(tiny_model, query_tower):
    from safetensors.torch import load_file

    from training.encoder import Encoder
    from training.models import load_model
    from training.towers import TwoTowers

    towers = load_model(query_tower)
    assert isinstance(towers, TwoTowers) and towers.record["frozen"] == "document"
    # the document tower is the base model's own file, byte for byte; the query tower moved
    assert (query_tower / "model.safetensors").read_bytes() == (tiny_model / "model.safetensors").read_bytes()
    base, moved = (
        load_file(tiny_model / "model.safetensors"),
        load_file(query_tower / "query" / "model.safetensors"),
    )
    assert any(not torch.equal(base[k], moved[k]) for k in base)
    texts = [p.positive for p in toy_pairs(6)]
    assert np.array_equal(towers.encode(texts, "passage"), Encoder.load(tiny_model).encode(texts, "passage"))
    alone = Encoder.load(query_tower)  # Encoder.load stays one single-vector encoder: the document tower
    assert isinstance(alone, Encoder) and np.array_equal(
        alone.encode(texts, "query"), Encoder.load(tiny_model).encode(texts, "query")
    )
    assert not np.allclose(towers.encode(texts, "query"), Encoder.load(tiny_model).encode(texts, "query"))


def test_no_gradient_reaches_the_frozen_side_during_a_step(tiny_model):
    from training.encoder import Encoder
    from training.towers import build_towers

    base = Encoder.load(tiny_model)
    for tower in ("query", "adapter"):
        towers = build_towers(recipe_config(str(tiny_model), "unused", tower=tower), base)
        towers.query.embed_batch(["a query", "another"], "query").sum().backward()
        assert all(p.grad is None for p in towers.document.parameters())
        trained = [n for n, p in towers.query.named_parameters() if p.grad is not None]
        assert trained == (["head.weight"] if tower == "adapter" else trained) and trained


def test_a_corpus_over_the_full_softmax_limit_keeps_every_training_text_and_samples_the_rest(
    tiny_model, monkeypatch
):
    from common.data import Doc
    from training import towers
    from training.encoder import Encoder

    pairs = toy_pairs(12)
    corpus = [Doc(f"x{i}", "", f"filler document number {i}") for i in range(40)] + _corpus(pairs)
    monkeypatch.setattr(towers, "FULL_SOFTMAX_MAX", 20)
    texts, vectors = towers._bank(Encoder.load(tiny_model), tiny_model, pairs, corpus, seed=0)
    assert len(texts) == len(vectors) == 20 and len(set(texts)) == 20
    assert {p.positive for p in pairs} <= set(texts)  # each positive keeps its row: the loss finds its target


def test_the_adapter_at_the_identity_embeds_exactly_as_the_base(tiny_model, tmp_path):
    from training.encoder import Encoder
    from training.towers import build_towers

    base = Encoder.load(tiny_model)
    towers = build_towers(recipe_config(str(tiny_model), "unused", tower="adapter"), base)
    texts = ["a short query", "a somewhat longer query about rivers and stones", "ü"]
    assert np.array_equal(towers.query.encode(texts, "query"), base.encode(texts, "query"))
    towers.query.save(tmp_path / "adapter")  # saved as sentence-transformers' Dense and loaded back
    assert (tmp_path / "adapter" / "2_Dense" / "config.json").exists()
    assert np.allclose(
        Encoder.load(tmp_path / "adapter").encode(texts, "query"), base.encode(texts, "query"), atol=1e-6
    )


def test_a_trained_adapter_exports_with_parity_and_its_head_in_the_query_graph(tiny_model, tmp_path):
    from exporter.manifest import Manifest
    from exporter.onnx_export import export
    from exporter.runtime import OnnxEmbedder
    from training.encoder import Encoder
    from training.models import load_model

    model = _towers(tiny_model, tmp_path / "run", "adapter")
    head = Encoder.load(model / "query").head.weight.detach()
    assert not torch.allclose(head, torch.eye(head.shape[0]))  # it learnt something
    out = export(model, tmp_path / "export", progress=False)
    query = Manifest.load(out / "query")
    assert (
        query.pooling == "none" and query.output == "sentence_embedding"
    )  # Vespa cannot apply the map itself
    assert query.parity["fp32"]["query"]["max_abs_diff"] < 1e-5
    towers, served = load_model(model), OnnxEmbedder(out)
    texts = ["apple river stone", "comet lemon falcon harbor"]
    for kind in ("query", "passage"):
        assert np.abs(towers.encode(texts, kind) - served.embed(texts, kind)).max() < 1e-5


def test_both_towers_export_with_parity_and_a_manifest_that_names_the_query_tower(query_tower, query_export):
    from exporter.manifest import Manifest
    from exporter.runtime import OnnxEmbedder
    from training.models import load_model

    root = Manifest.load(query_export)
    assert root.query_tower == "query" and "query/manifest.json" in root.files
    root.verify_files(query_export)
    for m in (root, Manifest.load(query_export / "query")):
        assert m.parity["fp32"]["query"]["max_abs_diff"] < 1e-5
        assert m.parity["fp32"]["passage"]["max_abs_diff"] < 1e-5
    towers, served = load_model(query_tower), OnnxEmbedder(query_export)
    texts = [p.query for p in toy_pairs(8)]
    assert np.abs(towers.encode(texts, "query") - served.embed(texts, "query")).max() < 1e-5
    assert (
        np.abs(towers.encode(texts, "query") - np.stack([served.embed_one(t, "query") for t in texts])).max()
        < 1e-5
    )
    assert np.abs(towers.encode(texts, "passage") - served.embed(texts, "passage")).max() < 1e-5


def test_a_changed_query_tower_file_is_caught(query_export, tmp_path):
    import shutil

    from exporter.manifest import Manifest, ManifestError

    copy = tmp_path / "export"
    shutil.copytree(query_export, copy)
    with open(copy / "query" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestError, match="query/model.onnx: sha256 differs"):
        Manifest.load(copy).verify_files(copy)


def test_separate_towers_both_train(tiny_model, tmp_path):
    from safetensors.torch import load_file

    from training.models import load_model

    model = _towers(tiny_model, tmp_path / "run", "separate")
    assert load_model(model).record["frozen"] is None
    base = load_file(tiny_model / "model.safetensors")
    for side in (model, model / "query"):
        moved = load_file(side / "model.safetensors")
        assert any(not torch.equal(base[k], moved[k]) for k in base)


def _package(export, out, **options):
    from vespa_app.package.build import write_package
    from vespa_app.package.options import AppOptions

    return write_package(export, out, AppOptions(**options))


def test_the_package_embeds_documents_with_the_document_tower_and_queries_with_the_query_tower(
    query_export, tmp_path
):
    from vespa_app.serving import DOCUMENT_EMBEDDER, EMBEDDER

    app = _package(query_export, tmp_path / "app")
    services = (app / "services.xml").read_text()
    assert services.count('type="hugging-face-embedder"') == 2
    assert f'id="{DOCUMENT_EMBEDDER}"' in services and f'id="{EMBEDDER}"' in services
    assert "models/query/model.onnx" in services
    schema = (app / "schemas" / "doc.sd").read_text()
    assert f"embed {DOCUMENT_EMBEDDER}" in schema and f"embed {EMBEDDER} " not in schema
    assert (app / "models" / "query" / "manifest.json").exists()


def test_a_new_query_tower_keeps_the_feed_key_and_a_new_document_tower_changes_it(
    tiny_model, tiny_export, query_export, tmp_path
):
    from exporter.onnx_export import export

    other = export(
        _towers(tiny_model, tmp_path / "run2", "query", seed=7), tmp_path / "export2", progress=False
    )
    first, second = _package(query_export, tmp_path / "a"), _package(other, tmp_path / "b", bm25_weight=0.3)
    assert (first / "models/query/model.onnx").read_bytes() != (
        second / "models/query/model.onnx"
    ).read_bytes()
    assert feed_key(first) == feed_key(second)  # another query tower and another fusion weight: no re-feed
    shared = _package(tiny_export, tmp_path / "c")
    assert feed_key(shared) != feed_key(first)  # another document model: every document again
    chunked = _package(query_export, tmp_path / "d", chunk_tokens=32)
    assert feed_key(chunked) != feed_key(first)


def test_a_redeploy_of_a_new_query_tower_feeds_nothing(tiny_model, query_export, tmp_path):
    """Against the fault server (an HTTP/2 /document/v1): the first feed sends every document, the feed after
    the package with another query tower sends none; a package
    with another document tower re-feeds them all."""
    from fault_server import FaultServer

    from common.data import Doc
    from exporter.onnx_export import export
    from vespa_app.client.feed import feed

    docs = [Doc(f"d{i}", "", p.positive) for i, p in enumerate(toy_pairs(30))]
    other = export(
        _towers(tiny_model, tmp_path / "run2", "query", seed=7), tmp_path / "export2", progress=False
    )
    ledger = tmp_path / "ledger.jsonl"
    with FaultServer() as server:
        first = feed(
            server.url,
            docs,
            ledger,
            tmp_path / "f",
            schema=feed_key(_package(query_export, tmp_path / "a")),
            progress=False,
        )
        assert first.acked == len(docs)
        sent = len(server.stored)
        again = feed(
            server.url,
            docs,
            ledger,
            tmp_path / "f",
            schema=feed_key(_package(other, tmp_path / "b")),
            progress=False,
        )
        assert (again.acked, again.already) == (0, len(docs)) and len(server.stored) == sent
        separate = export(
            _towers(tiny_model, tmp_path / "run3", "separate"), tmp_path / "export3", progress=False
        )
        moved = feed(
            server.url,
            docs,
            ledger,
            tmp_path / "f",
            schema=feed_key(_package(separate, tmp_path / "c")),
            progress=False,
        )
        assert moved.acked == len(docs)


def test_the_embedded_index_serves_a_new_query_tower_without_embedding_a_document(
    tiny_model, query_export, tiny_export, tmp_path, monkeypatch
):
    from common.data import Doc
    from exporter.onnx_export import export
    from exporter.runtime import OnnxEmbedder
    from vespa_app.embedded import BadIndexError, EmbeddedIndex

    docs = [Doc(f"d{i}", "", p.positive) for i, p in enumerate(toy_pairs(30))]
    EmbeddedIndex.build(tmp_path / "index", query_export, docs, progress=False)
    other = export(
        _towers(tiny_model, tmp_path / "run2", "query", seed=7), tmp_path / "export2", progress=False
    )
    real_embed = OnnxEmbedder.embed

    def queries_only(self, texts, kind="passage", *a, **kw):
        assert kind == "query", "a document was embedded again"
        return real_embed(self, texts, kind, *a, **kw)

    monkeypatch.setattr(OnnxEmbedder, "embed", queries_only)
    index = EmbeddedIndex.open(tmp_path / "index")
    index.serve(other)
    reopened = EmbeddedIndex.open(tmp_path / "index")
    text = toy_pairs(30)[3].query
    assert np.allclose(
        reopened.embedder.embed_one(text, "query"), OnnxEmbedder(other).embed_one(text, "query")
    )
    assert reopened.query(text, "semantic", 5)
    with pytest.raises(BadIndexError, match="embeds documents otherwise"):
        reopened.serve(tiny_export)
    # a second index over the same document tower reuses its vectors (cached by the document side)
    EmbeddedIndex.build(tmp_path / "index2", other, docs, progress=False)


@pytest.mark.java
@needs_java()
def test_vespa_embeds_each_tower_as_we_do_and_judges_the_two_embedder_package(query_export, tmp_path):
    import shutil

    from common.data import Doc
    from vespa_app.check.structure import PackageError, check_package

    app = _package(query_export, tmp_path / "app")
    report = check_package(app, docs=[Doc(f"d{i}", "t", p.positive) for i, p in enumerate(toy_pairs(6))])
    assert report.vespa == "accepted"
    assert report.embedding["document_min_cosine"] > 0.9999 and report.embedding["query_min_cosine"] > 0.9999
    # documents through Vespa's indexing statement (the document embedder) and queries through its query stack
    assert not report.container.problems
    broken = tmp_path / "broken"
    shutil.copytree(app, broken)
    schema = broken / "schemas" / "doc.sd"
    schema.write_text(schema.read_text().replace("embed document-embedder", "embed no-such-embedder"))
    with pytest.raises(PackageError, match="no-such-embedder"):
        check_package(broken)
