"""Readers for BEIR folders (corpus, queries, qrels) and STS-style CSV, and the line loop every reader
shares (``training.pairs`` reads pairs files with it).

Every reader names the file, the line and the fix when it meets bad input. With ``skip_bad=True`` it
drops the bad record instead, and counts why in a ``Skipped`` report, so a user with one broken line in
a million keeps the other 999,999.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import sys
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError

MAX_RECORD_BYTES = 1 << 20  # one record per line; a longer line is almost always a broken file


class DataError(UserError, ValueError):
    """Bad input, with where it is and what to do about it."""

    def __init__(self, path, line: int | None, problem: str, fix: str):
        self.path, self.line, self.problem, self.fix = str(path), line, problem, fix
        where = f"{path}, line {line}" if line else str(path)
        super().__init__(f"{where}: {problem}. {fix}")


@dataclass
class Skipped:
    """What ``skip_bad`` dropped: a count per reason and the first few places."""

    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    empty_documents: set[str] = field(default_factory=set)  # ids left out of a corpus: nothing to index

    def add(self, err: DataError) -> None:
        self.reasons[err.problem.split(":")[0]] += 1
        if len(self.examples) < 5:
            self.examples.append(str(err))

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> str:
        if not self.total:
            return "no lines skipped"
        parts = ", ".join(f"{n} × {why}" for why, n in self.reasons.most_common())
        return f"skipped {self.total} line(s): {parts}"


@dataclass
class Doc:
    id: str
    title: str
    text: str

    @property
    def passage(self) -> str:
        return doc_text(self.title, self.text)


def doc_text(title: str, text: str) -> str:
    """The text a passage is embedded from: title and body, as the Vespa schema concatenates them."""
    return f"{title} {text}".strip()


@dataclass
class Beir:
    corpus: dict[str, Doc]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _open_text_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    if not path.exists():
        raise DataError(path, None, "file not found", "Check the path.")
    opener = gzip.open if path.suffix == ".gz" else open
    number = 0
    try:
        with opener(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                yield number, raw[3:] if number == 1 and raw.startswith(codecs.BOM_UTF8) else raw
    except EOFError:
        raise DataError(
            path,
            number + 1,
            "truncated gzip: the file ends in the middle of its compressed data",
            "Copy or download it again (`gzip -t` checks a .gz file).",
        ) from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise DataError(
            path,
            number + 1,
            f"not gzip data ({e})",
            "Give a file compressed with gzip, or drop the .gz suffix if it is plain text.",
        ) from None


def _decode(path: Path, number: int, raw: bytes) -> str:
    if len(raw) > MAX_RECORD_BYTES:
        raise DataError(
            path,
            number,
            f"line too long: {len(raw):,} bytes (limit {MAX_RECORD_BYTES:,})",
            "Each record must be on its own line; split the file or shorten the record.",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            path,
            number,
            f"not UTF-8: byte {raw[e.start]:#04x} at column {e.start + 1}",
            "Re-encode the file as UTF-8 (for example `iconv -f latin1 -t utf-8`).",
        ) from None


def read_jsonl(path, *, skip_bad: bool = False, skipped: Skipped | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line; every line must be one JSON object."""
    path = Path(path)
    seen_any = False
    for number, raw in _open_text_lines(path):
        try:
            text = _decode(path, number, raw)
            if not text.strip():
                continue
            seen_any = True
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(
                    path,
                    number,
                    f"malformed JSON: {e.msg} at column {e.colno}",
                    "Each line must be one complete JSON object.",
                ) from None
            if not isinstance(obj, dict):
                raise DataError(
                    path,
                    number,
                    f"wrong type: a JSON {type(obj).__name__}, not an object",
                    'Each line must be a JSON object such as {"query": ..., "positive": ...}.',
                )
            yield number, obj
        except DataError as err:
            if not skip_bad:
                raise
            seen_any = True
            if skipped is not None:
                skipped.add(err)
    if not seen_any:
        raise DataError(path, None, "empty file", "The file holds no records; point to the right file.")


