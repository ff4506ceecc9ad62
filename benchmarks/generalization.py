"""The generalisation ablation: each remedy for forgetting, on and off, measured on SciFact test (all, seen,
unseen queries), on every guard (report half) and on STS-B, beside the base model and BM25 + dense RRF.

    python benchmarks/generalization.py [--variants default anchor-mse merge-auto ...] [--out runs/ablation]

Each variant trains the default recipe (2-core CPU: ~3 min) with one change; results are kept per variant in
OUT, so a re-run measures only what is missing. Prints a
Markdown table, then the rows as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, SCIFACT, STSB_TEST, STSB_TRAIN  # noqa: E402
from common.data import load_beir, read_sts_csv  # noqa: E402
from common.metrics import format_table  # noqa: E402
from siamese.evaluation import evaluate
from training.config import recipe_config  # noqa: E402
from training.evaluate import guard_sets  # noqa: E402
from training.model_dir import (
    default_base_model,  # noqa: E402
    read_positives,  # noqa: E402
)

# variant → (training overrides, merge α or None); "base" trains nothing
VARIANTS = {
    "base": None,
    "plain": ({"anchor": "none"}, None),  # the contrastive loss alone: the recipe before the anchor
    "default": ({}, None),  # the default recipe: anchor mse, λ 20
    "anchor-mse-10": ({"anchor": "mse", "anchor_weight": 10.0}, None),
    "anchor-mse-30": ({"anchor": "mse", "anchor_weight": 30.0}, None),
    "anchor-kl-10": ({"anchor": "kl", "anchor_weight": 10.0}, None),
    "anchor-kl-3": ({"anchor": "kl", "anchor_weight": 3.0}, None),
    "plain+merge-auto": ({"anchor": "none"}, "auto"),
    "plain+merge-0.5": ({"anchor": "none"}, 0.5),
    "anchor-mse-10+merge-auto": ({"anchor": "mse", "anchor_weight": 10.0}, "auto"),
    "plain+corpus-title": ({"anchor": "none", "corpus_pairs": "title"}, None),
    "plain+corpus-ict": ({"anchor": "none", "corpus_pairs": "ict"}, None),
    "plain+corpus-crop": ({"anchor": "none", "corpus_pairs": "crop"}, None),
    "plain+general-stsb": ({"anchor": "none", "general_pairs": str(STSB_TRAIN)}, None),
    "default+corpus-ict": ({"corpus_pairs": "ict"}, None),
}


def model_for(name: str, out: Path) -> Path | None:
    from training.loop import train
    from training.merge import merge
    from training.pairs import load_training_data

    if VARIANTS[name] is None:
        return None
    overrides, alpha = VARIANTS[name]
    trained_name = next((n for n, v in VARIANTS.items() if v and v[0] == overrides and v[1] is None), name)
    run = out / trained_name
    if not (run / "model").exists():
        cfg = recipe_config(str(default_base_model()), str(run), **overrides)
        pairs, corpus = load_training_data(SCIFACT)
        train(cfg, pairs, corpus, resume=(run / "train_config.json").exists())
    if alpha is None:
        return run / "model"
    merged = out / name / "merged"
    if not merged.exists():
        merge(default_base_model(), run / "model", merged, alpha, list(GUARDS))
    return merged


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--variants",
        nargs="+",
        default=["base", "plain", "default", "plain+merge-auto"],
        choices=list(VARIANTS),
    )
    p.add_argument("--out", default="runs/ablation")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    beir, guards, sts = load_beir(SCIFACT, "test"), guard_sets(GUARDS), read_sts_csv(STSB_TEST)
    positives = read_positives(model_for("default", out)) if "default" in args.variants else None
    rows = []
    for name in args.variants:
        result = out / f"{name}.json"
        if not result.exists():
            started = time.time()
            model = model_for(name, out)
            models = [str(model) if model else str(default_base_model())]
            measured = evaluate(
                models,
                beir,
                bm25=name == "base",
                sts_rows=sts,
                progress=False,
                max_length=128,
                guards=guards,
                positives=positives,
                hybrid=True,
            )
            for row in measured:
                if row["name"] != "BM25":
                    row["name"] = f"{name} + BM25 (RRF)" if "RRF" in row["name"] else name
            result.write_text(
                json.dumps({"rows": measured, "seconds": round(time.time() - started)}, indent=2)
            )
        rows += json.loads(result.read_text())["rows"]
    print(format_table(rows))
    print(
        "SciFact test at 128 tokens; seen/unseen by the default recipe's training positives; guard columns: "
        "nDCG@10 on the report half of each guard."
    )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
