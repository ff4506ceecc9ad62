"""The life of a deployment: deploy a package, feed documents, query through the Vespa query API.

Feeding keeps a ledger of acknowledged document ids (one JSON line each, flushed as they come), so a
re-run sends only what is missing; documents that still fail after retries with backoff are written to a
file with their ids and reasons. At the end, acknowledged + failed = documents in the input, always.
"""
from __future__ import annotations

import io
import json
import shutil
import socket
import sys
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

import httpx

from common.data import unusable_document_id
from common.errors import ConfigError, UserError
from common.lock import locks

from . import profiles
from .backend import Hit
from .serving import SCHEMA, TARGET_HITS

NOT_VESPA_AFTER = 8  # this many "no handler" answers (404/405) and nothing acknowledged: not a document API
QUERY_TIMEOUT_S = 4.0  # the whole answer must come within 5 s: connect, send, Vespa search, read


class VespaUnreachable(UserError, ConnectionError):
    """Nothing answers where Vespa should, or what answers is not Vespa."""


class VespaError(UserError):
    """Vespa (or the container engine in front of it) said no: a rejected deploy, documents that failed."""


def _base(url: str) -> str:
    url = url.rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    return url


def ensure_reachable(url: str, timeout: float = 3.0,
                     hint: str = "Is the container running and the port right (8080)? Deploy with `siamese "
                                 "deploy` first.") -> None:
    """Fail fast, with a message a person can act on, when nothing answers at ``url``."""
    parsed = urlparse(_base(url))
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            pass
    except OSError as e:
        raise VespaUnreachable(f"cannot reach Vespa at {url} ({e.__class__.__name__}: {e}). {hint}") from None


# ---------------------------------------------------------------- deploy

