"""Training pairs from any supported input: a pairs JSONL file, a BEIR folder (its judged pairs) or an
STS-style CSV (its high-scoring rows)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from common.data import (
    Beir,
    DataError,
    Doc,
    Skipped,
    parsed_records,
    read_beir,
    read_sts_csv,
    say_skipped,
    text_field,
)


@dataclass
class Pair:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    query_id: str | None = None
    positive_id: str | None = None
    source: str = "labelled"  # or the kind of corpus pair (training/corpus_pairs.py): batches keep to one


def read_pairs_jsonl(path, *, skip_bad=False, skipped: Skipped | None = None) -> list[Pair]:
    """``{"query", "positive", "negatives"?: [...]}`` per line."""

    def parse(number, obj):
        query = text_field(path, number, obj, "query")
        positive = text_field(path, number, obj, "positive")
        negatives = obj.get("negatives") or []
        if not isinstance(negatives, list) or not all(isinstance(n, str) and n.strip() for n in negatives):
            raise DataError(
                path,
                number,
                "wrong type: 'negatives' must be a list of non-empty strings",
                "Fix 'negatives' or leave it out.",
            )
        return Pair(query, positive, list(negatives), obj.get("query_id"), obj.get("doc_id"))

    return list(parsed_records(path, parse, skip_bad=skip_bad, skipped=skipped))


def beir_pairs(beir: Beir) -> list[Pair]:
    return [
        Pair(beir.queries[qid], beir.corpus[did].passage, query_id=qid, positive_id=did)
        for qid, rels in beir.qrels.items()
        for did in rels
    ]


def sts_pairs(rows, threshold: float = 4.0) -> list[Pair]:
    """STS rows scored at or above ``threshold`` become positive pairs (both directions are paraphrases)."""
    return [Pair(a, b) for a, b, score in rows if score >= threshold]


def load_pairs(
    path, *, split: str = "train", skip_bad=False, skipped: Skipped | None = None, sts_threshold: float = 4.0
) -> tuple[list[Pair], dict[str, Doc] | None]:
    """Training pairs from any supported input; the BEIR corpus comes along for hard-negative mining."""
    path = Path(path)
    if path.is_dir():
        beir = read_beir(path, split, skip_bad=skip_bad, skipped=skipped)
        return beir_pairs(beir), beir.corpus
    if path.suffix == ".csv":
        return sts_pairs(read_sts_csv(path, skip_bad=skip_bad, skipped=skipped), sts_threshold), None
    if path.name.endswith((".jsonl", ".jsonl.gz", ".json")):
        return read_pairs_jsonl(path, skip_bad=skip_bad, skipped=skipped), None
    raise DataError(
        path,
        None,
        "unknown format",
        "Give a pairs .jsonl file, a BEIR folder, or an STS-style .csv (sentence1,sentence2,score).",
    )


def load_training_data(data, split: str = "train", skip_bad: bool = False):
    """Pairs plus the corpus documents to mine negatives and make corpus pairs from (a BEIR corpus, if the
    data has one); what was left out is counted on stderr."""
    skipped = Skipped()
    pairs, corpus = load_pairs(data, split=split, skip_bad=skip_bad, skipped=skipped)
    say_skipped(data, skipped)
    return pairs, (list(corpus.values()) if corpus else None)
