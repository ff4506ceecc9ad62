"""Document ids on the feed path: each id reaches exactly its own document, or is refused before anything
is sent. Checked against the HTTP/2 test server (the exact request paths) and against Vespa's own
/document/v1 path parsing (DocumentV1ApiHandler's DocumentPath, run from Maven Central's jars)."""

import tempfile
from pathlib import Path

import pytest
from conftest import needs_java
from fault_server import FaultServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.data import DataError, Doc, read_corpus, unusable_document_id
from common.errors import UserError
from vespa_app.client.feed import document_path, feed

NO_FAULTS = dict(every_429=0, every_503=0, every_slow=0, every_reset=0, every_drop=0)
HOSTILE = {  # id → the exact request path it must be sent as
    "../../../music/music/docid/victim": (
        "/document/v1/doc/doc/docid/..%2F..%2F..%2Fmusic%2Fmusic%2Fdocid%2Fvictim"
    ),
    "a/c": "/document/v1/doc/doc/docid/a%2Fc",
    "a/./b/../c": "/document/v1/doc/doc/docid/a%2F.%2Fb%2F..%2Fc",
    "x?y#z %20": "/document/v1/doc/doc/docid/x%3Fy%23z%20%2520",
    "Größe 東京 🧬": "/document/v1/doc/doc/docid/Gr%C3%B6%C3%9Fe%20%E6%9D%B1%E4%BA%AC%20%F0%9F%A7%AC",
    "...": "/document/v1/doc/doc/docid/...",
}


@pytest.fixture(scope="module")
def server():
    with FaultServer(**NO_FAULTS) as s:
        yield s


def test_hostile_ids_are_sent_as_one_encoded_segment_each(server, tmp_path):
    start = len(server.paths)
    docs = [Doc(i, "t", "x") for i in HOSTILE]
    result = feed(server.url, docs, tmp_path / "ledger.jsonl", tmp_path / "failed.jsonl", progress=False)
    assert result.acked == len(HOSTILE) and not result.failed
    assert sorted(server.paths[start:]) == sorted(HOSTILE.values())
    assert server.targets == {("doc", "doc")}  # nothing reached another document type
    assert set(HOSTILE) <= set(server.stored)  # a/c and a/./b/../c are two documents, not one


@pytest.mark.parametrize("bad", [".", "..", "", "nul\x00", "a\ud800", "x\ufffe"])
def test_ids_that_cannot_be_a_document_of_their_own_are_refused_before_sending(server, tmp_path, bad):
    start = len(server.paths)
    with pytest.raises(UserError, match="give the document another id"):
        feed(
            server.url,
            [Doc("fine", "t", "x"), Doc(bad, "t", "x")],
            tmp_path / "l.jsonl",
            tmp_path / "f.jsonl",
            progress=False,
        )
    assert len(server.paths) == start


@pytest.mark.parametrize("bad", [".", ".."])
def test_the_reader_names_the_line_of_an_unusable_id(tmp_path, bad):
    path = tmp_path / "corpus.jsonl"
    path.write_text(f'{{"_id": "ok", "text": "a"}}\n{{"_id": "{bad}", "text": "b"}}\n')
    with pytest.raises(DataError, match=f"line 2: unusable id: '{bad}' is a path segment"):
        read_corpus(path)


def test_duplicate_ids_are_refused_before_sending(server, tmp_path):
    start = len(server.paths)
    with pytest.raises(UserError, match="1 duplicate document id"):
        feed(
            server.url,
            [Doc("a/c", "t", "x"), Doc("b", "t", "y"), Doc("a/c", "t", "z")],
            tmp_path / "l.jsonl",
            tmp_path / "f.jsonl",
            progress=False,
        )
    assert len(server.paths) == start


ID_PARTS = st.one_of(
    st.text(min_size=1, max_size=12), st.sampled_from(["/", ".", "..", "%", "%2F", "%2e", "?", "#"])
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(ID_PARTS, min_size=0, max_size=4).map("".join), min_size=1, max_size=5, unique=True))
def test_generated_ids_reach_exactly_their_own_document_or_are_refused(server, ids):
    start = len(server.paths)
    docs = [Doc(i, "t", "x") for i in ids]
    with tempfile.TemporaryDirectory() as tmp:
        if any(unusable_document_id(i) for i in ids):
            with pytest.raises(UserError):
                feed(server.url, docs, Path(tmp, "l"), Path(tmp, "f"), progress=False)
            assert len(server.paths) == start  # refused before anything was sent
            return
        result = feed(server.url, docs, Path(tmp, "l"), Path(tmp, "f"), progress=False)
    assert result.acked == len(ids)
    assert sorted(server.received[start:]) == sorted(ids)  # the server decoded each path back to its id
    assert server.targets == {("doc", "doc")}


@needs_java()
def test_vespas_own_handler_parses_each_path_back_to_its_id():
    from vespa_app.check.java import vespa_document_ids

    ids = list(HOSTILE) + [
        "tab\there",
        "new\nline",
        "%2F",
        "a//b",
        "trailing/",
        "/leading",
        "::",
        "id:doc:doc::x",
        "\x7f",
        "\ufdef",
        "\U000f0000",
    ]
    parsed = vespa_document_ids([document_path(i) for i in ids])
    assert [p.get("id") for p in parsed] == [f"id:doc:doc::{i}" for i in ids]
    # what pyvespa alone would have sent: "a/./b/../c" refused, "a/c" only by luck the same document
    from urllib.parse import quote

    raw = vespa_document_ids([f"/document/v1/doc/doc/docid/{quote('a/./b/../c')}"])
    assert "path segments cannot be" in raw[0]["error"]


@needs_java()
def test_our_id_rules_are_vespas():
    from vespa_app.check.java import vespa_document_ids

    code_points = [
        0x0,
        0x1,
        0x8,
        0x9,
        0xA,
        0xB,
        0xD,
        0x1F,
        0x20,
        0x7F,
        0x80,
        0xFDCF,
        0xFDD0,
        0xFDDF,
        0xFDE0,
        0xFFFD,
        0xFFFE,
        0xFFFF,
        0x10000,
        0x1FFFE,
        0x2FFFF,
        0xF0000,
        0x10FFFD,
        0x10FFFF,
    ]
    ids = [f"a{chr(cp)}" for cp in code_points]
    parsed = vespa_document_ids([f"/document/v1/doc/doc/docid/{_encode(i)}" for i in ids])
    for cp, doc_id, answer in zip(code_points, ids, parsed):
        assert ("error" in answer) == bool(unusable_document_id(doc_id)), (hex(cp), answer)


def _encode(doc_id: str) -> str:
    from urllib.parse import quote

    return quote(doc_id, safe="")
