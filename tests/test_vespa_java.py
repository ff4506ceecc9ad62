"""Vespa's own Java code on our packages: the config model that accepts or rejects a deploy, and the
HuggingFaceEmbedder that embeds inside a Vespa container. Runs wherever java and mvn are present."""

import shutil

import numpy as np
import pytest
from conftest import needs_java

from common.vectors import cosine
from exporter.parity import parity_texts
from training.encoder import Encoder
from vespa_app.check.java import vespa_embed, vespa_model_check
from vespa_app.check.structure import PackageError, check_package
from vespa_app.package.build import write_package
from vespa_app.package.options import AppOptions

pytestmark = [pytest.mark.java, needs_java()]


@pytest.fixture(scope="module")
def package(tiny_export, tmp_path_factory):
    return write_package(tiny_export, tmp_path_factory.mktemp("pkg") / "app")


def broken(package, tmp_path, edit):
    copy = tmp_path / "broken"
    shutil.copytree(package, copy)
    edit(copy)
    return copy


def edit_schema(old, new):
    def edit(app):
        sd = app / "schemas" / "doc.sd"
        text = sd.read_text()
        assert old in text
        sd.write_text(text.replace(old, new, 1))

    return edit


def test_package_compiles_in_vespas_config_model(package):
    result = vespa_model_check(package)
    assert result["accepted"] is True
    assert result["vespa_version"].startswith("8.")
    report = check_package(package)
    assert report.vespa == "accepted"
    assert any("vespa-verify-ranksetup" in n for n in report.not_checked)  # said, not pretended


@pytest.mark.parametrize(
    "options",
    [
        AppOptions(nodes=2, redundancy=2),
        AppOptions(binarized=True, cell_type="bfloat16"),
        AppOptions(documents=1_000_000),  # the HNSW settings chosen for a million vectors
        AppOptions(max_links_per_node=48, neighbors_to_explore_at_insert=400, explore_additional=500),
    ],
)
def test_variants_compile(tiny_export, tmp_path, options):
    assert vespa_model_check(write_package(tiny_export, tmp_path / "app", options))["accepted"]


def test_cloud_variant_compiles_as_hosted(tiny_export, tmp_path):
    app = write_package(tiny_export, tmp_path / "app", AppOptions(cloud=True, nodes=2))
    assert vespa_model_check(app, hosted=True)["accepted"]


def test_rank_expression_that_does_not_parse(package, tmp_path):
    app = broken(package, tmp_path, edit_schema("bm25sum\n", "bm25sum +* (2\n"))
    with pytest.raises(PackageError, match="Invalid expression.*bm25sum"):
        vespa_model_check(app)


def test_query_tensor_of_the_wrong_dimension(package, tmp_path):
    app = broken(
        package,
        tmp_path,
        edit_schema(
            "query(q) tensor<float>(x[32])\n        }\n        first-phase {\n            expression {\n"
            "                closeness(field, embedding)",
            "query(q) tensor<float>(x[7])\n        }\n        first-phase {\n            expression {\n"
            "                closeness(field, embedding) + sum(query(q) * attribute(embedding))",
        ),
    )
    with pytest.raises(
        PackageError, match=r"Unequal dimension x in tensor<float>\(x\[7\]\) and tensor<float>\(x\[32\]\)"
    ):
        vespa_model_check(app)


def test_embedder_whose_model_file_is_missing(package, tmp_path):
    app = broken(package, tmp_path, lambda a: (a / "models" / "model.onnx").unlink())
    # Vespa's config model does not open model files (file distribution does, at deploy); Vespa's embedder
    # does, and that is where the package is caught.
    with pytest.raises(PackageError, match="NoSuchFileException.*models/model.onnx"):
        vespa_embed(app, ["text"])
    with pytest.raises(PackageError, match="not in the package"):
        check_package(app)


def test_hnsw_settings_where_vespa_cannot_have_them(package, tmp_path):
    mapped = broken(
        package,
        tmp_path,
        edit_schema(
            "    fieldset default {",
            (
                "    field sparse type tensor<float>(x{}) "
                "{\n        indexing: input title | attribute | index\n        index "
                "{\n            hnsw {\n                max-links-per-node: 16\n            }\n        }\n"
                "    }\n    fieldset default {"
            ),
        ),
    )
    with pytest.raises(PackageError, match="does not support having an 'index'"):
        vespa_model_check(mapped)
    shutil.rmtree(mapped)
    not_indexed = broken(
        package, tmp_path, edit_schema("embed embedder | attribute | index", "embed embedder | attribute")
    )
    with pytest.raises(PackageError, match="hnsw index parameters must also specify 'index'"):
        vespa_model_check(not_indexed)


def test_hnsw_on_a_string_field_is_accepted_by_vespa(package, tmp_path):
    """Pinned finding (Vespa 8.700): the config model ignores an hnsw block on a string field. If this starts
    failing, Vespa began rejecting it, and the test above can take this case too."""
    app = broken(
        package,
        tmp_path,
        edit_schema(
            "field id type string {\n            indexing: summary | attribute\n        }",
            "field id type string {\n            indexing: summary | attribute | index\n"
            "            index {\n                hnsw {\n                    max-links-per-node: 16\n"
            "                }\n            }\n        }",
        ),
    )
    assert vespa_model_check(app)["accepted"]


@pytest.mark.parametrize("int8, bound", [(False, 0.9999), (True, 0.99)])
def test_vespas_embedder_agrees_with_our_pytorch_model(
    tiny_trained, tiny_export, tiny_export_int8, tmp_path, int8, bound
):
    export_dir = tiny_export_int8 if int8 else tiny_export
    app = write_package(export_dir, tmp_path / "app")
    texts = parity_texts(20, 20)  # claims, abstracts beyond max tokens, non-ASCII, punctuation only
    assert len(texts) >= 50
    vespa = vespa_embed(app, texts)
    assert (
        vespa["config"]["prepend_query"] == "query: " and vespa["config"]["prepend_document"] == "passage: "
    )
    encoder = Encoder.load(tiny_trained)
    ours_doc, ours_query = encoder.encode(texts, "passage"), encoder.encode(texts, "query")
    doc_cos, query_cos = cosine(vespa["document"], ours_doc), cosine(vespa["query"], ours_query)
    assert doc_cos.min() >= bound, (doc_cos.min(), texts[int(doc_cos.argmin())])
    assert query_cos.min() >= bound, (query_cos.min(), texts[int(query_cos.argmin())])
    # the contexts differ only by the prefix, so the two sides must not be identical
    assert not np.allclose(vespa["document"], vespa["query"])
