"""A local stand-in for the parts of the Hugging Face hub's HTTP API that a push uses (create a repository,
check a card's YAML, ask how each file is uploaded, commit): what the hub would store is kept in ``repos``.
Tests never reach the real hub."""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HubServer:
    def __init__(self, refuse: int | None = None):
        self.refuse = refuse  # answer every request with this status (401: not authorised)
        self.repos: dict[str, dict] = {}  # "ns/name" → {"private": bool, "branches": {branch: {path: bytes}}}
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                hub.requests.append(f"POST {path}")
                if hub.refuse:
                    return self.answer(hub.refuse, {"error": "Invalid credentials in Authorization header"})
                if path == "/api/repos/create":
                    asked = json.loads(body)
                    repo = f"{asked.get('organization') or 'me'}/{asked['name']}"
                    if repo in hub.repos:
                        return self.answer(409, {"error": "You already created this model repo", "url": repo})
                    hub.repos[repo] = {"private": bool(asked.get("private")), "branches": {"main": {}}}
                    return self.answer(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if path == "/api/validate-yaml":
                    return self.answer(200, {"errors": [], "warnings": []})
                parts = path.split("/")  # /api/models/ns/name/{preupload|commit|branch}/rev
                repo, action, revision = "/".join(parts[3:5]), parts[5], "/".join(parts[6:])
                if repo not in hub.repos:
                    return self.answer(404, {"error": "Repository not found"})
                branches = hub.repos[repo]["branches"]
                if action == "branch":
                    branches.setdefault(revision, dict(branches["main"]))
                    return self.answer(200, {})
                if action == "preupload":
                    files = json.loads(body)["files"]
                    return self.answer(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        },
                    )
                if action == "commit":
                    stored = branches.setdefault(revision, {})
                    for line in body.splitlines():
                        item = json.loads(line)
                        if item["key"] == "file":
                            stored[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    return self.answer(
                        200,
                        {
                            "commitUrl": f"{hub.url}/{repo}/commit/{'0' * 40}",
                            "commitOid": "0" * 40,
                            "success": True,
                        },
                    )
                return self.answer(404, {"error": f"no such route {path}"})

        return Handler
