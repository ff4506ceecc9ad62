"""Shared weights or two towers? Each variant of ``--tower`` trained on SciFact train and measured on SciFact
test (all, seen, unseen queries), on every guard (report half) and STS-B, beside the base model, BM25 and each
fused with BM25 (RRF), with its training time on this machine.

    python benchmarks/towers.py [--base DIR] [--variants base
    shared query adapter separate] [--out runs/towers]
        [--set KEY=VALUE ...]   (training settings for every variant but shared, e.g. --set lr=2e-4)

Every model is evaluated at the base model's own window (the served one). Results are kept per variant in OUT,
so a re-run measures only what is missing. Prints a Markdown table, then the rows as JSON on the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, SCIFACT, STSB_TEST  # noqa: E402
from common.data import load_beir, read_sts_csv  # noqa: E402
from common.metrics import format_table  # noqa: E402
from siamese.evaluation import evaluate
from training.config import TrainConfig, recipe_config  # noqa: E402
from training.evaluate import guard_sets  # noqa: E402
from training.model_dir import (
    default_base_model,  # noqa: E402
    read_positives,  # noqa: E402
)

VARIANTS = {"base": None, "shared": "shared", "query": "query", "adapter": "adapter", "separate": "separate"}


def parse_setting(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    field = TrainConfig.__dataclass_fields__[key.replace("-", "_")]
    return field.name, field.metadata["type"](value)


def model_for(name: str, base: str, out: Path, settings: dict) -> tuple[Path | None, float | None]:
    """The variant's model directory (trained unless there) and its training seconds."""
    from training.loop import train
    from training.pairs import load_training_data

    if VARIANTS[name] is None:
        return None, None
    run = out / name
    if not (run / "model").exists():
        # each variant's own recipe (training/config.py: TOWER_RECIPES), then --set
        cfg = recipe_config(base, str(run), tower=VARIANTS[name], **({} if name == "shared" else settings))
        pairs, corpus = load_training_data(SCIFACT)
        train(cfg, pairs, corpus)
    return run / "model", json.loads((run / "model" / "train_metrics.json").read_text())["wall_s"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default=str(default_base_model()))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--out", default="runs/towers")
    p.add_argument("--set", action="append", default=[], type=parse_setting, metavar="KEY=VALUE")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    beir, guards, sts = load_beir(SCIFACT, "test"), guard_sets(GUARDS), read_sts_csv(STSB_TEST)
    positives = (
        read_positives(model_for("shared", args.base, out, {})[0]) if "shared" in args.variants else None
    )
    rows = []
    for name in args.variants:
        result = out / f"{name}.json"
        if not result.exists():
            started = time.time()
            model, train_s = model_for(name, args.base, out, dict(args.set))
            measured = evaluate(
                [str(model or args.base)],
                beir,
                bm25=name == "base",
                sts_rows=sts,
                progress=False,
                guards=guards,
                positives=positives,
                hybrid=True,
            )
            for row in measured:
                if row["name"] != "BM25":
                    row["name"] = f"{name} + BM25 (RRF)" if "RRF" in row["name"] else name
                    row["train_s"] = train_s
            result.write_text(
                json.dumps(
                    {"rows": measured, "seconds": round(time.time() - started), "settings": dict(args.set)},
                    indent=2,
                )
            )
        rows += json.loads(result.read_text())["rows"]
    print(format_table(rows))
    print("\n| variant | training seconds |\n|---|---|")
    for row in rows:
        if row.get("train_s") and "RRF" not in row["name"]:
            print(f"| {row['name']} | {row['train_s']:.0f} |")
    print(
        "SciFact test at the base model's window; seen/unseen by the shared recipe's training positives; "
        "guard columns: nDCG@10 on the report half of each guard; train_s: training seconds on this machine."
    )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
