"""The golden package (``docs/package/``): the application package of the default run's kind of model, kept as
files a reviewer reads top to bottom as one reads a Vespa sample app, and held equal to what `siamese app build`
writes today. A change to the generated schema or services is a change to these files, seen in review.

To write them again after a deliberate change: ``SIAMESE_WRITE_GOLDEN=1 python -m pytest tests/test_golden_package.py``.
"""
import os
import re
import shutil

import pytest

from conftest import REPO
from siamese.cli import main

GOLDEN = REPO / "docs" / "package"
FILES = ("services.xml", "schemas/doc.sd", "search/query-profiles/default.xml", "search/query-profiles/types/root.xml",
         "models/package.json", "models/manifest.json", "models/query/manifest.json")
# What the model's bytes decide (the ONNX exporter's version writes other bytes for the same weights): sha256 and
# the 16-hex-digit keys made from them, and the folders of this machine.
VARYING = re.compile(r"\b[0-9a-f]{64}\b|\b[0-9a-f]{16}\b|\"/[^\"]*\"")


def masked(text: str) -> str:
    return VARYING.sub("<varies>", text)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    """What `siamese run` packages by default: a query tower over the base model's frozen document tower. Built
    with the query tower as training starts it (the base model's weights), so no training is needed: training
    changes only the query graph's bytes, which the package names by hash."""
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
    written = sorted(str(p.relative_to(package)) for p in package.rglob("*") if p.is_file()  # but the models
                     and p.suffix not in (".onnx", ".data") and p.name not in ("tokenizer.json", ".siamese-artifact"))
    assert written == sorted(FILES), "the builder writes a file the golden package does not show"
    for name in FILES:
        assert masked((package / name).read_text()) == masked((GOLDEN / name).read_text()), name
