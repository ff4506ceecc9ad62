"""Readers on good and bad input: every bad case names the file, the line and the fix."""

import gzip
import json

import pytest
from conftest import SCIFACT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.data import DataError, Skipped, read_beir, read_corpus, read_qrels, read_sts_csv
from training.pairs import load_pairs, read_pairs_jsonl

GOOD = '{"query": "q", "positive": "p"}\n'

# (file content, expected problem) — each is one of the cases a user's data really has
BAD_PAIRS = [
    (b'{"query": "q", "positive": "p"\n', "malformed JSON"),
    (b'{"positive": "p"}\n', "missing field: 'query'"),
    (b'{"query": "", "positive": "p"}\n', "empty field: 'query'"),
    (b'{"query": "q", "positive": 3}\n', "wrong type: 'positive' is a int"),
    (b'{"query": "q", "positive": "p", "negatives": "n"}\n', "wrong type: 'negatives'"),
    (b'["q", "p"]\n', "wrong type: a JSON list"),
    (b'{"query": "caf\xe9", "positive": "p"}\n', "not UTF-8: byte 0xe9"),
]


@pytest.mark.parametrize("content, problem", BAD_PAIRS)
def test_bad_pairs_name_file_line_and_fix(tmp_path, content, problem):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(GOOD.encode() + content + GOOD.encode())
    with pytest.raises(DataError) as err:
        read_pairs_jsonl(path)
    assert err.value.line == 2 and str(path) in str(err.value) and problem in str(err.value)
    assert err.value.fix
    skipped = Skipped()
    assert len(read_pairs_jsonl(path, skip_bad=True, skipped=skipped)) == 2
    assert skipped.total == 1 and "skipped 1" in skipped.summary()


def test_empty_file_and_missing_file(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="empty file"):
        read_pairs_jsonl(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="file not found"):
        read_pairs_jsonl(tmp_path / "nope.jsonl")


def test_a_single_50_mb_line(tmp_path):
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write(GOOD.encode())
        fh.write(b'{"query": "q", "positive": "' + b"x" * (50 << 20) + b'"}\n')
    with pytest.raises(DataError, match="line 2: line too long: 52,428,831 bytes"):
        read_pairs_jsonl(path)
    assert len(read_pairs_jsonl(path, skip_bad=True)) == 1


def test_corpus_duplicates_and_gzip(tmp_path):
    path = tmp_path / "corpus.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(
            '{"_id": "1", "title": "t", "text": "a"}\n{"_id": "1", "text": "b"}\n{"_id": 2, "text": "c"}\n'
        )
    with pytest.raises(DataError, match="line 2: duplicate id: '1'"):
        read_corpus(path)
    skipped = Skipped()
    corpus = read_corpus(path, skip_bad=True, skipped=skipped)
    assert list(corpus) == ["1", "2"] and skipped.reasons["duplicate id"] == 1


def test_qrels_naming_unknown_ids(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq9\td1\t1\nq1\td9\t1\nq1\td1\tx\nq1\td1\n")
    with pytest.raises(DataError, match="line 3: unknown id: query 'q9'"):
        read_qrels(path, {"d1"}, {"q1"})
    skipped = Skipped()
    assert read_qrels(path, {"d1"}, {"q1"}, skip_bad=True, skipped=skipped) == {"q1": {"d1": 1}}
    assert skipped.total == 4 and skipped.reasons["malformed row"] == 1 and skipped.reasons["unknown id"] == 2


def test_sts_csv_with_and_without_header(tmp_path):
    path = tmp_path / "sts.csv"
    path.write_text('sentence1,sentence2,score\n"a, b",c,4.5\nd,e,1.0\n')
    assert read_sts_csv(path) == [("a, b", "c", 4.5), ("d", "e", 1.0)]
    pairs, _ = load_pairs(path)
    assert len(pairs) == 1 and pairs[0].query == "a, b"
    path.write_text("a,b,4\nc,d,high\n")
    with pytest.raises(DataError, match="line 2: wrong type: score 'high'"):
        read_sts_csv(path)


def test_bundled_scifact_reads_whole():
    train, test = read_beir(SCIFACT, "train"), read_beir(SCIFACT, "test")
    assert len(train.corpus) == 5183 and len(train.qrels) == 809 and len(test.qrels) == 300
    assert sum(len(r) for r in test.qrels.values()) == 339
    pairs, corpus = load_pairs(SCIFACT)
    assert len(pairs) == 919 and len(corpus) == 5183


def test_unknown_format(tmp_path):
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match="unknown format"):
        load_pairs(tmp_path / "x.parquet")


