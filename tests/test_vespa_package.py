"""The generated application package, checked structurally (Vespa's own check is in test_vespa_java.py)."""

import json
import xml.etree.ElementTree as ET

import pytest

from exporter.manifest import Manifest, ManifestError, sha256
from vespa_app.check.structure import PackageError, structural_check
from vespa_app.package.build import write_package
from vespa_app.package.options import AppOptions


def fake_export(path, **overrides):
    """An export directory with a manifest and stand-in files (the package only copies them)."""
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"onnx")
    (path / "tokenizer.json").write_text("{}")
    values = dict(
        dimension=384,
        pooling="mean",
        normalize=True,
        max_tokens=128,
        prefixes={"query": "", "document": ""},
        inputs=["input_ids", "attention_mask", "token_type_ids"],
        output="last_hidden_state",
    )
    values.update(overrides)
    m = Manifest(**values)
    m.files = {
        n: {"sha256": sha256(path / n), "bytes": (path / n).stat().st_size}
        for n in ("model.onnx", "tokenizer.json")
    }
    m.save(path)
    return path


def build(tmp_path, options=None, **manifest):
    return write_package(fake_export(tmp_path / "export", **manifest), tmp_path / "app", options)


def embedder(app):
    return ET.parse(app / "services.xml").getroot().find(".//component[@type='hugging-face-embedder']")


def test_normalized_mean_model(tmp_path):
    app = build(tmp_path)
    sd = (app / "schemas" / "doc.sd").read_text()
    assert "field embedding type tensor<float>(x[384])" in sd
    assert "distance-metric: prenormalized-angular" in sd
    assert "embed embedder | attribute | index" in sd
    assert "index: enable-bm25" in sd
    for profile in ("bm25", "semantic", "hybrid", "hybrid-linear"):
        assert f"rank-profile {profile} " in sd
    assert "reciprocal_rank_fusion(closeness(field, embedding), bm25sum)" in sd
    e = embedder(app)
    assert e.find("transformer-model").get("path") == "models/model.onnx"
    assert e.find("tokenizer-model").get("path") == "models/tokenizer.json"
    assert (e.findtext("pooling-strategy"), e.findtext("normalize"), e.findtext("max-tokens")) == (
        "mean",
        "true",
        "128",
    )
    assert e.find("transformer-output") is None and e.find("prepend") is None
    assert (app / "models" / "model.onnx").read_bytes() == b"onnx"
    # a query embeds only where its rank profile declares the input: nothing embeds every query
    assert "embed(" not in "".join(p.read_text() for p in (app / "search").rglob("*.xml"))
    bm25 = sd[sd.index("rank-profile bm25 ") : sd.index("rank-profile semantic ")]
    assert "inputs" not in bm25 and "query(q)" not in bm25
    assert (
        "query(q) tensor<float>(x[384])"
        in sd[sd.index("rank-profile semantic ") : sd.index("rank-profile hybrid ")]
    )
    assert sd.count("query(q) tensor") == 1 and sd.count("function bm25sum()") == 1  # shared through inherits
    assert "rank-profile hybrid inherits bm25, semantic {" in sd
    assert not (app / "hosts.xml").exists()
    assert structural_check(app)


def test_unnormalized_cls_uses_angular(tmp_path):
    app = build(tmp_path, pooling="cls", normalize=False, dimension=768)
    assert "distance-metric: angular" in (app / "schemas" / "doc.sd").read_text()
    assert embedder(app).findtext("pooling-strategy") == "cls"
    assert embedder(app).findtext("normalize") == "false"


def test_pooled_graph_reads_sentence_embedding(tmp_path):
    app = build(tmp_path, pooling="none", output="sentence_embedding")
    e = embedder(app)
    assert e.findtext("pooling-strategy") == "none"
    assert e.findtext("transformer-output") == "sentence_embedding"


