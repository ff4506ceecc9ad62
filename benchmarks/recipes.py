"""Does `--recipe auto`'s choice on a dev slice hold on the test set? One `siamese run --recipe auto` on a
data set, then every candidate it trained (on the same training queries less the dev slice) measured on the
test split and the guards' report halves, beside the model it shipped.

    python benchmarks/recipes.py --data BEIR_DIR --out runs/recipes-NAME [--reference MODEL]

The bar (issue 34): the chosen candidate is within half a point of the best candidate on test nDCG@10 over all
and over unseen queries, and the shipped model falls no more than half a point on any guard. Prints Markdown
tables, then the figures as JSON on the last line (also OUT/recipes.json). A re-run measures what is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, STSB_TEST  # noqa: E402
from common.data import load_beir, read_sts_csv  # noqa: E402
from common.metrics import format_table  # noqa: E402
from siamese.evaluation import evaluate
from training.evaluate import guard_sets  # noqa: E402
from training.model_dir import read_positives  # noqa: E402

BAR = 0.005


def candidates(run: Path) -> dict[str, Path]:
    record = json.loads((run / "train" / "recipe.json").read_text())
    return {name: Path(c["model"]) for name, c in record["candidates"].items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--reference", action="append", default=[])
    args = p.parse_args()
    out = Path(args.out)
    run = out / "run"
    if not (run / "results.json").exists():
        command = [
            sys.executable,
            "-m",
            "siamese",
            "run",
            "--recipe",
            "auto",
            "--data",
            args.data,
            "--out",
            str(run),
            *(x for r in args.reference for x in ("--reference", r)),
        ]
        print("$ siamese " + " ".join(command[3:]), file=sys.stderr)
        subprocess.run(command, check=True)
    results = json.loads((run / "results.json").read_text())
    record = json.loads((run / "train" / "recipe.json").read_text())
    beir, guards, sts = load_beir(args.data, "test"), guard_sets(GUARDS), read_sts_csv(STSB_TEST)
    measured = out / "candidates.json"
    rows = json.loads(measured.read_text()) if measured.exists() else {}
    base_row = next(r for r in results["rows"] if r["name"].startswith("base ("))
    for name, model in candidates(run).items():
        alpha = record["candidates"][name].get("alpha")
        if name not in rows and alpha in (
            0.0,
            1.0,
        ):  # merged at α 0 is the base; at α 1, the shared candidate
            rows[name] = dict(base_row if alpha == 0.0 else rows["shared"]) | {"name": name}
        if name not in rows:
            row = evaluate(
                [str(model)],
                beir,
                bm25=False,
                sts_rows=sts,
                progress=False,
                guards=guards,
                positives=read_positives(model),
            )[0]
            rows[name] = row | {"name": name}
            measured.write_text(json.dumps(rows, indent=2))
    chosen = record["chosen"]
    best = {k: max(r[k] for r in rows.values()) for k in ("ndcg@10", "ndcg@10 unseen")}
    bar = {k: round(best[k] - rows[chosen][k], 4) for k in best}
    shipped = next(r for r in results["rows"] if r["name"] == "fine-tuned (exact)")
    base = next(r for r in results["rows"] if r["name"].startswith("base ("))
    guard_drop = {k: round(base[k] - shipped[k], 4) for k in shipped if k.startswith("guard ")}
    print("## The run (`siamese run --recipe auto`)\n")
    print(format_table(results["rows"]))
    print(f"\nchosen: {chosen} ({record['why']})\n")
    print("## Every candidate (trained without the dev slice) on the test split\n")
    print("| candidate | dev nDCG@10 | test all | seen | unseen | " + " | ".join(guards) + " | STS-B |")
    print("|---|---|---|---|---|" + "---|" * (len(guards) + 1))
    for name, row in rows.items():
        dev = record["candidates"][name]["dev"]["ndcg@10"]
        print(
            f"| {name}{' **chosen**' if name == chosen else ''} | {dev:.4f} | {row['ndcg@10']:.4f} | "
            f"{row.get('ndcg@10 seen', float('nan')):.4f} | {row.get('ndcg@10 unseen', float('nan')):.4f} | "
            + " | ".join(f"{row[f'guard {g}']:.4f}" for g in guards)
            + f" | {row.get('sts_spearman', 0):.4f} |"
        )
    passed = all(v <= BAR + 1e-9 for v in bar.values()) and all(v <= BAR + 1e-9 for v in guard_drop.values())
    print(
        f"\nbar: chosen below the best candidate on test by {bar} (≤ {BAR}); shipped model's guard drops "
        f"against the base {guard_drop} (≤ {BAR}): {'met' if passed else 'NOT met'}"
    )
    summary = {
        "chosen": chosen,
        "why": record["why"],
        "candidates": rows,
        "below_best": bar,
        "guard_drop": guard_drop,
        "bar_met": passed,
        "run_rows": results["rows"],
        "timings": results["timings"],
    }
    (out / "recipes.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
