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


# Where our own modules may be imported inside a function: the command lines (and training/config.py, whose
# fields are their flags), so that `siamese --help` and the light commands load only what they use.
COMMAND_LINES = (
    "siamese/cli.py",
    "training/cli.py",
    "exporter/cli.py",
    "vespa_app/cli.py",
    "vespa_app/app_cli.py",
    "training/config.py",
)
WHAT_IT_WOULD_LOAD = """
import json, os, sys
from siamese.cli import main  # the start-up every command pays
loaded, own = set(sys.modules), {"common", "training", "exporter", "vespa_app", "siamese"}
found = {}
for target in sys.argv[1:]:
    read, write = os.pipe()
    if os.fork() == 0:  # a fresh copy of the started interpreter for each module
        __import__(target)
        new = {m.split(".")[0] for m in set(sys.modules) - loaded}
        os.write(write, json.dumps(sorted(m for m in new if m not in sys.stdlib_module_names and m not in own
                                          and not m.startswith("_"))).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        found[target] = json.loads(pipe.read())
    os.wait()
print(json.dumps(found))
"""


def test_our_modules_are_imported_at_the_top_but_where_a_command_would_start_slower():
    """Every function-local import of our own modules is in a command line, and each is held to its reason:
    at the top, the command's start-up would load a library it does not load today (torch, ONNX Runtime,
    httpx, ...). Everywhere else our modules are imported at the top of their module."""
    import json
    import subprocess

    local = structure.read(REPO)["function-local imports of own modules"]
    places = {entry.split(":")[0] for entry in local}
    assert places <= set(COMMAND_LINES), sorted(places - set(COMMAND_LINES))
    targets = sorted({entry.split(" → ")[1] for entry in local})
    out = subprocess.run(
        [sys.executable, "-c", WHAT_IT_WOULD_LOAD, *targets],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    ).stdout
    needless = [target for target, libraries in json.loads(out).items() if not libraries]
    assert not needless, (
        f"imported inside a function, though at the top they would load nothing more: {needless}"
    )
