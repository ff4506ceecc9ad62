"""report.md and plot.png for `siamese run`."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from common.metrics import format_table


def plot(rows: list[dict], train_log: dict, path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(train_log["step"], train_log["loss"], lw=1, color="tab:blue")
    left.set(title="training loss (InfoNCE)", xlabel="step", ylabel="loss")
    metrics = [m for m in ("ndcg@10", "recall@100", "mrr@10") if any(m in r for r in rows)]
    width = 0.8 / max(len(rows), 1)
    for i, row in enumerate(rows):
        xs = [j + i * width for j in range(len(metrics))]
        right.bar(xs, [row.get(m, 0) for m in metrics], width, label=row["name"])
    right.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(metrics))], metrics)
    right.set(title="retrieval on the evaluation split", ylim=(0, 1))
    right.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def write_report(out: Path, rows: list[dict], timings: dict, train_config, extra: dict,
                 deploy_commands: str) -> Path:
    lines = ["# siamese run", "", "## Results", "", format_table(rows), "",
             "BM25 and the semantic/hybrid rows marked *served* come from the search backend "
             f"({extra.get('backend', 'embedded')}); the model rows are exact search with the PyTorch model "
             "(base) or the exported ONNX model (fine-tuned), which parity checks prove equal to PyTorch.", "",
             "![training loss and metrics](plot.png)", "", "## Timings (seconds)", "",
             "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    lines += ["", "## Checks", "", "```", json.dumps(extra, indent=2), "```", "",
              "## Training configuration", "", "```", json.dumps(asdict(train_config), indent=2), "```", "",
              "## Deploy to Vespa", "", "```", deploy_commands, "```", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
