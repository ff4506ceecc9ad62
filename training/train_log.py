"""The training curve where a user's tools read it: TensorBoard event files (``--report-to tensorboard``) and
a table in the model card. Both read the log every training loop keeps (``train_metrics.json``'s ``log``:
step, loss, learning rate, and any evaluation during training), so the three show the same numbers.

Example::

    write_tensorboard(run_dir / "tensorboard", metrics["log"])   # then: tensorboard --logdir run_dir
"""

from __future__ import annotations

import math
from pathlib import Path

from common.errors import ConfigError

from .model_dir import TRAIN_METRICS_FILE

REPORT_TO = ("tensorboard", "none")


def tensorboard_available() -> bool:
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        return False
    return True


def write_tensorboard(folder, log: dict) -> Path | None:
    """Event files under ``folder``: ``train/loss``, ``train/learning_rate`` a step, and ``eval/<metric>`` at
    each evaluation. None where TensorBoard's writer is not installed."""
    if not tensorboard_available():
        return None
    from torch.utils.tensorboard import SummaryWriter

    folder = Path(folder)
    writer = SummaryWriter(log_dir=str(folder))
    for step, loss, lr in zip(log["step"], log["loss"], log["lr"]):
        writer.add_scalar("train/loss", loss, step)
        writer.add_scalar("train/learning_rate", lr, step)
    for point in log.get("eval", []):
        for name, value in point.items():
            if name != "step":
                writer.add_scalar(f"eval/{name}", value, point["step"])
    writer.close()
    return folder


def log_table(log: dict, rows: int = 10) -> list[str]:
    """The training curve as a markdown table of about ``rows`` lines: the loss averaged over each stretch of
    steps (one step's loss is noise), the learning rate at its end, and the evaluations within it."""
    steps = log.get("step") or []
    if not steps:
        return []
    size = max(1, math.ceil(len(steps) / rows))
    evals = {e["step"]: e for e in log.get("eval", [])}
    metrics = sorted({k for e in evals.values() for k in e if k != "step"})

    def row(cells):
        return "| " + " | ".join(cells) + " |"

    lines = [row(["steps", "loss (mean)", "learning rate", *metrics]), row(["---"] * (3 + len(metrics)))]
    for start in range(0, len(steps), size):
        stretch = slice(start, start + size)
        losses = log["loss"][stretch]
        seen = [evals[s] for s in steps[stretch] if s in evals]
        lines.append(
            row(
                [
                    f"{steps[start]}–{steps[stretch][-1]}",
                    f"{sum(losses) / len(losses):.4f}",
                    f"{log['lr'][stretch][-1]:.2e}",
                    *(f"{seen[-1][m]:.4f}" if seen and m in seen[-1] else "" for m in metrics),
                ]
            )
        )
    return lines


def check_report_to(report_to: str | None) -> str:
    """The choice made once, before training: "tensorboard" (asked, or auto where its writer is installed) or
    "none"; asking for TensorBoard without it installed is one line."""
    if report_to is None:
        return "tensorboard" if tensorboard_available() else "none"
    if report_to not in REPORT_TO:
        raise ConfigError(f"--report-to must be one of {', '.join(REPORT_TO)}, not {report_to!r}")
    if report_to == "tensorboard" and not tensorboard_available():
        raise ConfigError(
            "--report-to tensorboard needs TensorBoard's writer: pip install tensorboard (or "
            "--report-to none)"
        )
    return report_to


def report_training(model_dir, report_to: str) -> Path | None:
    """After training: the run's curve as TensorBoard events in ``RUN/tensorboard`` (beside ``RUN/model``)."""
    import json

    metrics_file = Path(model_dir) / TRAIN_METRICS_FILE
    if report_to != "tensorboard" or not metrics_file.exists():  # the base, untrained, has no curve
        return None
    metrics = json.loads(metrics_file.read_text())
    return write_tensorboard(Path(model_dir).parent / "tensorboard", metrics["log"])
