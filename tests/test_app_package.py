"""models/package.json: what a package serves, recorded by the builder and read by AppPackage alone."""

import json
import shutil

import pytest

from vespa_app.check.structure import PackageError, structural_check
from vespa_app.package.build import write_package
from vespa_app.package.options import AppOptions
from vespa_app.package.record import PACKAGE_FILE, AppPackage, PackageRecordError


@pytest.mark.parametrize(
    "options, kind, dim, chunking",
    [
        (AppOptions(), "single", 32, None),
        (AppOptions(chunk_tokens=24, chunk_overlap=4), "chunked", 32, {"tokens": 24, "overlap": 4}),
        (AppOptions(dim=16, binarized=True, cell_type="bfloat16", bm25_weight=0.3), "single", 16, None),
    ],
)
def test_the_record_says_what_a_single_vector_package_serves(
    tiny_export, tmp_path, options, kind, dim, chunking
):
    app = write_package(tiny_export, tmp_path / "app", options)
    record = AppPackage.open(app)
    assert (record.kind, record.dim, record.model_dim, record.chunking) == (kind, dim, 32, chunking)
    assert (record.cell_type, record.binarized, record.bm25_weight) == (
        options.cell_type,
        options.binarized,
        options.bm25_weight,
    )
    assert record.embedders == {"query": "embedder", "document": "embedder"} and not record.two_towers
    assert record.shape() == {"chunking": chunking, "dim": dim}
    assert (record.chunker() is not None) == (kind == "chunked")
    assert set(record.manifests) == {"models/manifest.json"} and not record.changed_files()
    assert record == AppPackage.open(app)  # read twice, the same record
    assert structural_check(app)[-1] == "dimension and pooling match the manifest"


def test_the_record_of_late_interaction_packages(late_export, tiny_export, tmp_path):
    alone = AppPackage.open(write_package(late_export, tmp_path / "alone"))
    assert (alone.kind, alone.dim, alone.embedders) == ("colbert", None, {"colbert": "colbert"})
    assert alone.colbert == {"cells": "int8", "dim": 16}
    both = AppPackage.open(write_package(tiny_export, tmp_path / "both", colbert_dir=late_export))
    assert (both.kind, both.dim, both.embedders["colbert"], both.colbert["dim"]) == (
        "both",
        32,
        "colbert",
        16,
    )
    assert set(both.manifests) == {"models/manifest.json", "models/colbert/manifest.json"}


def test_a_package_without_its_record_is_refused_in_one_line(tiny_export, tmp_path, capsys):
    from siamese.cli import main

    app = write_package(tiny_export, tmp_path / "app")
    (app / PACKAGE_FILE).unlink()
    with pytest.raises(
        PackageRecordError, match=r"a package built before it was recorded\); rebuild it"
    ) as e:
        AppPackage.open(app)
    assert "\n" not in str(e.value)
    with pytest.raises(PackageError, match="no models/package.json"):
        structural_check(app)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text('{"_id": "d1", "title": "a title", "text": "a text"}\n')
    assert main(["feed", "http://localhost:1", str(corpus), "--package", str(app)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rebuild it with `siamese app build" in err[0]


def test_a_record_this_version_cannot_read_is_refused(tiny_export, tmp_path):
    app = write_package(tiny_export, tmp_path / "app")
    record = json.loads((app / PACKAGE_FILE).read_text())
    for broken in (
        {**record, "format": 99},
        {**record, "kind": "sparse"},
        {k: v for k, v in record.items() if k != "dim"},
    ):
        (app / PACKAGE_FILE).write_text(json.dumps(broken))
        with pytest.raises(PackageRecordError, match="not a package record this version reads"):
            AppPackage.open(app)
    (app / PACKAGE_FILE).write_text("{not json")
    with pytest.raises(PackageRecordError, match="not a package record"):
        AppPackage.open(app)


def test_a_hand_edited_schema_is_named_and_a_drifted_field_refused(tiny_export, tmp_path):
    app = write_package(tiny_export, tmp_path / "app")
    edited = tmp_path / "edited"
    shutil.copytree(app, edited)
    sd = edited / "schemas" / "doc.sd"
    sd.write_text(sd.read_text() + "# tuned by hand\n")
    assert AppPackage.open(edited).changed_files() == ["schemas/doc.sd"]
    assert any("edited since it was built: schemas/doc.sd" in line for line in structural_check(edited))
    sd.write_text(
        sd.read_text().replace("x[32]", "x[24]")
    )  # the record says 32: Vespa would keep 24 silently
    with pytest.raises(PackageError, match="does not match the model's 32 dimensions"):
        structural_check(edited)