def text_field(path, number, obj, key, *, required=True, allow_empty=False) -> str | None:
    """``obj[key]`` as a string; None when it is absent and not ``required``."""
    value = obj.get(key)
    if value is None:
        if required:
            raise DataError(
                path, number, f"missing field: '{key}'", f"Add a non-empty string '{key}' to the record."
            )
        return None
    if not isinstance(value, str):
        raise DataError(
            path,
            number,
            f"wrong type: '{key}' is a {type(value).__name__}, not a string",
            f"Make '{key}' a string.",
        )
    if not value.strip() and not allow_empty:
        raise DataError(path, number, f"empty field: '{key}'", f"Give '{key}' some text or drop the record.")
    return value


def parsed_records(path, parse, *, skip_bad, skipped):
    """Each JSONL record through ``parse(number, obj)``; with
    ``skip_bad`` a bad record is counted, not fatal."""
    for number, obj in read_jsonl(path, skip_bad=skip_bad, skipped=skipped):
        try:
            yield parse(number, obj)
        except DataError as err:
            if not skip_bad:
                raise
            if skipped is not None:
                skipped.add(err)


def unusable_document_id(doc_id: str) -> str | None:
    """Why ``doc_id`` cannot name a document of its own in Vespa, or None. The feed percent-encodes every
    other character of an id into one path segment, so only these would address another document (or none)."""
    if doc_id in ("", ".", ".."):
        return "is a path segment that Vespa resolves to another document"
    bad = next((c for c in doc_id if not _vespa_text_character(ord(c))), None)
    if bad is not None:
        return (
            f"contains U+{ord(bad):04X}, which Vespa refuses in ids (a control character or a non-character)"
        )
    return None


def _vespa_text_character(cp: int) -> bool:
    """Vespa's ``Text.isTextCharacter`` (XML 1.1 text): no control characters but tab, newline and carriage
    return, no surrogates, no non-characters (U+FDD0–U+FDDF and the last two of every plane)."""
    if cp < 0x80:
        return cp >= 0x20 or cp in (0x9, 0xA, 0xD)
    return not (0xD800 <= cp <= 0xDFFF or 0xFDD0 <= cp <= 0xFDDF) and (cp & 0xFFFF) < 0xFFFE


def _record_id(path, number, obj, seen, what: str) -> str:
    value = obj.get("_id", obj.get("id"))
    value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(value, str) or not value:
        raise DataError(path, number, "missing field: '_id'", f"Give every {what} a string '_id'.")
    if value in seen:
        raise DataError(path, number, f"duplicate id: '{value}'", f"{what.capitalize()} ids must be unique.")
    if what == "document" and unusable_document_id(value):
        raise DataError(
            path,
            number,
            f"unusable id: {value!r} {unusable_document_id(value)}",
            "Give the document another id.",
        )
    return value


def read_corpus(path, *, skip_bad=False, skipped: Skipped | None = None) -> dict[str, Doc]:
    """BEIR corpus: ``{"_id", "title"?, "text"}`` per line (``id`` is accepted for ``_id``).

    A document may have an empty title or an empty text (both are valid BEIR); one with neither has
    nothing to index, so it is left out and counted in ``skipped`` as an "empty document", with or
    without ``skip_bad`` (real corpora have a few)."""
    corpus: dict[str, Doc] = {}
    skipped = skipped if skipped is not None else Skipped()

    def parse(number, obj):
        doc_id = _record_id(path, number, obj, corpus, "document")
        title = text_field(path, number, obj, "title", required=False, allow_empty=True) or ""
        return number, Doc(doc_id, title, text_field(path, number, obj, "text", allow_empty=True))

    for number, doc in parsed_records(path, parse, skip_bad=skip_bad, skipped=skipped):
        if not doc.passage:
            skipped.empty_documents.add(doc.id)
            skipped.add(
                DataError(
                    path,
                    number,
                    f"empty document: '{doc.id}' has neither title nor text",
                    "Nothing to index; it is left out.",
                )
            )
            continue
        corpus[doc.id] = doc
    return corpus