def test_prefixes_keep_their_trailing_space(tmp_path):
    app = build(tmp_path, prefixes={"query": "query: ", "document": "passage: "})
    e = embedder(app)
    assert e.find("prepend/query").text == "query: "
    assert e.find("prepend/document").text == "passage: "


def test_multi_node_and_cloud(tmp_path):
    app = build(
        tmp_path, AppOptions(nodes=3, redundancy=2, max_links_per_node=32, neighbors_to_explore_at_insert=500)
    )
    services = ET.parse(app / "services.xml").getroot()
    assert services.findtext("content/redundancy") == "2"
    assert len(services.findall("content/nodes/node")) == 3
    assert services.find("admin") is not None
    hosts = ET.parse(app / "hosts.xml").getroot()
    assert {a.text for a in hosts.iter("alias")} >= {
        "content0",
        "content1",
        "content2",
        "container0",
        "admin0",
    }
    sd = (app / "schemas" / "doc.sd").read_text()
    assert "max-links-per-node: 32" in sd and "neighbors-to-explore-at-insert: 500" in sd

    cloud = write_package(tmp_path / "export", tmp_path / "cloud", AppOptions(cloud=True, nodes=2))
    services = ET.parse(cloud / "services.xml").getroot()
    assert services.findtext("content/min-redundancy") == "1"
    assert services.find("content/nodes").get("count") == "2"
    assert not (cloud / "hosts.xml").exists()


def test_scaling_options(tmp_path):
    app = build(tmp_path, AppOptions(cell_type="bfloat16", binarized=True))
    sd = (app / "schemas" / "doc.sd").read_text()
    assert "tensor<bfloat16>(x[384])" in sd
    assert "field embedding_binary type tensor<int8>(x[48])" in sd
    assert "distance-metric: hamming" in sd and "rank-profile binary" in sd


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"dimension": 0}, "dimension"),
        ({"pooling": "max"}, "pooling"),
        ({"pooling": "none"}, "does not fit output"),
        ({"inputs": ["ids"]}, "inputs"),
        ({"prefixes": {"query": ""}}, "prefixes"),
    ],
)
def test_bad_manifests_are_named(tmp_path, bad, message):
    with pytest.raises(ManifestError, match=message):
        build(tmp_path, **bad)
    assert not (tmp_path / "app").exists()


def test_missing_or_broken_manifest(tmp_path):
    (tmp_path / "e").mkdir()
    with pytest.raises(ManifestError, match="not found"):
        write_package(tmp_path / "e", tmp_path / "app")
    (tmp_path / "e" / "manifest.json").write_text("{oops")
    with pytest.raises(ManifestError, match="malformed JSON"):
        write_package(tmp_path / "e", tmp_path / "app")
    (tmp_path / "e" / "manifest.json").write_text(json.dumps({"dimension": 3}))
    with pytest.raises(ManifestError, match="missing"):
        write_package(tmp_path / "e", tmp_path / "app")


def test_bad_options(tmp_path):
    with pytest.raises(ValueError, match="redundancy"):
        build(tmp_path, AppOptions(nodes=1, redundancy=2))


def test_structural_check_catches_dimension_drift(tmp_path):
    app = build(tmp_path)
    sd = app / "schemas" / "doc.sd"
    sd.write_text(sd.read_text().replace("x[384]", "x[256]"))
    with pytest.raises(PackageError, match="does not match"):
        structural_check(app)


def test_without_java_the_check_says_what_was_skipped(tmp_path, monkeypatch, capsys):
    import vespa_app.check.structure as check
    from siamese.cli import main

    app = build(tmp_path)
    monkeypatch.setattr(check, "java_missing", lambda: "java and mvn not found on PATH")
    report = check.check_package(app)
    assert report.vespa == "skipped" and "only Python's structural checks ran" in report.vespa_reason
    assert main(["app", "check", str(app)]) == 0
    out = capsys.readouterr().out
    assert "Vespa config model: skipped — java and mvn not found on PATH" in out