def _zip(package: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(package.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(package))
    return buffer.getvalue()


def wait_until_up(url: str, max_wait: float = 300) -> None:
    deadline = time.time() + max_wait
    last = ""
    while time.time() < deadline:
        try:
            r = httpx.get(f"{_base(url)}/state/v1/health", timeout=5)
            if r.status_code == 200 and r.json().get("status", {}).get("code") == "up":
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            last = str(e)
        time.sleep(2)
    raise VespaUnreachable(f"the application at {url} did not come up within {max_wait:.0f} s (last: {last})")


def deploy_to_config_server(package, config_url: str, query_url: str | None = None, max_wait: float = 300) -> str:
    """prepareandactivate on an existing config server, then wait for the container to answer."""
    package = Path(package)
    ensure_reachable(config_url, hint="Is the config server running and the port right (19071; queries go to "
                                      "8080)?")
    endpoint = f"{_base(config_url)}/application/v2/tenant/default/prepareandactivate"
    r = httpx.post(endpoint, content=_zip(package), headers={"Content-Type": "application/zip"}, timeout=300)
    if r.status_code in (404, 405) or not r.headers.get("content-type", "").startswith("application/json"):
        # Vespa answers a deploy in JSON, even a rejected one; anything else is some other server
        raise VespaUnreachable(f"{config_url} is not a Vespa config server: HTTP {r.status_code} to {endpoint} "
                               f"({r.text[:120]!r}). Give the config server's URL (port 19071; queries go to "
                               "8080).")
    if r.status_code != 200:
        raise VespaError(f"Vespa rejected the deploy of {package} (HTTP {r.status_code}): {r.text[:2000]}")
    host = urlparse(_base(config_url)).hostname
    query_url = query_url or f"http://{host}:8080"
    wait_until_up(query_url, max_wait)
    return query_url


def container_engine() -> str | None:
    """'docker' or 'podman' when one is installed *and* its daemon answers; None otherwise."""
    import subprocess

    for engine in ("docker", "podman"):
        if shutil.which(engine):
            try:
                if subprocess.run([engine, "info"], capture_output=True, timeout=15).returncode == 0:
                    return engine
            except subprocess.TimeoutExpired:
                pass
    return None


def deploy_docker(package, port: int = 8080, max_wait: float = 600) -> str:
    """Start a Vespa container with docker (or podman through its docker socket) and deploy the package."""
    if not container_engine():
        raise VespaError("no running container engine (docker or podman, with its daemon up). Start Docker, or "
                           "deploy to a running Vespa with `--target http://CONFIG_SERVER:19071`, or to Vespa "
                           "Cloud with `--target cloud`.")
    from vespa.deployment import VespaDocker

    app = VespaDocker(port=port).deploy_from_disk("siamese", Path(package), max_wait_application=int(max_wait))
    return f"{app.url}:{app.port}"


def deploy_cloud(package, tenant: str, application: str, key_location: str | None = None) -> str:
    from vespa.deployment import VespaCloud

    cloud = VespaCloud(tenant=tenant, application=application, application_root=str(package),
                       key_location=key_location)
    app = cloud.deploy()
    return app.url


def deploy(package, target: str, *, tenant: str | None = None, application: str | None = None,
           key: str | None = None, query_url: str | None = None, running_ok: bool = False) -> str:
    """The one reading of a deploy target: "docker", "cloud" (with ``tenant`` and ``application``), or a config
    server's URL (port 19071); with ``running_ok`` (``siamese run --vespa``), any other URL is the query endpoint
    of an application already deployed. Returns where queries go."""
    if target == "docker":
        return deploy_docker(package)
    if target == "cloud":
        if not (tenant and application):
            raise ConfigError("--target cloud needs --tenant and --application")
        return deploy_cloud(package, tenant, application, key)
    if running_ok and not target.rstrip("/").endswith(":19071"):
        return target
    return deploy_to_config_server(package, target, query_url)


# ---------------------------------------------------------------- feed

def document_path(doc_id: str, schema: str = SCHEMA, namespace: str = SCHEMA) -> str:
    """The /document/v1 path of one document. Every character but the unreserved ones is percent-encoded,
    ``/`` included, so an id is always one path segment and Vespa decodes it back to exactly that id;
    ``.``, ``..`` and the empty id, which no encoding keeps apart from other paths, are refused."""
    why = unusable_document_id(doc_id)
    if why:
        raise ConfigError(f"document id {doc_id!r} {why}; give the document another id")
    return f"/document/v1/{quote(namespace, safe='')}/{quote(schema, safe='')}/docid/{quote(doc_id, safe='')}"


def _vespa_client(url: str):
    """pyvespa's client with our document paths: pyvespa leaves ``/`` unencoded, so an id such as
    ``../../music/music/docid/x`` would write elsewhere and ``a/c`` would collide with ``a/./b/../c``."""
    from vespa.application import Vespa

    class _Vespa(Vespa):
        def get_document_v1_path(self, id, schema=None, namespace=None, group=None, number=None) -> str:
            if group or number:
                raise ValueError("document paths with group or number are not used here")
            return document_path(str(id), schema or SCHEMA, namespace or schema or SCHEMA)

    return _Vespa(url=url)


@dataclass
class FeedResult:
    total: int = 0
    already: int = 0  # acknowledged in an earlier run (from the ledger)
    acked: int = 0
    failed: dict = field(default_factory=dict)  # id → reason
    seconds: float = 0.0

    @property
    def docs_per_s(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (f"{self.total} documents: {self.acked} fed now, {self.already} fed before, {len(self.failed)} failed "
                f"({self.docs_per_s:.1f} docs/s)")


def _retry_policy(attempts: int, max_backoff: float):
    from tenacity import (AsyncRetrying, retry_if_exception, retry_if_result, stop_after_attempt,
                          wait_random_exponential)

    def transient(response) -> bool:
        return response.get_status_code() in (429, 502, 503, 504)

    # Full-jitter exponential backoff: a broken HTTP/2 connection can fail several quick attempts in a row
    # before the client reconnects, so the budget is counted in attempts *and* time.
    return AsyncRetrying(stop=stop_after_attempt(attempts), wait=wait_random_exponential(multiplier=0.1, max=max_backoff),
                         retry=retry_if_result(transient) | retry_if_exception(lambda e: True), reraise=True)


def ledger_target(url: str, schema: str | None = None) -> dict:
    """Whom a ledger line's acknowledgement came from: the endpoint, the document type and namespace, and
    (when known) the schema. Only documents acknowledged by the same target count as fed."""
    return {"url": _base(url), "type": SCHEMA, "namespace": SCHEMA, "schema": schema}


def _already_fed(ledger: Path, target: dict) -> set[str]:
    done = set()
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            try:
                entry = json.loads(line)
                if entry["target"] == target:
                    done.add(entry["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a line cut short by a crash, or one without a target: the document is sent again
    return done


def feed_fields(doc, chunker=None) -> dict:
    """The fields of a document as the feed sends them; the schema's indexing statements take it from here.
    For a chunked package (``AppPackage.chunker``) the chunks too: Vespa embeds each one."""
    fields = {"id": doc.id, "title": doc.title, "text": doc.text}
    if chunker:
        fields["chunks"] = chunker.passage_chunks(doc.title, doc.text)
    return fields


def _check_ids(docs) -> None:
    """Refuse, before anything is sent, ids that would not each reach a document of their own."""
    for d in docs:
        document_path(d.id)
    twice = [doc_id for doc_id, n in Counter(d.id for d in docs).items() if n > 1]
    if twice:
        raise ConfigError(f"{len(twice)} duplicate document id(s), e.g. {twice[0]!r}: each would replace the "
                          "other in Vespa. Make the ids unique.")


@locks("siamese feed", lambda a: a["ledger"])
def feed(url: str, docs, ledger, failed_file, *, schema: str | None = None, chunker=None, concurrency: int = 16,
         attempts: int = 10, max_backoff: float = 5.0, progress: bool = True) -> FeedResult:
    """Feed ``docs`` (``common.data.Doc``) to ``url``; ids the ledger records as acknowledged by the same
    target (``ledger_target``; ``schema``: the package's ``AppPackage.feed_key``) are skipped. ``chunker``: a
    chunked package's (``AppPackage.chunker``), whose chunks go with each document."""
    from tqdm.auto import tqdm

    docs = list(docs)
    _check_ids(docs)
    ensure_reachable(url)
    ledger, failed_file = Path(ledger), Path(failed_file)
    target = ledger_target(url, schema)
    done = _already_fed(ledger, target)
    result = FeedResult(total=len(docs))
    todo = [d for d in docs if d.id not in done]
    result.already = len(docs) - len(todo)
    bar = tqdm(total=len(todo), desc="feed", unit="doc", disable=not progress)
    started = time.time()
    acked = set()
    refused = []  # (doc_id, answer) while nothing is acknowledged and every answer says "no such handler"
    stop = threading.Event()
    with open(ledger, "a") as ledger_fh:
        def on_response(response, doc_id):
            status = response.get_status_code()
            if status in (404, 405) and not acked:
                refused.append((doc_id, f"HTTP {status}"))
                if len(refused) >= NOT_VESPA_AFTER:
                    stop.set()
            if status == 200:
                ledger_fh.write(json.dumps({"id": doc_id, "target": target}) + "\n")
                ledger_fh.flush()
                acked.add(doc_id)
                result.failed.pop(doc_id, None)
                result.acked = len(acked)
            else:
                body = response.get_json() if hasattr(response, "get_json") else {}
                result.failed[doc_id] = f"HTTP {response.get_status_code()}: {json.dumps(body)[:300]}"
            bar.update(1)
            bar.set_postfix(docs_s=f"{result.acked / max(time.time() - started, 1e-9):.1f}", failed=len(result.failed))

        def operations():
            for d in todo:
                if stop.is_set():  # not a document API: send nothing more
                    return
                yield {"id": d.id, "fields": feed_fields(d, chunker)}

        app = _vespa_client(_base(url))
        app.feed_async_iterable(operations(),
                                schema=SCHEMA, namespace=SCHEMA, callback=on_response, max_workers=concurrency,
                                max_queue_size=max(concurrency * 4, 64),
                                docv1_retry_policy=_retry_policy(attempts, max_backoff))
    bar.close()
    result.seconds = time.time() - started
    for d in todo:  # never lose track of a document, whatever the client did
        if d.id not in acked and d.id not in result.failed:
            result.failed[d.id] = "not sent: the endpoint is not a Vespa document API" if stop.is_set() \
                else "no response recorded"
    with open(failed_file, "w") as fh:
        for doc_id, reason in result.failed.items():
            fh.write(json.dumps({"id": doc_id, "reason": reason}) + "\n")
    if stop.is_set() and not acked:
        unsent = sum(reason.startswith("not sent") for reason in result.failed.values())
        raise VespaUnreachable(f"{url} is not a Vespa document API: the first {len(refused)} documents got "
                               f"{refused[0][1]} (no handler for /document/v1/) and the other {unsent} were not "
                               f"sent (all listed in {failed_file}). Give the container's URL (port 8080), where "
                               "the application is deployed.")
    return result


# ---------------------------------------------------------------- query

def query_body(text: str, profile: str = "semantic", hits: int = 10, target_hits: int = TARGET_HITS,
               chunked: bool = False) -> dict:
    """The query API request for ``text`` with a rank profile of ``profiles.PROFILES``; ``chunked``: for a
    chunked package, whose hits then carry their best chunk."""
    return (profiles.get(profile).query_params(text, hits, target_hits, chunked)
            | {"timeout": f"{QUERY_TIMEOUT_S:.0f}s"})


def hits_from_response(body: dict) -> list[Hit]:
    """The hits of a query API response. In a chunked package each hit also carries its best chunk: the one
    element its ``chunks`` summary holds (the package selects it by ``closest(embedding)``), or, from a
    package whose summary holds them all, the element at the label ``closest(embedding)`` names."""
    hits = []
    for h in body["root"].get("children", []):
        fields = h.get("fields", {})
        hits.append(Hit(fields.get("id", h["id"]), float(h["relevance"]), fields.get("title", ""), _best_chunk(fields)))
    return hits


def _best_chunk(fields: dict) -> str:
    chunks = fields.get("chunks")
    closest = (fields.get("matchfeatures") or {}).get(profiles.BEST_CHUNK)
    if not chunks or not isinstance(closest, dict):
        return ""
    if len(chunks) == 1:
        return chunks[0]
    # Tensor JSON: short form {"type", "cells": {label: value}}, long form cells [{"address", "value"}], or
    # short-value {label: value} (format.tensors); the nearest chunk is the cell of value 1.
    cells = closest.get("cells", closest)
    if isinstance(cells, list):
        cells = {c["address"]["chunk"]: c["value"] for c in cells}
    labels = [label for label, value in cells.items() if value]
    if not labels or not labels[0].isdigit() or int(labels[0]) >= len(chunks):
        return ""
    return chunks[int(labels[0])]


class VespaBackend:
    """The search backend interface over a running Vespa: the query API over plain HTTP, with a hard
    5-second budget per query so a dead or wrong endpoint is reported at once, not after retries."""

    def __init__(self, url: str, chunked: bool = False):
        """``chunked``: the deployed package is chunked (``AppPackage.chunked``): ask for each hit's best chunk."""
        self.url, self.chunked = _base(url), chunked
        ensure_reachable(self.url)
        self.client = httpx.Client(timeout=httpx.Timeout(QUERY_TIMEOUT_S))

    def query(self, text: str, profile: str = "semantic", hits: int = 10) -> list[Hit]:
        endpoint = f"{self.url}/search/"
        try:
            r = self.client.post(endpoint, json=query_body(text, profile, hits, chunked=self.chunked))
        except httpx.TimeoutException:
            raise VespaUnreachable(f"query to {endpoint} failed: no answer within {QUERY_TIMEOUT_S:.0f} s") from None
        except httpx.HTTPError as e:
            raise VespaUnreachable(f"query to {endpoint} failed: {e.__class__.__name__}: {str(e)[:200]}. "
                                   "Is this the container's query endpoint (port 8080)?") from None
        try:
            body = r.json()
        except ValueError:
            raise VespaUnreachable(f"query to {endpoint} failed: HTTP {r.status_code} with a body that is not "
                                   f"JSON ({r.text[:120]!r}); this is not a Vespa query endpoint") from None
        if r.status_code != 200 or "root" not in body:
            errors = body.get("root", {}).get("errors") or body
            raise VespaUnreachable(f"query to {endpoint} failed: HTTP {r.status_code}: {json.dumps(errors)[:500]}")
        return hits_from_response(body)

    def feed(self, docs, ledger="feed-ledger.jsonl", failed_file="feed-failed.jsonl", **kw) -> FeedResult:
        return feed(self.url, docs, ledger, failed_file, **kw)


def print_hits(hits: list[Hit], out=None) -> None:
    out = out or sys.stdout
    for rank, h in enumerate(hits, 1):
        print(f"{rank:3d}. {h.score:9.4f}  {h.id:>12}  {h.title[:90]}", file=out)
        if h.passage:  # chunked: the best chunk, the part that matched
            print(f"{'':29}{h.passage[:160]}", file=out)
