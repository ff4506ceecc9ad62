"""A "your own data" set for the recipe benchmark: the Cranfield collection (aeronautics abstracts) as a BEIR
folder, its queries split 70/30 by id into qrels/train.tsv and qrels/test.tsv, as a user holding out a test
set would. Cranfield is no guard and not in the bundled data, so nothing in the project was tuned on it.

    python benchmarks/cranfield.py SOURCE OUT

SOURCE holds the collection's classic files, cran.all.1400, cran.qry and cranqrel (distributed freely for
research by the University of Glasgow IR group, and in many public repositories). Queries are numbered by
their position in cran.qry (the file's own .I numbers skip), as the qrels number them. Relevance codes 1 (a
complete answer) to 4 (of minimum interest) become graded
scores 4 to 1; code -1 and 5 (no interest) are dropped.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path


def records(text: str) -> list[dict[str, str]]:
    """The ``.I`` records of a SMART-format file, each field
    (``.T``, ``.A``, ``.B``, ``.W``) joined to one line."""
    out = []
    for chunk in re.split(r"^\.I\s+", text, flags=re.M)[1:]:
        fields, key = {"I": chunk.split("\n", 1)[0].strip()}, None
        for line in chunk.split("\n")[1:]:
            if re.fullmatch(r"\.[A-Z]\s*", line):
                key = line.strip()[1]
                fields[key] = ""
            elif key:
                fields[key] = (fields[key] + " " + line.strip()).strip()
        out.append(fields)
    return out


def in_test(query_id: str) -> bool:
    """30 % of queries by a hash of their id: stable, and independent of any order."""
    return int(hashlib.sha256(f"cranfield:{query_id}".encode()).hexdigest(), 16) % 10 < 3


def main(source: Path, out: Path) -> None:
    docs = records((source / "cran.all.1400").read_text(errors="replace"))
    queries = records((source / "cran.qry").read_text(errors="replace"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "qrels").mkdir(exist_ok=True)
    with open(out / "corpus.jsonl", "w") as f:
        for d in docs:
            title = d.get("T", "")
            text = d.get("W", "")
            if text.startswith(title):  # the abstract field repeats the title
                text = text[len(title) :].strip()
            f.write(json.dumps({"_id": d["I"], "title": title, "text": text or title}) + "\n")
    with open(out / "queries.jsonl", "w") as f:
        for number, q in enumerate(queries, 1):
            f.write(json.dumps({"_id": str(number), "text": q["W"]}) + "\n")
    doc_ids = {d["I"] for d in docs}
    splits = {"train": [], "test": []}
    for line in (source / "cranqrel").read_text().split("\n"):
        parts = line.split()
        if len(parts) < 3 or parts[1] not in doc_ids or not 1 <= int(parts[2]) <= 4:
            continue
        splits["test" if in_test(parts[0]) else "train"].append(
            f"{parts[0]}\t{parts[1]}\t{5 - int(parts[2])}"
        )
    for split, rows in splits.items():
        (out / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
        print(f"{split}: {len(rows)} judgements over {len({r.split()[0] for r in rows})} queries")
    print(f"{len(docs)} documents, {len(queries)} queries → {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
