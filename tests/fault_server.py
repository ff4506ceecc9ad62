"""A fault-injecting HTTP server on 127.0.0.1 that speaks enough of Vespa's /document/v1 API for the feeder.

pyvespa's async feeder talks HTTP/2 only (cleartext, prior knowledge), as Vespa's container on port 8080
does, so this server speaks HTTP/2 through the `h2` library. On a fixed schedule of request numbers it
answers 429 or 503, answers slowly, resets the stream, or drops the whole connection; documents whose id
ends in ``-poison`` are always refused with 400. Everything it acknowledged is kept in ``stored``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events


class FaultServer:
    def __init__(
        self,
        every_429=5,
        every_503=7,
        every_slow=11,
        every_reset=13,
        every_drop=97,
        slow_s=0.3,
        not_vespa=False,
    ):
        self.not_vespa = not_vespa  # answer every request as a web server with no such page does: 404, HTML
        self.schedule = {
            "429": every_429,
            "503": every_503,
            "slow": every_slow,
            "reset": every_reset,
            "drop": every_drop,
        }
        self.slow_s = slow_s
        self.requests = 0
        self.injected = {kind: 0 for kind in self.schedule} | {"400": 0}
        self.stored: dict[str, dict] = {}
        self.received: list[str] = []  # the document id of every request, in arrival order
        self.paths: list[str] = []  # the raw request path of every request
        self.targets: set[tuple[str, str]] = set()  # (namespace, document type) pairs written to
        self.in_flight = 0
        self.max_in_flight = 0
        self.loop = asyncio.new_event_loop()
        self.port = None
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faults(self) -> int:
        return sum(v for k, v in self.injected.items() if k != "400")

    def __enter__(self):
        self.thread.start()
        self._started.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _serve(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(self.loop.create_server(lambda: _H2(self), "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        self.loop.run_forever()
        server.close()

    def decide(self, doc_id: str) -> str | None:
        self.requests += 1
        self.received.append(doc_id)
        fault = next((k for k, every in self.schedule.items() if every and self.requests % every == 0), None)
        if fault:
            self.injected[fault] += 1
        return fault


class _H2(asyncio.Protocol):
    def __init__(self, server: FaultServer):
        self.server = server
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.streams: dict[int, dict] = {}
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.conn.initiate_connection()
        self.flush()

    def flush(self):
        if self.transport and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())

    def data_received(self, data):
        try:
            events = self.conn.receive_data(data)
        except Exception:
            self.transport.abort()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = {"headers": dict(event.headers), "body": b""}
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id]["body"] += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                asyncio.ensure_future(self.handle(event.stream_id))
        self.flush()

    def respond(self, stream_id, status, body, content_type="application/json"):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.conn.send_headers(
                stream_id,
                [
                    (":status", str(status)),
                    ("content-type", content_type),
                    ("content-length", str(len(data))),
                ],
            )
            self.conn.send_data(stream_id, data, end_stream=True)
        except Exception:  # the stream or connection went away meanwhile
            return
        self.flush()

    async def handle(self, stream_id):
        try:
            await self._handle(stream_id)
        except Exception as e:  # a bug here must answer, not leave the client waiting
            self.respond(stream_id, 500, {"message": f"fault server error: {e!r}"})

    async def _handle(self, stream_id):
        request = self.streams.pop(stream_id)
        path, method = request["headers"][":path"].split("?")[0], request["headers"][":method"]
        if self.server.not_vespa:
            self.server.paths.append(path)
            return self.respond(stream_id, 404, "<html><body>404 Not Found</body></html>", "text/html")
        if method == "GET" and path.startswith("/state/v1/health"):
            return self.respond(stream_id, 200, {"status": {"code": "up"}})
        server = self.server
        server.paths.append(path)
        parts = path.split("/")
        # as Vespa's handler: /document/v1/{namespace}/{documentType}/docid/{*}, the rest's segments decoded
        # and joined with "/"
        if len(parts) < 7 or parts[:3] != ["", "document", "v1"] or parts[5] != "docid" or parts[6] == "":
            return self.respond(stream_id, 404, {"message": f"no handler for {path}"})
        doc_id = "/".join(unquote(p, errors="strict") for p in parts[6:])
        server.targets.add((unquote(parts[3]), unquote(parts[4])))
        fault = server.decide(doc_id)
        server.in_flight += 1
        server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            if fault == "drop":
                self.transport.abort()  # the whole connection, every stream on it, as a dying proxy does
                return
            if fault == "reset":
                self.conn.reset_stream(stream_id)
                self.flush()
                return
            if fault == "slow":
                await asyncio.sleep(server.slow_s)
            if fault in ("429", "503"):
                return self.respond(stream_id, int(fault), {"message": "injected fault"})
            if doc_id.endswith("-poison"):
                server.injected["400"] += 1
                return self.respond(stream_id, 400, {"message": f"Could not parse document {doc_id}"})
            body = request["body"]
            if request["headers"].get("content-encoding") == "gzip":  # pyvespa compresses bodies over 1 KiB
                body = gzip.decompress(body)
            server.stored[doc_id] = json.loads(body or b"{}").get("fields", {})
            self.respond(stream_id, 200, {"pathId": path, "id": f"id:doc:doc::{doc_id}"})
        finally:
            server.in_flight -= 1
