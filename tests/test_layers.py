"""The floors keep their order: common → training → exporter → vespa_app → siamese, each importing only those
before it (function-local imports included), and no import cycle between modules. Read by the same code as
``benchmarks/structure.py`` prints."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import structure  # noqa: E402


def test_no_import_runs_up_a_floor_and_none_goes_round():
    figures = structure.read(REPO)
    assert figures["imports running up"] == []
    assert figures["import cycles"] == []
    assert figures["vespa_app → training imports"] == 0, "Vespa's floor knows nothing of training"
    floors = {key.split(" → ")[0] for key in figures["imports between floors"]}
    assert floors == set(structure.FLOORS)


def test_the_reading_sees_an_import_that_runs_up(tmp_path):
    for floor in structure.FLOORS:
        (tmp_path / floor).mkdir()
        (tmp_path / floor / "__init__.py").write_text("")
    (tmp_path / "training" / "late.py").write_text("def f():\n    from vespa_app import x\n")
    (tmp_path / "vespa_app" / "x.py").write_text("from training import late\n")
    (tmp_path / "common" / "a.py").write_text("from . import b\n")
    (tmp_path / "common" / "b.py").write_text("from common import a\n")
    figures = structure.read(tmp_path)
    assert figures["imports running up"] == ["training/late.py:2 → vespa_app.x"]
    assert figures["import cycles"] == [["common.a", "common.b"], ["training.late", "vespa_app.x"]]
    assert figures["vespa_app → training imports"] == 1
