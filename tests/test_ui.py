"""`siamese ui` (siamese/ui/): the search page over a run, through Flask's test client: every column answers,
relevant documents are marked, the comparison sorts, the report renders, nothing outside the run is served,
and a hostile document's text stays text. The same pages in a real browser: tests/test_ui_browser.py."""

import json

import pytest

from siamese.cli import main


@pytest.fixture(scope="session")
def client(ui_run):
    from siamese.ui.app import create_app
    from siamese.ui.run_folder import RunFolder
    from siamese.ui.serve import systems_for

    run = RunFolder.open(ui_run)
    return create_app(run, lambda: systems_for(run)).test_client()


def test_every_column_answers_a_test_query_and_marks_its_relevant_documents(client, ui_run):
    per_query = json.loads((ui_run / "per_query.json").read_text())
    marked_any = False
    for query in per_query["main"]["queries"].values():
        page = client.get("/search", query_string={"q": query["text"]}).get_data(as_text=True)
        for column in ("BM25", "base (untrained)", "fine-tuned (served)", "hybrid", "hybrid-linear"):
            assert f'data-system="{column}"' in page, column
        assert page.count('class="ms"') == 5 and "A test query" in page
        marked = {
            line.split('data-id="')[1].split('"')[0] for line in page.splitlines() if 'hit relevant"' in line
        }
        assert marked <= set(query["relevant"])  # ✓ only on judged relevant documents
        marked_any |= bool(marked)
    assert marked_any
    plain = client.get("/search", query_string={"q": "a query of no test"}).get_data(as_text=True)
    assert "A test query" not in plain and 'hit relevant"' not in plain


def test_a_hostile_document_is_shown_as_text(client):
    page = client.get("/search", query_string={"q": "coronavirus"}).get_data(as_text=True)
    assert "window.__pwned" in page  # the document is among the hits ...
    assert "<script>window.__pwned" not in page and "<img src=x" not in page  # ... as escaped text
    assert "&lt;script&gt;window.__pwned" in page and "<b onmouseover" not in page


def test_the_comparison_has_every_test_query_and_sorts_by_change(client, ui_run):
    per_query = json.loads((ui_run / "per_query.json").read_text())
    page = client.get("/compare?sort=change").get_data(as_text=True)
    rows = [line for line in page.splitlines() if line.strip().startswith('<td class="change"')]
    assert len(rows) == len(per_query["main"]["queries"])
    changes = [float(r.split('data-value="')[1].split('"')[0]) for r in rows]
    assert changes == sorted(changes, reverse=True)
    unseen = client.get("/compare?only=unseen").get_data(as_text=True)
    assert ">seen</td>" not in unseen and ">unseen</td>" in unseen
    guard = client.get("/compare?set=cisi").get_data(as_text=True)
    assert guard.count('<td class="change"') == len(per_query["cisi"]["queries"])
    assert client.get("/compare?set=nope").status_code == 404


def test_the_report_renders_with_its_plot_and_no_raw_html(client):
    page = client.get("/report").get_data(as_text=True)
    assert "<table>" in page and '<img alt="training loss and metrics" src="plot.png"' in page
    image = client.get("/plot.png")
    assert image.status_code == 200 and image.mimetype == "image/png" and image.data[:4] == b"\x89PNG"


def test_nothing_outside_the_runs_named_files_is_served(client):
    for path in (
        "/results.json",
        "/../results.json",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/train/model/config.json",
        "/report.md",
        "/made_from.json",
    ):
        assert client.get(path).status_code == 404, path
    assert client.post("/search", data={"q": "x"}).status_code == 405  # read-only


def test_a_long_query_is_refused_and_progress_is_read(client, ui_run):
    assert client.get("/search", query_string={"q": "word " * 200}).status_code == 400
    progress = client.get("/progress.json").get_json()
    assert progress["running"] is False and "train" in progress["done"]


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path, capsys):
    assert main(["ui", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a `siamese run` folder" in err and err.count("\n") == 1
    assert main(["ui", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(SystemExit):  # an address, not a name: argparse refuses it before anything starts
        main(["ui", str(tmp_path), "--host", "localhost"])


def test_search_takes_a_run_folder(ui_run, capsys):
    assert main(["search", str(ui_run), "coronavirus", "--hits", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_the_base_column_embeds_queries_with_the_runs_exported_base_as_pytorch_does(ui_run):
    import numpy as np

    from siamese.ui.run_folder import RunFolder
    from siamese.ui.serve import systems_for

    base = systems_for(RunFolder.open(ui_run)).base
    assert base.onnx is not None  # the query tower's run: its document tower is the base, frozen
    for text in ("coronavirus transmission in bats", "a query of no test"):
        onnx, torch = base.embed(text), base.encoder.encode([text], "query")
        assert np.abs(onnx - torch).max() < 1e-5
    from common.vectors import exact_search

    idx, _ = exact_search(base.encoder.encode(["coronavirus"], "query"), base.vectors, 10)
    assert [h.id for h in base.query("coronavirus")] == [base.index.docs[i].id for i in idx[0]]