def read_queries(path, *, skip_bad=False, skipped: Skipped | None = None) -> dict[str, str]:
    queries: dict[str, str] = {}

    def parse(number, obj):
        return _record_id(path, number, obj, queries, "query"), text_field(path, number, obj, "text")

    for qid, text in parsed_records(path, parse, skip_bad=skip_bad, skipped=skipped):
        queries[qid] = text
    return queries


def read_qrels(path, corpus_ids, query_ids, *, skip_bad=False, skipped: Skipped | None = None):
    """BEIR qrels TSV: an optional header (``query-id corpus-id score``), then one judgement a row. A row that
    judges a document ``read_corpus`` left out as empty
    (``skipped.empty_documents``) is left out too, and counted."""
    path = Path(path)
    skipped_docs = skipped.empty_documents if skipped is not None else set()
    seen_header = False
    qrels: dict[str, dict[str, int]] = {}
    rows = 0
    for number, raw in _open_text_lines(path):
        try:
            line = _decode(path, number, raw).rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if not rows and not seen_header and len(cols) == 3 and not _is_int(cols[2]):
                seen_header = True  # a header is recognised by what it says, not by where it is
                continue
            rows += 1
            if len(cols) != 3:
                raise DataError(
                    path,
                    number,
                    f"malformed row: {len(cols)} tab-separated column(s), not 3",
                    "Rows must be `query-id<TAB>corpus-id<TAB>score`.",
                )
            qid, did, score = cols
            try:
                grade = int(score)
            except ValueError:
                raise DataError(
                    path,
                    number,
                    f"wrong type: score '{score}' is not an integer",
                    "Relevance scores must be integers (0 = not relevant).",
                ) from None
            if qid not in query_ids:
                raise DataError(
                    path,
                    number,
                    f"unknown id: query '{qid}' is not in queries.jsonl",
                    "Fix the id or add the query.",
                )
            if did in skipped_docs:
                raise DataError(
                    path,
                    number,
                    f"judgement of an empty document: '{did}'",
                    "The document has neither title nor text and was left out; so is this row.",
                )
            if did not in corpus_ids:
                raise DataError(
                    path,
                    number,
                    f"unknown id: document '{did}' is not in corpus.jsonl",
                    "Fix the id or add the document.",
                )
            if grade > 0:
                qrels.setdefault(qid, {})[did] = grade
        except DataError as err:
            if not skip_bad and not err.problem.startswith("judgement of an empty document"):
                raise
            if skipped is not None:
                skipped.add(err)
    if rows == 0:
        raise DataError(path, None, "empty file", "The qrels file holds no judgements.")
    if not qrels:
        raise DataError(
            path,
            None,
            f"no relevant document: all {rows} judgements have score 0",
            "Scores above 0 mark the relevant documents; evaluation and training need at least one.",
        )
    return qrels


def _is_int(text: str) -> bool:
    try:
        int(text)
        return True
    except ValueError:
        return False


def _find(folder: Path, *names: str) -> Path:
    for name in names:
        if (folder / name).exists():
            return folder / name
    if not folder.exists():
        raise DataError(
            folder,
            None,
            "no such folder",
            "Give a BEIR folder (corpus.jsonl, queries.jsonl, "
            "qrels/<split>.tsv) or, for training, a pairs .jsonl file.",
        )
    hint = (
        " For training without a train split, give your pairs instead (`siamese train --data pairs.jsonl`, "
        "`siamese run --pairs pairs.jsonl --corpus ... --queries ... --qrels ...`)."
        if folder.name == "qrels"
        else ""
    )
    raise DataError(
        folder,
        None,
        f"not a BEIR folder: none of {', '.join(names)} found",
        "A BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv." + hint,
    )


