"""Derive the MedQuAD guard set (a BEIR folder) from the shared MedQuAD pairs, deterministically.

    python common/datasets/medquad/derive.py
    ../shared/data/medquad/medquad_pairs.jsonl.gz common/datasets/medquad

Ids, questions and answers are de-duplicated (a repeated question or answer would be a second relevant
document nobody judged). Every pair is ordered by the sha256 of its qid; the first 400 pairs become the
queries, each with its own answer as the one relevant document; the next 1,600 answers are distractors.
Answers have no title. The output is the same on every machine and every run.
"""

import gzip
import hashlib
import json
import sys
from pathlib import Path

N_QUERIES, N_DISTRACTORS, MIN_ANSWER_WORDS = 400, 1600, 20


def derive(source: Path, out: Path) -> None:
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        pairs = [json.loads(line) for line in fh if line.strip()]
    qids, questions, answers, unique = set(), set(), set(), []
    for p in pairs:
        q, a = " ".join(p["question"].split()), " ".join(p["answer"].split())
        if p["qid"] in qids or q.lower() in questions or a in answers or len(a.split()) < MIN_ANSWER_WORDS:
            continue
        qids.add(p["qid"])
        questions.add(q.lower())
        answers.add(a)
        unique.append((p["qid"], q, a))
    unique.sort(key=lambda t: hashlib.sha256(t[0].encode()).hexdigest())
    chosen = unique[: N_QUERIES + N_DISTRACTORS]
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (
        gzip.GzipFile(out / "corpus.jsonl.gz", "wb", mtime=0) as raw,
        open(out / "queries.jsonl", "w") as queries,
        open(out / "qrels" / "test.tsv", "w") as qrels,
    ):
        qrels.write("query-id\tcorpus-id\tscore\n")
        for n, (qid, question, answer) in enumerate(chosen):
            raw.write((json.dumps({"_id": f"a{qid}", "title": "", "text": answer}) + "\n").encode())
            if n < N_QUERIES:
                queries.write(json.dumps({"_id": f"q{qid}", "text": question}) + "\n")
                qrels.write(f"q{qid}\ta{qid}\t1\n")


if __name__ == "__main__":
    derive(Path(sys.argv[1]), Path(sys.argv[2]))