lines = st.one_of(
    st.builds(
        lambda q, p: json.dumps({"query": q, "positive": p}), st.text(max_size=20), st.text(max_size=20)
    ),
    st.builds(
        lambda v: json.dumps(v),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=5),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(st.sampled_from(["query", "positive", "negatives", "x"]), c, max_size=3)
            ),
            max_leaves=6,
        ),
    ),
    st.text(max_size=30),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.lists(st.one_of(lines.map(str.encode), st.binary(max_size=30)), max_size=8))
def test_readers_raise_only_data_errors(tmp_path, content):
    """Whatever bytes a file holds, the readers return valid records or raise DataError — nothing else —
    and with skip_bad they account for every non-blank line."""
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(c.replace(b"\n", b" ").replace(b"\r", b" ") for c in content) + b"\n")
    for reader in (read_pairs_jsonl, read_corpus):
        try:
            records = reader(path)
        except DataError as e:
            assert e.path == str(path)
            continue
        assert all(r for r in (records if isinstance(records, list) else records.values()))
    skipped = Skipped()
    try:
        pairs = read_pairs_jsonl(path, skip_bad=True, skipped=skipped)
    except DataError as e:
        assert "empty file" in str(e)
        return

    def blank(line: bytes) -> bool:  # whitespace only, Unicode whitespace included, once decoded
        try:
            return not line.decode("utf-8").strip()
        except UnicodeDecodeError:
            return False

    non_blank = sum(1 for line in path.read_bytes().split(b"\n") if not blank(line))
    assert len(pairs) + skipped.total == non_blank
    assert all(p.query.strip() and p.positive.strip() for p in pairs)


def write_corpus_with_empty_fields(folder):
    """A BEIR folder whose corpus has a title-only document, an empty-title one, and an empty one (judged)."""
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        '{"_id": "title-only", "title": "Vitamin D and bone fractures in older adults", "text": ""}\n'
        '{"_id": "no-title", "title": "", "text": "Statins lower cholesterol and cardiovascular risk."}\n'
        '{"_id": "empty", "title": "", "text": ""}\n'
        '{"_id": "plain", "title": "Sleep", "text": "Sleep deprivation impairs memory consolidation."}\n'
    )
    (folder / "queries.jsonl").write_text(
        '{"_id": "q1", "text": "does vitamin D prevent fractures"}\n'
        '{"_id": "q2", "text": "statins and cholesterol"}\n'
    )
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\ttitle-only\t1\nq1\tempty\t1\nq2\tno-title\t1\n"
    )
    return folder


def test_documents_with_an_empty_title_or_text_load_and_empty_ones_are_counted(tmp_path):
    folder = write_corpus_with_empty_fields(tmp_path / "beir")
    skipped = Skipped()
    beir = read_beir(folder, "test", skipped=skipped)
    assert list(beir.corpus) == ["title-only", "no-title", "plain"]
    assert beir.corpus["title-only"].passage == "Vitamin D and bone fractures in older adults"
    assert beir.corpus["no-title"].passage == "Statins lower cholesterol and cardiovascular risk."
    assert skipped.reasons["empty document"] == 1 and skipped.empty_documents == {"empty"}
    # the judgement of the empty document goes with it, counted, instead of failing as an unknown id
    assert beir.qrels == {"q1": {"title-only": 1}, "q2": {"no-title": 1}}
    assert skipped.reasons["judgement of an empty document"] == 1
    assert "skipped 2 line(s): 1 × empty document, 1 × judgement of an empty document" == skipped.summary()


def test_a_document_without_a_text_field_is_still_malformed(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "1", "title": "t"}\n')
    with pytest.raises(DataError, match="line 1: missing field: 'text'"):
        read_corpus(path)


def test_siamese_eval_on_a_corpus_with_empty_documents(tiny_model, tmp_path, capsys):
    from siamese.cli import main

    folder = write_corpus_with_empty_fields(tmp_path / "beir")
    assert main(["eval", "--models", str(tiny_model), "--data", str(folder), "--max-length", "64"]) == 0
    out, err = capsys.readouterr()
    assert "| BM25 |" in out and f"| {tiny_model.parent.name} |" in out
    assert "skipped 2 line(s): 1 × empty document" in err