def read_beir(folder, split: str = "test", *, skip_bad=False, skipped: Skipped | None = None) -> Beir:
    folder = Path(folder)
    skipped = skipped if skipped is not None else Skipped()
    corpus = read_corpus(_find(folder, "corpus.jsonl", "corpus.jsonl.gz"), skip_bad=skip_bad, skipped=skipped)
    queries = read_queries(
        _find(folder, "queries.jsonl", "queries.jsonl.gz"), skip_bad=skip_bad, skipped=skipped
    )
    qrels = read_qrels(
        _find(folder / "qrels", f"{split}.tsv"),
        corpus.keys(),
        queries.keys(),
        skip_bad=skip_bad,
        skipped=skipped,
    )
    return Beir(corpus, {q: queries[q] for q in qrels}, qrels)


def read_sts_csv(path, *, skip_bad=False, skipped: Skipped | None = None) -> list[tuple[str, str, float]]:
    """``sentence1,sentence2,score`` rows; a header row is optional."""
    path = Path(path)
    rows = []
    for number, raw in _open_text_lines(path):
        try:
            line = _decode(path, number, raw)
            if not line.strip():
                continue
            cols = next(csv.reader(io.StringIO(line)))
            if len(cols) != 3:
                raise DataError(
                    path,
                    number,
                    f"malformed row: {len(cols)} column(s), not 3",
                    "Rows must be `sentence1,sentence2,score`; quote fields that contain commas.",
                )
            try:
                score = float(cols[2])
            except ValueError:
                if number == 1:
                    continue  # a header
                raise DataError(
                    path,
                    number,
                    f"wrong type: score '{cols[2]}' is not a number",
                    "The third column must be a number.",
                ) from None
            if not cols[0].strip() or not cols[1].strip():
                raise DataError(path, number, "empty field: a sentence is empty", "Drop the row or fill it.")
            rows.append((cols[0], cols[1], score))
        except DataError as err:
            if not skip_bad:
                raise
            if skipped is not None:
                skipped.add(err)
    if not rows:
        raise DataError(path, None, "empty file", "The CSV holds no sentence pairs.")
    return rows


def say_skipped(path, skipped: Skipped) -> None:
    """Tell the user, on stderr, what a reader left out (nothing when nothing was)."""
    if skipped.total:
        print(f"{path}: {skipped.summary()}", file=sys.stderr)


def load_beir(folder, split: str = "test", *, skip_bad: bool = False) -> Beir:
    """``read_beir`` for commands: whatever was left out is counted on stderr."""
    skipped = Skipped()
    beir = read_beir(folder, split, skip_bad=skip_bad, skipped=skipped)
    say_skipped(folder, skipped)
    return beir


def load_corpus(path, *, skip_bad: bool = False) -> dict[str, Doc]:
    """``read_corpus`` for commands; a BEIR folder stands for its corpus file."""
    path = Path(path)
    if path.is_dir():
        path = _find(path, "corpus.jsonl", "corpus.jsonl.gz")
    skipped = Skipped()
    corpus = read_corpus(path, skip_bad=skip_bad, skipped=skipped)
    say_skipped(path, skipped)
    return corpus


def limit_queries(beir: Beir, n: int | None) -> Beir:
    """The first ``n`` judged queries (in file order), for quick runs; the corpus stays whole."""
    if not n:
        return beir
    keep = list(beir.qrels)[:n]
    return Beir(beir.corpus, {q: beir.queries[q] for q in keep}, {q: beir.qrels[q] for q in keep})


def corpus_fingerprint(docs) -> str:
    """A hash of the documents, in order: two corpora (or an index and a corpus) with the same fingerprint
    hold the same documents in the same order."""
    import hashlib

    digest = hashlib.sha256()
    for d in docs:
        digest.update(json.dumps([d.id, d.title, d.text], ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def read_general_texts(path) -> list[str]:
    """General-domain texts: a .txt file (one text a line) or an STS .csv (both sentence columns); each
    distinct text once, in file order."""
    path = Path(path)
    if path.suffix == ".csv":
        texts = [t for a, b, _ in read_sts_csv(path) for t in (a, b)]
    else:
        texts = [_decode(path, n, raw).strip() for n, raw in _open_text_lines(path)]
    texts = list(dict.fromkeys(t for t in texts if t.strip()))
    if not texts:
        raise DataError(path, None, "empty file", "Give a file with general-domain text, one text a line.")
    return texts
