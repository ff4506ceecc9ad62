"""The golden package (``docs/package/``): the application package of the default run's kind of model, kept as
files a reviewer reads top to bottom as one reads a Vespa sample app, and held equal to what `siamese app
build` writes today. A change to the generated schema or services is a change to these files, seen in review.

To write them again after a deliberate change:
``SIAMESE_WRITE_GOLDEN=1 python -m pytest tests/test_golden_package.py``.
"""

import hashlib
import json
import os
import shutil

import pytest
from conftest import REPO

from siamese.cli import main

GOLDEN = REPO / "docs" / "package"
FILES = (
    "services.xml",
    "schemas/doc.sd",
    "search/query-profiles/default.xml",
    "search/query-profiles/types/root.xml",
    "models/package.json",
    "models/manifest.json",
    "models/query/manifest.json",
)
# What the machine decides, by place in the JSON files, never by pattern: the parity figures (float rounding
# differs between CPUs), the installed versions, the folders of this machine, and the hashes and sizes of
# files whose bytes the exporter's version or those figures decide (a manifest embeds its parity figures; the
# ONNX graph's bytes follow the exporter). Everything else is the package's, compared as it is.
MACHINE = "<machine>"
MANIFEST_VARIES = ("parity", "versions", "source_model")
PACKAGE_VARIES = ("manifests", "feed_key")  # hashes of the manifests, and of the document graph's bytes
BYTES_VARY = (
    "manifest.json",
    ".onnx",
    ".data",
)  # a manifest embeds parity figures; a graph, the exporter's bytes


def masked_manifest(manifest: dict) -> dict:
    out = {k: (_shape(v) if k in MANIFEST_VARIES else v) for k, v in manifest.items()}
    out["files"] = {
        name: {"sha256": MACHINE, "bytes": MACHINE if name.endswith(BYTES_VARY) else f["bytes"]}
        for name, f in manifest["files"].items()
    }
    return out


def _shape(value):
    """The value's keys kept, its leaves masked: a figure that moves is masked, a figure that goes is not."""
    return {k: _shape(v) for k, v in value.items()} if isinstance(value, dict) else MACHINE


def masked(name: str, text: str):
    """What ``name``'s text says of the package, less what the machine decides."""
    if not name.endswith(".json"):
        return text
    record = json.loads(text)
    if name == "models/package.json":
        return {k: (_shape(v) if k in PACKAGE_VARIES else v) for k, v in record.items()}
    return masked_manifest(record)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """What `siamese run` packages by default: a query tower over the base model's frozen document tower.
    Built with the query tower as training starts it (the base model's weights), so no training is needed:
    training changes only the query graph's bytes, which the package names by hash."""
    from exporter.onnx_export import export
    from training.config import recipe_config
    from training.encoder import Encoder
    from training.model_dir import check_model_dir, default_base_model
    from training.towers import build_towers

    tmp = tmp_path_factory.mktemp("golden")
    base = check_model_dir(default_base_model())
    cfg = recipe_config(str(base), str(tmp / "unused"))
    assert cfg.tower == "query"  # the default recipe's
    build_towers(cfg, Encoder.load(base, device="cpu")).save(tmp / "model", base_dir=base)
    export(tmp / "model", tmp / "export", progress=False)
    assert main(["app", "build", str(tmp / "export"), str(tmp / "app"), "--no-check"]) == 0
    return tmp / "app"


def test_the_golden_package_is_what_app_build_writes(package):
    if os.environ.get("SIAMESE_WRITE_GOLDEN"):
        for name in FILES:
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package / name, GOLDEN / name)
    written = sorted(
        str(p.relative_to(package))
        for p in package.rglob("*")
        if p.is_file()  # but the models
        and p.suffix not in (".onnx", ".data")
        and p.name not in ("tokenizer.json", ".siamese-artifact")
    )
    assert written == sorted(FILES), "the builder writes a file the golden package does not show"
    for name in FILES:
        assert masked(name, (package / name).read_text()) == masked(name, (GOLDEN / name).read_text()), name


def test_what_the_machine_decides_is_checked_where_it_is_masked(package):
    """The masked figures still hold what they promise on this machine: parity within the exporter's bounds,
    every hash a sha256 of the file it names."""
    from exporter.parity import FP32_MAX_ABS, FP32_MIN_COSINE

    for name in ("models/manifest.json", "models/query/manifest.json"):
        manifest = json.loads((package / name).read_text())
        for side in ("query", "passage"):
            figures = manifest["parity"]["fp32"][side]
            assert figures["max_abs_diff"] <= FP32_MAX_ABS and figures["min_cosine"] >= FP32_MIN_COSINE
        folder = (package / name).parent
        for file, entry in manifest["files"].items():
            data = (folder / file).read_bytes()
            assert (hashlib.sha256(data).hexdigest(), len(data)) == (entry["sha256"], entry["bytes"]), file


@pytest.mark.parametrize(
    "edit",
    [
        ("models/manifest.json", lambda m: m | {"dimension": 256}),
        ("models/manifest.json", lambda m: m | {"pooling": "cls"}),
        ("models/manifest.json", lambda m: m | {"prefixes": {"query": "query: ", "document": ""}}),
        ("models/manifest.json", lambda m: m | {"parity": {"fp32": {"texts": 101}}}),  # a side's figures gone
        ("models/manifest.json", lambda m: {k: v for k, v in m.items() if k != "versions"}),
        (
            "models/manifest.json",
            lambda m: m | {"files": {k: v for k, v in m["files"].items() if k != "tokenizer.json"}},
        ),
        ("models/query/manifest.json", lambda m: m | {"max_tokens": 128}),
        (
            "models/manifest.json",
            lambda m: m | {"files": m["files"] | {"tokenizer.json": {"sha256": "", "bytes": 1}}},
        ),
        ("models/package.json", lambda m: m | {"bm25_weight": 0.5}),
        ("models/package.json", lambda m: m | {"schema_sha256": "0" * 64}),
        ("models/package.json", lambda m: m | {"manifests": {"models/manifest.json": "0" * 64}}),  # one went
    ],
)
def test_the_masking_does_not_hide_a_change_of_the_package(edit):
    name, change = edit
    golden = json.loads((GOLDEN / name).read_text())
    assert masked(name, json.dumps(change(golden))) != masked(name, json.dumps(golden))


@pytest.mark.parametrize("name", ["models/manifest.json", "models/query/manifest.json"])
def test_what_the_machine_decides_is_masked(name):
    """Another CPU's parity figures (and so another size and hash of the manifest that embeds them), another
    installation's versions and folders: the same package."""
    golden = json.loads((GOLDEN / name).read_text())
    other = json.loads(json.dumps(golden))
    for side in ("query", "passage"):
        other["parity"]["fp32"][side]["max_abs_diff"] = 2.4959e-07
    other["versions"]["onnxruntime"] = "9.99.0"
    other["source_model"] = "/elsewhere/model"
    for entry in other["files"].values():
        entry["sha256"] = "f" * 64
    if "query/manifest.json" in other["files"]:
        other["files"]["query/manifest.json"]["bytes"] -= 1
    assert masked(name, json.dumps(other)) == masked(name, json.dumps(golden))
