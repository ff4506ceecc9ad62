"""A few-query SciFact: the same corpus and the same 300 test queries, but only about N of the 809 training
queries (drawn by a seeded hash of the query id, so the draw is the same everywhere), as a user with little
labelled data would have it.

    python benchmarks/few_queries.py OUT [--queries 100] [--source common/datasets/scifact]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import SCIFACT  # noqa: E402


def drawn(query_id: str, share: float) -> bool:
    """A share of the queries, by a hash of their id: stable, and independent of any order."""
    return int(hashlib.sha256(f"few-queries:{query_id}".encode()).hexdigest(), 16) % 10_000 < share * 10_000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--queries", type=int, default=100, help="about this many training queries")
    p.add_argument("--source", default=str(SCIFACT))
    args = p.parse_args()
    source, out = Path(args.source), Path(args.out)
    rows = (source / "qrels" / "train.tsv").read_text().splitlines()
    header, rows = rows[0], rows[1:]
    queries = sorted({r.split("\t")[0] for r in rows})
    share = args.queries / len(queries)
    kept = [r for r in rows if drawn(r.split("\t")[0], share)]
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "qrels" / "train.tsv").write_text("\n".join([header, *kept]) + "\n")
    shutil.copyfile(source / "qrels" / "test.tsv", out / "qrels" / "test.tsv")
    for name in ("corpus.jsonl.gz", "corpus.jsonl", "queries.jsonl"):
        if (source / name).exists():
            shutil.copyfile(source / name, out / name)
    print(
        f"{out}: {len({r.split(chr(9))[0] for r in kept})} training queries ({len(kept)} pairs) of "
        f"{len(queries)}; the test split and corpus unchanged"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
