"""Feeding through faults: 429, 503, slow answers, reset streams and dropped connections lose nothing."""

import json
import socket
import time

import pytest
from fault_server import FaultServer

from common.data import Doc
from vespa_app.client.feed import feed
from vespa_app.client.http import VespaUnreachable
from vespa_app.client.query import VespaBackend


def corpus(n=400):
    # every other body is over 1 KiB, which pyvespa sends gzip-compressed
    return [Doc(f"doc-{i}", f"title {i}", f"text {i} " * (20 if i % 2 else 300)) for i in range(n)] + [
        Doc("bad-1-poison", "t", "refused for good"),
        Doc("bad-2-poison", "t", "refused for good"),
    ]


def ids_in(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()]


def test_every_document_is_acknowledged_or_reported(tmp_path):
    docs = corpus()
    ledger, failed = tmp_path / "ledger.jsonl", tmp_path / "failed.jsonl"
    with FaultServer() as server:
        result = feed(server.url, docs, ledger, failed, concurrency=8, progress=False)
        injected = server.faults
        assert injected >= 100, server.injected
        assert all(server.injected[k] > 0 for k in ("429", "503", "slow", "reset", "drop"))
        # acknowledged + failed = input, and what was acknowledged is what the server stored
        assert result.acked + len(result.failed) == len(docs)
        assert set(ids_in(ledger)) == set(server.stored)
        assert set(result.failed) == {"bad-1-poison", "bad-2-poison"}
        assert {r["id"] for r in map(json.loads, failed.read_text().splitlines())} == set(result.failed)
        assert "HTTP 400" in result.failed["bad-1-poison"]
        assert server.stored["doc-7"] == {"id": "doc-7", "title": "title 7", "text": "text 7 " * 20}
        assert server.stored["doc-8"]["text"] == "text 8 " * 300

        # a re-run sends only what is missing
        before = len(server.received)
        again = feed(server.url, docs, ledger, failed, concurrency=8, progress=False)
        resent = set(server.received[before:])
        assert resent == {"bad-1-poison", "bad-2-poison"}
        assert again.already == len(docs) - 2 and again.acked + again.already + len(again.failed) == len(docs)
    lost = len(docs) - len(set(ids_in(ledger))) - len(result.failed)
    assert lost == 0
    print(f"\nfeed faults: injected {injected}, documents {len(docs)}, lost {lost}")


def test_concurrency_is_bounded(tmp_path):
    with FaultServer(
        every_429=0, every_503=0, every_reset=0, every_drop=0, every_slow=2, slow_s=0.05
    ) as server:
        result = feed(
            server.url, corpus(120), tmp_path / "l.jsonl", tmp_path / "f.jsonl", concurrency=4, progress=False
        )
        assert result.acked == 120
        assert 1 < server.max_in_flight <= 4


def test_an_interrupted_feed_resumes_from_the_ledger(tmp_path):
    docs = corpus(100)[:100]
    ledger = tmp_path / "ledger.jsonl"
    with FaultServer(every_drop=0) as server:
        feed(
            server.url, docs[:60], ledger, tmp_path / "f.jsonl", progress=False
        )  # the first run stopped here
        with open(ledger, "a") as fh:
            fh.write('{"id": "doc-6')  # and died while writing a line
        before = len(server.received)
        result = feed(server.url, docs, ledger, tmp_path / "f.jsonl", progress=False)
        assert set(server.received[before:]) == {d.id for d in docs[60:]}
        assert result.already == 60 and result.acked == 40 and not result.failed
        assert set(server.stored) == {d.id for d in docs}


def test_unreachable_vespa_fails_fast_and_clearly(tmp_path):
    url = "http://127.0.0.1:9"  # nothing listens there
    started = time.time()
    with pytest.raises(VespaUnreachable, match="cannot reach Vespa at .*Deploy with"):
        VespaBackend(url).query("anything")
    with pytest.raises(VespaUnreachable, match="cannot reach Vespa"):
        feed(url, corpus(3), tmp_path / "l.jsonl", tmp_path / "f.jsonl", progress=False)
    assert time.time() - started < 5


def test_a_silent_endpoint_fails_within_five_seconds():
    with socket.socket() as listener:  # accepts connections (the backlog does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        started = time.time()
        with pytest.raises(VespaUnreachable, match="no answer within 4 s"):
            VespaBackend(f"http://127.0.0.1:{listener.getsockname()[1]}").query("anything")
        assert time.time() - started < 5


