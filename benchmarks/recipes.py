"""Does `--recipe auto`'s choice on held-out training queries hold on the test set? One default `siamese run`
on a data set, then every trained candidate it scored, trained again on all the pairs as it would have been
shipped (its length, its α), measured on the test split and the guards' report halves beside the model the
run shipped and the base.

    python benchmarks/recipes.py --data BEIR_DIR --out runs/recipes-NAME [--candidates all]

The bar (issue 42), on test nDCG@10: the shipped model's all and unseen are at least the base's − 0.5 point,
within 0.5 point of the best candidate's, and no guard's report half falls more than 0.5 point below the
base. Prints Markdown tables, then the figures as JSON on the last line (also OUT/recipes.json). A re-run
measures what is missing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, STSB_TEST  # noqa: E402
from common.data import load_beir, read_sts_csv  # noqa: E402
from siamese.evaluation import evaluate  # noqa: E402
from training.evaluate import guard_sets  # noqa: E402
from training.loop import train  # noqa: E402
from training.merge import merge  # noqa: E402
from training.model_dir import read_positives  # noqa: E402
from training.pairs import load_training_data  # noqa: E402
from training.recipe import BY_NAME, candidate_configs  # noqa: E402

BAR = 0.005
FIGURES = ("ndcg@10", "ndcg@10 seen", "ndcg@10 unseen")


def shipped_as(name: str, record: dict, data: str, folder: Path) -> Path:
    """The candidate trained on every pair as `--recipe auto` would have shipped it."""
    candidate, entry = BY_NAME[name], record["candidates"][name]
    target = folder / "model"
    if target.exists():
        return target
    pairs, pool = load_training_data(data, "train", False)
    make = candidate_configs(record["base"], False, data, {})
    cfg = replace(make(candidate.tower, str(folder / "trained")), length=entry.get("length", 1.0))
    trained = Path(cfg.out) / "model"
    if not trained.exists():
        train(cfg, pairs, pool)
    if not candidate.merged:
        return trained
    return merge(record["base"], trained, target, entry["alpha"], chosen_by="benchmarks/recipes.py")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--candidates", default=None, help="passed to `siamese run`")
    args = p.parse_args()
    out = Path(args.out)
    run = out / "run"
    if not (run / "results.json").exists():
        command = [sys.executable, "-m", "siamese", "run", "--data", args.data, "--out", str(run)]
        command += ["--candidates", args.candidates] if args.candidates else []
        print("$ siamese " + " ".join(command[3:]), file=sys.stderr)
        started = time.time()
        subprocess.run(command, check=True)
        (out / "run_seconds.txt").write_text(f"{time.time() - started:.1f}\n")
    results = json.loads((run / "results.json").read_text())
    record = json.loads((run / "train" / "recipe.json").read_text())
    beir, guards, sts = load_beir(args.data, "test"), guard_sets(GUARDS), read_sts_csv(STSB_TEST)
    positives = read_positives(run / "train" / "model")  # every candidate trains on the same pairs
    measured = out / "candidates.json"
    rows = json.loads(measured.read_text()) if measured.exists() else {}
    rows["base"] = next(r for r in results["rows"] if r["kind"] == "base") | {"name": "base"}
    rows[record["chosen"]] = next(r for r in results["rows"] if r["kind"] == "tuned") | {
        "name": record["chosen"]
    }
    for name in record["candidates"]:
        if name not in rows:
            model = shipped_as(name, record, args.data, out / "candidates" / name)
            row = evaluate(
                [str(model)],
                beir,
                bm25=False,
                sts_rows=sts,
                progress=False,
                guards=guards,
                positives=positives,
            )[0]
            rows[name] = row | {"name": name}
            measured.write_text(json.dumps(rows, indent=2))
    chosen, base = record["chosen"], rows["base"]
    best = {k: max(r[k] for r in rows.values()) for k in ("ndcg@10", "ndcg@10 unseen")}
    below_best = {k: round(best[k] - rows[chosen][k], 4) for k in best}
    below_base = {k: round(base[k] - rows[chosen][k], 4) for k in best}
    guard_drop = {k: round(base[k] - rows[chosen][k], 4) for k in base if k.startswith("guard ")}
    passed = all(v <= BAR + 1e-9 for d in (below_best, below_base, guard_drop) for v in d.values())
    names = list(guards)
    print(f"## `siamese run` (default) on {args.data}\n")
    print(
        f"held out: {record['held_out']['queries']} of {record['train_queries']} training queries "
        f"({record['held_out']['method']}); shipped: {chosen} ({record['why']})\n"
    )
    print(
        "| candidate | held-out all | seen | unseen | gain (p) | test all | seen | unseen | "
        + " | ".join(names)
        + " |"
    )
    print("|---|---|---|---|---|---|---|---|" + "---|" * len(names))
    for name, row in rows.items():
        held = record["candidates"][name]["held_out"]
        gain = record["candidates"][name].get("gain")
        print(
            f"| {name}{' **shipped**' if name == chosen else ''} | "
            + " | ".join(f"{held.get(k, float('nan')):.4f}" for k in FIGURES)
            + (f" | {100 * gain['change']:+.1f} ({gain['p']:.3f}) | " if gain else " | – | ")
            + " | ".join(f"{row.get(k, float('nan')):.4f}" for k in FIGURES)
            + " | "
            + " | ".join(f"{row[f'guard {g}']:.4f}" for g in names)
            + " |"
        )
    print(
        f"\nbar: shipped below the base on test by {below_base}, below the best candidate by {below_best}, "
        f"guard drops against the base {guard_drop} (each ≤ {BAR}): {'met' if passed else 'NOT met'}"
    )
    seconds = (out / "run_seconds.txt").read_text().strip() if (out / "run_seconds.txt").exists() else None
    summary = {
        "chosen": chosen,
        "why": record["why"],
        "candidates": rows,
        "held_out": record["candidates"],
        "below_base": below_base,
        "below_best": below_best,
        "guard_drop": guard_drop,
        "bar_met": passed,
        "run_rows": results["rows"],
        "timings": results["timings"],
        "run_seconds": seconds,
    }
    (out / "recipes.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
