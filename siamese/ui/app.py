"""`siamese ui`: a local web page over a run, to look before trusting it.

- ``GET /`` and ``GET /search?q=TEXT``: one box, a column per system (``systems.py``) with each hit's rank,
  title, snippet (the query's words marked), score, a mark on documents the run's judgements call relevant
  when the query is one of its test queries, and each column's latency; a picker of the test queries, tagged
  seen or unseen.
- ``GET /compare?set=main|GUARD&only=all|seen|unseen&sort=change|...``: every query of a set with each
  system's nDCG@10 and the change against the base, sortable (a click on a header), each opening in Search.
- ``GET /report``: ``report.md`` rendered (raw HTML in it is not passed through), its plot beside it.
- ``GET /progress.json``: the stage a `siamese run` writing the folder is at; the pages poll it while it runs.

Flask (Werkzeug's server, Jinja's autoescaping) does the HTTP and the escaping: every document and query
text reaches the page as text. It binds 127.0.0.1 unless told otherwise, serves no file of the run but those
``run_folder.SERVED_FILES`` names, and writes nothing.
"""

from __future__ import annotations

from flask import Flask, Response, abort, jsonify, render_template, request
from markdown import Markdown

from siamese.ui.run_folder import RunFolder
from siamese.ui.snippets import query_terms, snippet

MAX_QUERY = 500  # characters: a longer text is refused, not cut


def create_app(run: RunFolder, systems) -> Flask:
    """The page over ``run``; ``systems()`` gives what answers the columns (built on first use: loading the
    index and the base model takes seconds)."""
    app = Flask(__name__)
    app.config["JSON_SORT_KEYS"] = False
    cached = {}

    def answer():
        if "systems" not in cached:
            cached["systems"] = systems()
        return cached["systems"]

    def judged() -> dict:
        """The run's test queries by text: id, seen, relevant documents."""
        if "judged" not in cached:
            main = (run.per_query or {}).get("main", {}).get("queries", {})
            cached["judged"] = {q["text"]: {"id": qid, **q} for qid, q in main.items()}
        return cached["judged"]

    @app.get("/")
    @app.get("/search")
    def search():
        text = request.args.get("q", "").strip()
        if len(text) > MAX_QUERY:
            return render_template(
                "search.html",
                run=run,
                text=text[:MAX_QUERY],
                columns=[],
                judged=judged(),
                error=f"the query is longer than {MAX_QUERY} characters",
            ), 400
        columns, known = [], judged().get(text)
        if text:
            docs = {d.id: d for d in answer().index.docs}
            terms = query_terms(text)
            for column in answer().search(text):
                column.shown = [
                    {
                        "rank": rank,
                        "id": h.id,
                        "title": h.title or docs[h.id].title,
                        "score": h.score,
                        "relevant": bool(known) and h.id in known["relevant"],
                        "snippet": snippet(h.passage or docs[h.id].text, terms),
                    }
                    for rank, h in enumerate(column.hits, 1)
                ]
                columns.append(column)
        return render_template(
            "search.html", run=run, text=text, columns=columns, judged=judged(), known=known
        )

    @app.get("/compare")
    def compare():
        per_query = run.per_query
        if not per_query:
            return render_template("compare.html", run=run, sets=[], rows=[], missing=True)
        sets = [name for name in per_query if name != "kinds"]
        chosen = request.args.get("set", "main")
        if chosen not in sets:
            abort(404)
        only = request.args.get("only", "all")
        table = comparison(per_query, chosen, only)
        key = request.args.get("sort", "change")
        if key in table["columns"] + ["change", "query"]:
            table["rows"].sort(key=lambda r: (r.get(key) is None, r.get(key)), reverse=key != "query")
        return render_template(
            "compare.html", run=run, sets=sets, chosen=chosen, only=only, table=table, sort=key, missing=False
        )

    @app.get("/report")
    def report():
        text = run.report
        html = render_markdown(text) if text else None
        return render_template("report.html", run=run, html=html)

    @app.get("/progress.json")
    def progress():
        return jsonify(run.progress or {})

    @app.get("/<name>")
    def served(name: str):
        found = run.served_file(name)
        if not found:
            abort(404)
        path, mime = found
        return Response(path.read_bytes(), mimetype=mime)

    return app


def comparison(per_query: dict, chosen: str, only: str) -> dict:
    """The rows of the compare table: a query a row, a system a column (the base, the model served, and its
    fusion: hybrid-linear as served on the test queries, BM25 + RRF on the guards), and the served model's
    change against the base."""
    kinds, part = per_query["kinds"], per_query[chosen]
    systems = part["systems"]

    base = next((n for n in systems if kinds.get(n) == "base"), None)
    tuned = next((n for n in systems if kinds.get(n) == "tuned"), None)
    fused = next((n for n in systems if n.endswith("hybrid-linear")), None) or next(
        (n for n in systems if kinds.get(n) == "fused" and tuned and n.startswith(tuned)), None
    )
    columns = [n for n in (base, tuned, fused) if n]
    rows = []
    for qid, query in part["queries"].items():
        seen = query.get("seen")
        if (only == "seen" and seen is not True) or (only == "unseen" and seen is not False):
            continue
        row = {"id": qid, "query": query["text"], "seen": seen} | {c: systems[c].get(qid) for c in columns}
        row["change"] = row[tuned] - row[base] if base and tuned and row[base] is not None else None
        rows.append(row)
    return {"columns": columns, "rows": rows, "base": base, "tuned": tuned}


def render_markdown(text: str) -> str:
    """Markdown to HTML with tables, raw HTML left out (shown as the text it is)."""
    md = Markdown(extensions=["tables", "fenced_code"])
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md.convert(text)