def test_a_url_that_is_not_vespa_fails_fast_and_clearly():
    with FaultServer() as server:  # answers HTTP/2, but has no query API
        started = time.time()
        with pytest.raises(VespaUnreachable, match="query to .*/search/ failed"):
            VespaBackend(server.url).query("anything")
        assert time.time() - started < 5


def test_the_ledger_counts_only_what_the_same_target_acknowledged(tmp_path):
    docs = corpus(13)[:13]
    ledger = tmp_path / "ledger.jsonl"
    no_faults = dict(every_429=0, every_503=0, every_slow=0, every_reset=0, every_drop=0)
    with FaultServer(**no_faults) as first, FaultServer(**no_faults) as second:
        assert feed(first.url, docs, ledger, tmp_path / "f", schema="s1", progress=False).acked == 13
        again = feed(first.url, docs, ledger, tmp_path / "f", schema="s1", progress=False)
        assert (again.already, again.acked) == (13, 0)
        # another Vespa from the same directory: everything is sent (it was "0 fed now, 13 fed before")
        other = feed(second.url, docs, ledger, tmp_path / "f", schema="s1", progress=False)
        assert (other.already, other.acked) == (0, 13) and set(second.stored) == {d.id for d in docs}
        # the same Vespa after a deploy with another schema: everything again
        redeployed = feed(first.url, docs, ledger, tmp_path / "f", schema="s2", progress=False)
        assert (redeployed.already, redeployed.acked) == (0, 13)


def test_a_feed_to_a_server_that_is_not_vespa_stops_early_and_loses_nothing(tmp_path):
    docs = corpus(400)
    with FaultServer(not_vespa=True) as server:  # a web server with no document API: 404 to every path
        with pytest.raises(VespaUnreachable, match="not a Vespa document API.*port 8080"):
            feed(server.url, docs, tmp_path / "ledger.jsonl", tmp_path / "failed.jsonl", progress=False)
        sent = len(server.paths)
    assert sent < len(docs) // 2, (
        f"{sent} of {len(docs)} documents sent to a server that refused the first ones"
    )
    failed = [json.loads(line) for line in open(tmp_path / "failed.jsonl")]
    assert sorted(f["id"] for f in failed) == sorted(d.id for d in docs)  # every document accounted for
    assert sum(f["reason"].startswith("not sent") for f in failed) == len(docs) - sent


NO_FAULTS = dict(every_429=0, every_503=0, every_slow=0, every_reset=0, every_drop=0)


def test_a_document_changed_since_it_was_fed_is_sent_again(tmp_path):
    """Issue 35 #3: the ledger keys on what was sent, not only on the id."""
    docs = corpus(13)[:13]
    ledger = tmp_path / "ledger.jsonl"
    with FaultServer(**NO_FAULTS) as server:
        assert feed(server.url, docs, ledger, tmp_path / "f", schema="s", progress=False).acked == 13
        docs[4] = Doc(docs[4].id, docs[4].title, "the text as the user corrected it")
        again = feed(server.url, docs, ledger, tmp_path / "f", schema="s", progress=False)
        assert (again.acked, again.changed, again.already) == (1, 1, 12)
        assert "1 fed now (1 of them changed since fed before), 12 fed before" in again.summary()
        assert server.stored[docs[4].id]["text"] == "the text as the user corrected it"
        assert feed(server.url, docs, ledger, tmp_path / "f", schema="s", progress=False).already == 13


def test_a_document_vespa_keeps_refusing_is_reported_with_vespas_answer(tmp_path):
    """Issue 35 #4: out of attempts, the reason is Vespa's last answer and the attempts made (it was
    "HTTP 599: RetryError[<Future ...>]")."""
    docs = corpus(3)[:3]
    with FaultServer(**NO_FAULTS | {"every_429": 1}) as server:
        result = feed(
            server.url,
            docs,
            tmp_path / "ledger.jsonl",
            tmp_path / "failed.jsonl",
            attempts=3,
            max_backoff=0.01,
            progress=False,
        )
    assert len(result.failed) == 3
    for reason in result.failed.values():
        assert (
            reason.startswith("HTTP 429 (Vespa's answer to the last of 3 attempts)")
            and "injected fault" in reason
        )
    assert [json.loads(line)["reason"] for line in open(tmp_path / "failed.jsonl")] == list(
        result.failed.values()
    )
