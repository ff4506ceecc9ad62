"""report.md and plot.png for `siamese run`: every gain beside its unseen-query and guard figures."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from common.metrics import GUARD, format_table
from training.evaluate import against_reference, generalisation


def plot(rows: list[dict], train_log: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 5), gridspec_kw={"width_ratios": [1, 2]})
    left.plot(train_log["step"], train_log["loss"], lw=1, color="tab:blue")
    left.set(title="training loss", xlabel="step", ylabel="loss")
    metrics = [m for m in ("ndcg@10", "ndcg@10 seen", "ndcg@10 unseen", "sts_spearman") if any(m in r for r in rows)]
    metrics += sorted({k for r in rows for k in r if k.startswith(GUARD)})
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [j + i * width for j in range(len(metrics))]
        right.bar(xs, [row.get(m, 0) for m in metrics], width, label=row["name"])
    right.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(metrics))],
                     [m.replace("ndcg@10 ", "").replace(GUARD, "guard\n") for m in metrics], fontsize=8)
    right.set(title="nDCG@10: all, seen, unseen queries; STS; out-of-domain guards", ylim=(0, 1))
    right.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(out: Path, rows: list[dict], timings: dict, train_config, extra: dict, deploy_commands: str,
                 compare: tuple[str, str] | None = None, references: list[str] = ()) -> Path:
    evaluation = extra.get("evaluation", {})
    if not rows:
        lines = ["# siamese run", "", "## Results", "", f"No evaluation: {extra.get('evaluation skipped')}", ""]
        evaluation = None
    else:
        lines = ["# siamese run", "", "## Results", "", format_table(rows), "",
                 "Rows marked *served* (or *vespa*) come from the search backend "
                 f"({extra.get('backend', 'embedded')}); the others are exact search: the base model in PyTorch, "
                 "the fine-tuned model as exported to ONNX (parity checks prove it equal to PyTorch), and each fused "
                 "with BM25 by reciprocal rank fusion.", ""]
    if evaluation:
        lines += [f"*seen*: the {evaluation['seen']} queries with a relevant document that was a training positive "
                  f"(a gain there may be memorised documents); *unseen*: the other {evaluation['unseen']}. "
                  "*guard* columns: nDCG@10 on the report half of each out-of-domain set ("
                  + ", ".join(f"{g}: {n} queries" for g, n in evaluation["guards"].items()) + ").", ""]
    if compare and all(name in {r["name"] for r in rows} for name in compare):
        lines += ["## Generalisation and forgetting", "", f"{compare[1]} against {compare[0]}, from this run:", "",
                  *generalisation(rows, *compare), ""]
        for reference in references:
            lines += [f"### Against {reference}", "", "An off-the-shelf model a user could deploy instead, "
                      "zero-shot, at its own window:", "", *against_reference(rows, reference, compare[1]), ""]
    lines += ["![training loss and metrics](plot.png)", "", "## Timings (seconds)", "", "| stage | seconds |",
              "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    if extra.get("vespa_container"):
        lines += ["", "## Vespa's own code on this package", "",
                  "Run in-process from Maven Central's Vespa artifacts (`siamese app check`): the config model, "
                  "the indexing statements with the embedder on documents of this corpus, the query stack on "
                  "every request our client builds, and the global phase on the embedded backend's features.", "",
                  *[f"- {line}" for line in extra["vespa_container"]]]
    lines += ["", "## Checks", "", "```", json.dumps(extra, indent=2), "```", "",
              "## Training configuration", "", "```", json.dumps(asdict(train_config), indent=2), "```", "",
              "## Deploy to Vespa", "", "```", deploy_commands, "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
