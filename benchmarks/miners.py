"""Hard negatives for the shared recipe: none, BM25's (``--miner bm25``) or the base model's own ranking
(``--miner dense``: ranks 10-100, less any within 0.05 of the positive), each trained on a data set's train
split and measured on its test split (all, seen, unseen), the guards' report halves and STS-B.

    python benchmarks/miners.py --data BEIR_DIR --out runs/miners-NAME [--variants none bm25 dense]

Results are kept per variant in OUT, so a re-run measures only what is missing. Prints a Markdown table, then
the rows as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, STSB_TEST  # noqa: E402
from common.data import load_beir, read_sts_csv  # noqa: E402
from common.metrics import format_table  # noqa: E402
from siamese.evaluation import evaluate
from training.config import recipe_config  # noqa: E402
from training.evaluate import guard_sets  # noqa: E402
from training.model_dir import (
    default_base_model,  # noqa: E402
    read_positives,  # noqa: E402
)

VARIANTS = {
    "none": {},
    "bm25": {"hard_negatives": 1, "miner": "bm25"},
    "dense": {"hard_negatives": 1, "miner": "dense"},
}


def main() -> int:
    from training.loop import train
    from training.pairs import load_training_data

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--base", default=str(default_base_model()))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    beir, guards, sts = load_beir(args.data, "test"), guard_sets(GUARDS), read_sts_csv(STSB_TEST)
    rows = []
    for name in args.variants:
        result = out / f"{name}.json"
        if not result.exists():
            run = out / name
            if not (run / "model").exists():
                cfg = recipe_config(args.base, str(run), tower="shared", data=args.data, **VARIANTS[name])
                train(cfg, *load_training_data(args.data))
            seconds = json.loads((run / "model" / "train_metrics.json").read_text())["wall_s"]
            row = evaluate(
                [str(run / "model")],
                beir,
                bm25=False,
                sts_rows=sts,
                progress=False,
                guards=guards,
                positives=read_positives(run / "model"),
            )[0]
            result.write_text(
                json.dumps(row | {"name": f"shared, negatives: {name}", "train_s": seconds}, indent=2)
            )
        rows.append(json.loads(result.read_text()))
    print(format_table(rows))
    print("\n| variant | training seconds |\n|---|---|")
    print("\n".join(f"| {r['name']} | {r['train_s']:.0f} |" for r in rows))
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
