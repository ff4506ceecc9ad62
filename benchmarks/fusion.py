"""hybrid-linear's BM25 weight: the one `siamese run` chooses on the training queries, against what every
weight of the grid scores on the held-out test queries (which the choice never sees).

    python benchmarks/fusion.py runs/latest/index [--data BEIR_DIR]

The index is a `siamese run`'s embedded index (its model's document vectors); the data set is the one it was
built from. Last line: JSON.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import SCIFACT  # noqa: E402
from common.data import load_beir  # noqa: E402
from siamese.run.fusion_weight import choose_bm25_weight, judged  # noqa: E402
from vespa_app.embedded import EmbeddedIndex  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index")
    parser.add_argument("--data", default=str(SCIFACT))
    args = parser.parse_args()
    index = EmbeddedIndex.open(args.index)
    ids = {d.id for d in index.docs}
    train, test = load_beir(args.data, "train"), load_beir(args.data, "test")
    on_corpus = judged(train.qrels, ids)
    chosen, on_train = choose_bm25_weight(index, train.queries, on_corpus)
    best_on_test, on_test = choose_bm25_weight(index, test.queries, test.qrels)
    print(
        f"| BM25 weight | nDCG@10, {len(on_corpus)} training queries "
        f"| nDCG@10, {len(test.qrels)} test queries |"
    )
    print("|---|---|---|")
    for w in on_train["ndcg@10"]:
        mark = " (chosen)" if float(w) == chosen else ""
        print(f"| {w}{mark} | {on_train['ndcg@10'][w]:.4f} | {on_test['ndcg@10'][w]:.4f} |")
    print(
        json.dumps(
            {
                "index": args.index,
                "chosen": chosen,
                "test_ndcg@10_chosen": on_test["ndcg@10"][f"{chosen:g}"],
                "best_on_test": best_on_test,
                "train": on_train["ndcg@10"],
                "test": on_test["ndcg@10"],
            }
        )
    )


if __name__ == "__main__":
    main()
