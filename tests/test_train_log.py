"""The training curve where a user's tools read it: TensorBoard's own event reader reads back what training
logged, and the model card carries the same curve as a table."""

import json

import pytest
from conftest import toy_pairs

from siamese.cli import main
from training.train_log import check_report_to, log_table, write_tensorboard


def _scalars(folder) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_reads_back_the_log(tmp_path):
    log = {
        "step": [1, 2, 3],
        "loss": [3.0, 2.5, 2.25],
        "lr": [1e-4, 5e-5, 0.0],
        "eval": [{"step": 2, "ndcg@10": 0.5, "mrr@10": 0.25}],
    }
    scalars = _scalars(write_tensorboard(tmp_path / "tb", log))
    assert scalars["train/loss"] == [(1, 3.0), (2, 2.5), (3, 2.25)]
    assert [s for s, _ in scalars["train/learning_rate"]] == [1, 2, 3]
    assert scalars["eval/ndcg@10"] == [(2, 0.5)] and scalars["eval/mrr@10"] == [(2, 0.25)]


def test_siamese_train_reports_to_tensorboard_and_the_card(tiny_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(24))
    )
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--base",
                str(tiny_model),
                "--out",
                str(out),
                "--anchor",
                "none",
                "--batch-size",
                "8",
                "--epochs",
                "1",
                "--report-to",
                "tensorboard",
            ]
        )
        == 0
    )
    log = json.loads((out / "model" / "train_metrics.json").read_text())["log"]
    scalars = _scalars(out / "tensorboard")
    assert [s for s, _ in scalars["train/loss"]] == log["step"]
    assert [v for _, v in scalars["train/loss"]] == pytest.approx(log["loss"], rel=1e-6)
    card = (out / "model" / "README.md").read_text()
    assert "### Training log" in card and "| steps | loss (mean) | learning rate |" in card
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--base",
                str(tiny_model),
                "--out",
                str(tmp_path / "none"),
                "--anchor",
                "none",
                "--batch-size",
                "8",
                "--epochs",
                "1",
                "--report-to",
                "none",
            ]
        )
        == 0
    )
    assert not (tmp_path / "none" / "tensorboard").exists()


def test_the_log_table_averages_stretches_and_shows_evaluations():
    log = {
        "step": list(range(1, 21)),
        "loss": [float(i) for i in range(20)],
        "lr": [1.0] * 20,
        "eval": [{"step": 10, "ndcg@10": 0.5}],
    }
    table = log_table(log, rows=4)
    assert table[0] == "| steps | loss (mean) | learning rate | ndcg@10 |" and len(table) == 2 + 4
    assert table[2].startswith("| 1–5 | 2.0000 |") and table[3].endswith("| 0.5000 |")


def test_asking_for_tensorboard_without_it_is_one_line(monkeypatch):
    from common.errors import ConfigError
    from training import train_log

    monkeypatch.setattr(train_log, "tensorboard_available", lambda: False)
    assert check_report_to(None) == "none"
    with pytest.raises(ConfigError, match="pip install tensorboard"):
        check_report_to("tensorboard")
