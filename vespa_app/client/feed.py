"""Feed documents through pyvespa's HTTP/2 feed client.

A ledger keeps the acknowledged documents (one JSON line each, flushed as they come: the id, a hash of the
fields sent, and who acknowledged it), so a re-run sends only what is missing or changed since; documents that
still fail after retries with backoff are written to a file with their ids and reasons (Vespa's last answer
and the attempts made). At the end, acknowledged + failed = documents in the input, always.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from common.data import unusable_document_id
from common.errors import ConfigError
from common.lock import locks
from vespa_app.client.http import VespaUnreachable, base_url, ensure_reachable
from vespa_app.serving import SCHEMA

NOT_VESPA_AFTER = 8  # this many "no handler" answers (404/405) and nothing acknowledged: not a document API


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
    already: int = 0  # acknowledged in an earlier run (from the ledger), unchanged since
    changed: int = 0  # acknowledged in an earlier run, changed since: sent again
    acked: int = 0
    failed: dict = field(default_factory=dict)  # id → reason
    seconds: float = 0.0

    @property
    def docs_per_s(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        changed = f" ({self.changed} of them changed since fed before)" if self.changed else ""
        return (
            f"{self.total} documents: {self.acked} fed now{changed}, {self.already} fed before, "
            f"{len(self.failed)} failed ({self.docs_per_s:.1f} docs/s)"
        )


def _retry_policy(attempts: int, max_backoff: float):
    from tenacity import (
        AsyncRetrying,
        retry_if_exception,
        retry_if_result,
        stop_after_attempt,
        wait_random_exponential,
    )

    def transient(response) -> bool:
        return response.get_status_code() in (429, 502, 503, 504)

    def last_answer(state):
        """Out of attempts on an answer (429, 503...): that answer, not tenacity's RetryError, so the reason
        recorded is Vespa's own."""
        response = state.outcome.result()
        response.attempts = state.attempt_number
        return response

    # Full-jitter exponential backoff: a broken HTTP/2 connection can fail several quick attempts in a row
    # before the client reconnects, so the budget is counted in attempts *and* time.
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_random_exponential(multiplier=0.1, max=max_backoff),
        retry=retry_if_result(transient) | retry_if_exception(lambda e: True),
        reraise=True,
        retry_error_callback=last_answer,
    )


def ledger_target(url: str, schema: str | None = None) -> dict:
    """Whom a ledger line's acknowledgement came from: the endpoint, the document type and namespace, and
    (when known) the schema. Only documents acknowledged by the same target count as fed."""
    return {"url": base_url(url), "type": SCHEMA, "namespace": SCHEMA, "schema": schema}


def _already_fed(ledger: Path, target: dict) -> dict[str, str | None]:
    """id → the hash of the fields the target acknowledged (the last line wins; None from older ledgers)."""
    done = {}
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            try:
                entry = json.loads(line)
                if entry["target"] == target:
                    done[entry["id"]] = entry.get("fields")
            except (json.JSONDecodeError, KeyError, TypeError):
                pass  # a line cut short by a crash, or one without a target: the document is sent again
    return done


def content_hash(doc) -> str:
    """What the ledger remembers of a document's content: its fields, hashed (chunks follow from the text and
    the package, which the target names)."""
    return hashlib.sha256(json.dumps([doc.id, doc.title, doc.text], ensure_ascii=False).encode()).hexdigest()[
        :16
    ]


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
        raise ConfigError(
            f"{len(twice)} duplicate document id(s), e.g. {twice[0]!r}: each would replace the "
            "other in Vespa. Make the ids unique."
        )


@locks("siamese feed", lambda a: a["ledger"])
def feed(
    url: str,
    docs,
    ledger,
    failed_file,
    *,
    schema: str | None = None,
    chunker=None,
    concurrency: int = 16,
    attempts: int = 10,
    max_backoff: float = 5.0,
    progress: bool = True,
) -> FeedResult:
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
    hashes = {d.id: content_hash(d) for d in docs}
    todo = [d for d in docs if done.get(d.id, "") != hashes[d.id]]
    result.already = len(docs) - len(todo)
    result.changed = sum(d.id in done for d in todo)
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
                ledger_fh.write(json.dumps({"id": doc_id, "fields": hashes[doc_id], "target": target}) + "\n")
                ledger_fh.flush()
                acked.add(doc_id)
                result.failed.pop(doc_id, None)
                result.acked = len(acked)
            else:
                body = response.get_json() if hasattr(response, "get_json") else {}
                tries = (
                    f" (Vespa's answer to the last of {response.attempts} attempts)"
                    if hasattr(response, "attempts")
                    else ""
                )
                result.failed[doc_id] = f"HTTP {response.get_status_code()}{tries}: {json.dumps(body)[:300]}"
            bar.update(1)
            bar.set_postfix(
                docs_s=f"{result.acked / max(time.time() - started, 1e-9):.1f}", failed=len(result.failed)
            )

        def operations():
            for d in todo:
                if stop.is_set():  # not a document API: send nothing more
                    return
                yield {"id": d.id, "fields": feed_fields(d, chunker)}

        app = _vespa_client(base_url(url))
        app.feed_async_iterable(
            operations(),
            schema=SCHEMA,
            namespace=SCHEMA,
            callback=on_response,
            max_workers=concurrency,
            max_queue_size=max(concurrency * 4, 64),
            docv1_retry_policy=_retry_policy(attempts, max_backoff),
        )
    bar.close()
    result.seconds = time.time() - started
    _account(result, todo, acked, failed_file, not_vespa=stop.is_set())
    if stop.is_set() and not acked:
        unsent = sum(reason.startswith("not sent") for reason in result.failed.values())
        raise VespaUnreachable(
            f"{url} is not a Vespa document API: the first {len(refused)} documents got "
            f"{refused[0][1]} (no handler for /document/v1/) and the other {unsent} were not "
            f"sent (all listed in {failed_file}). Give the container's URL (port 8080), where "
            "the application is deployed."
        )
    return result


def _account(result: FeedResult, todo, acked: set, failed_file: Path, not_vespa: bool) -> None:
    """Every document sent for is acknowledged or failed, with a reason, whatever the client did; the failed
    ones are written to ``failed_file``."""
    for d in todo:
        if d.id not in acked and d.id not in result.failed:
            result.failed[d.id] = (
                "not sent: the endpoint is not a Vespa document API" if not_vespa else "no response recorded"
            )
    with open(failed_file, "w") as fh:
        for doc_id, reason in result.failed.items():
            fh.write(json.dumps({"id": doc_id, "reason": reason}) + "\n")
