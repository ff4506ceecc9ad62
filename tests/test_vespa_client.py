"""The query side of the Vespa client against a stand-in that answers as Vespa's query API does."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vespa_app.client.http import VespaUnreachable
from vespa_app.client.query import VespaBackend, query_body

# The shape of a Vespa /search/ answer (root → children with id, relevance, fields)
ANSWER = {
    "root": {
        "id": "toplevel",
        "relevance": 1.0,
        "fields": {"totalCount": 2},
        "children": [
            {
                "id": "id:doc:doc::31715818",
                "relevance": 0.91,
                "source": "content",
                "fields": {"sddocname": "doc", "id": "31715818", "title": "A title"},
            },
            {
                "id": "id:doc:doc::4381486",
                "relevance": 0.52,
                "source": "content",
                "fields": {"sddocname": "doc", "id": "4381486", "title": "Another"},
            },
        ],
    }
}


@pytest.fixture
def stand_in():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, body))
            status, answer = (
                (200, ANSWER)
                if body["ranking"] != "nope"
                else (
                    400,
                    {
                        "root": {
                            "errors": [
                                {
                                    "code": 4,
                                    "summary": "Invalid query parameter",
                                    "message": "No profile named 'nope'",
                                }
                            ]
                        }
                    },
                )
            )
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_query_sends_yql_with_embed_and_parses_hits(stand_in):
    url, seen = stand_in
    hits = VespaBackend(url).query("vitamin D", "hybrid", hits=2)
    assert [(h.id, h.score, h.title) for h in hits] == [
        ("31715818", 0.91, "A title"),
        ("4381486", 0.52, "Another"),
    ]
    path, body = seen[-1]
    assert path == "/search/"
    assert body["yql"] == (
        "select id, title from doc where ({targetHits:100}nearestNeighbor(embedding, q)) or userQuery()"
    )
    assert body["input.query(q)"] == "embed(embedder, @query)" and body["query"] == "vitamin D"
    assert body["ranking"] == "hybrid" and body["hits"] == 2


def test_bm25_sends_no_query_tensor():
    body = query_body("x", "bm25", 10)
    assert "input.query(q)" not in body and "nearestNeighbor" not in body["yql"]
    assert "targetHits:500" in query_body("x", "semantic", 500)["yql"]
    with pytest.raises(ValueError, match="unknown profile"):
        query_body("x", "dense", 10)


def test_vespa_errors_are_passed_on(stand_in, monkeypatch):
    url, _ = stand_in
    import vespa_app.client.query as client

    monkeypatch.setattr(client, "query_body", lambda text, profile, hits, **kw: {"ranking": "nope"})
    with pytest.raises(VespaUnreachable, match="HTTP 400.*No profile named 'nope'"):
        VespaBackend(url).query("x")


def test_a_deploy_to_a_port_where_no_vespa_listens_or_another_server_answers_says_which(tmp_path):
    import socket

    from vespa_app.client.deploy import deploy_to_config_server

    package = tmp_path / "app"
    (package / "schemas").mkdir(parents=True)
    (package / "services.xml").write_text("<services/>")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(VespaUnreachable, match="config server running.*19071") as e:
        deploy_to_config_server(package, closed)
    assert "siamese deploy` first" not in str(e.value)  # the user is deploying: not "deploy first"

    class WebServer(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            page = b"<html>404 Not Found</html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    server = ThreadingHTTPServer(("127.0.0.1", 0), WebServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(VespaUnreachable, match="is not a Vespa config server: HTTP 404.*19071"):
            deploy_to_config_server(package, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
