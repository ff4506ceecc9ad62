"""A run is never silently wrong: training that cannot train, resumes on changed settings, racing writers."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import REPO, interrupted_at_step, toy_pairs

from siamese.cli import main
from training.config import TrainConfig
from training.encoder import Encoder
from training.loop import train


def write_pairs(path, rows):
    path.write_text("".join(json.dumps({"query": q, "positive": p}) + "\n" for q, p in rows))
    return path


def train_args(tiny_model, data, out, *extra):
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--base",
        str(tiny_model),
        "--anchor",
        "none",
        "--max-length",
        "32",
        "--batch-size",
        "8",
        *extra,
    ]


@pytest.mark.parametrize(
    "rows",
    [
        [("one query", "one passage")],
        [("the same query", f"passage number {i}") for i in range(16)],
        [("a query", "a passage")] * 16,
    ],
    ids=["one pair", "one query, 16 positives", "16 identical lines"],
)
def test_training_that_would_take_no_step_is_refused_before_any_work(tiny_model, tmp_path, capsys, rows):
    data = write_pairs(tmp_path / "pairs.jsonl", rows)
    assert main(train_args(tiny_model, data, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert "training would take 0 steps" in err and "at least 2 pairs" in err
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "train_config.json").exists()


def _interrupted_run(tiny_model, tmp_path, monkeypatch):
    """A run of 6 steps (checkpoint every 2) killed in step 3."""
    data = write_pairs(tmp_path / "pairs.jsonl", [(p.query, p.positive) for p in toy_pairs(48)])
    out = tmp_path / "run"
    with interrupted_at_step(monkeypatch, 3):
        assert main(train_args(tiny_model, data, out, "--checkpoint-every", "2", "--epochs", "1")) == 130
    return data, out


def test_a_resume_with_other_settings_or_data_is_refused_with_what_differs(
    tiny_model, tmp_path, monkeypatch, capsys
):
    data, out = _interrupted_run(tiny_model, tmp_path, monkeypatch)
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--lr", "1.0", "--batch-size", "2"]) == 2
    err = capsys.readouterr().err
    assert "lr 0.0001 → 1.0" in err and "batch size 8 → 2" in err
    other = write_pairs(tmp_path / "other.jsonl", [(p.query, p.positive) for p in toy_pairs(20, seed=3)])
    assert main(["train", "--out", str(out), "--resume", "--data", str(other)]) == 2
    assert "the training pairs" in capsys.readouterr().err
    assert not (out / "model").exists()
    # a setting that may change is applied and said; then the run finishes from its checkpoint
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "4"]) == 0
    assert "max steps 0 → 4 (applied)" in capsys.readouterr().err
    metrics = json.loads((out / "model" / "train_metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["log"]["step"] == [1, 2, 3, 4]
    assert json.loads((out / "train_config.json").read_text())["lr"] == 1e-4


def test_resuming_a_finished_run_retrains_nothing(tiny_model, tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", [(p.query, p.positive) for p in toy_pairs(24)])
    out = tmp_path / "run"
    assert main(train_args(tiny_model, data, out, "--epochs", "1")) == 0
    before = (out / "model" / "model.safetensors").read_bytes()
    config = (out / "train_config.json").read_text()
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert "is a finished run" in capsys.readouterr().err
    assert (out / "model" / "model.safetensors").read_bytes() == before
    assert (out / "train_config.json").read_text() == config and not (out / "checkpoints").exists()
    # a finished run has no steps left to change: a change is refused, not "applied" to nothing
    assert main(["train", "--out", str(out), "--resume", "--max-steps", "2"]) == 2
    assert "has finished, so nothing can change: max steps 0 → 2" in capsys.readouterr().err


def test_a_second_writer_of_one_output_gets_one_line_naming_the_first(tiny_model, tmp_path, capsys):
    data = write_pairs(tmp_path / "pairs.jsonl", [(p.query, p.positive) for p in toy_pairs(24)])
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; sys.path.insert(0, sys.argv[1]); from common.lock import output_lock\n"
                "with output_lock(sys.argv[2], 'siamese train (seed 1)'):\n"
                "    print('held', flush=True); time.sleep(60)"
            ),
            str(REPO),
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(train_args(tiny_model, data, out, "--seed", "2")) == 2
        err = [
            line for line in capsys.readouterr().err.splitlines() if line.startswith(("error", "Traceback"))
        ]
        assert len(err) == 1 and f"is being written by `siamese train (seed 1)` (pid {holder.pid}" in err[0]
        assert not out.exists() or not any(out.iterdir())
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, taken over, and the run goes through
    assert main(train_args(tiny_model, data, out, "--seed", "2", "--epochs", "1")) == 0
    assert json.loads((out / "train_config.json").read_text())["seed"] == 2
    assert not list(tmp_path.glob(".run.lock"))


def test_two_trainings_at_once_leave_one_consistent_run(tiny_model, tmp_path):
    """Two real `siamese train` processes into one --out: one trains, the other is refused; what is left on
    disk is the winner's, configuration and model alike."""
    data = write_pairs(tmp_path / "pairs.jsonl", [(p.query, p.positive) for p in toy_pairs(24)])
    out = tmp_path / "conc"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "training",
                *train_args(tiny_model, data, out, "--seed", str(seed), "--epochs", "1"),
            ],
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)  # running beside the winner, or after it
    assert "is being written by" in loser or "already holds a training run" in loser
    winner = json.loads((out / "train_config.json").read_text())["seed"]
    assert json.loads((out / "model" / "train_config.json").read_text())["seed"] == winner


def test_the_served_window_is_the_base_models_own_and_training_cuts_texts_to_train_length(
    tiny_model, tmp_path
):
    cfg = TrainConfig(
        base=str(tiny_model),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=8,
        anchor="none",
        train_length=16,
    )
    model_dir = train(cfg, toy_pairs(16), progress=False)
    encoder = Encoder.load(model_dir)
    assert encoder.config.max_length == 128  # the tiny model's positions: its own window
    saved = json.loads((model_dir / "train_config.json").read_text())
    assert (saved["max_length"], saved["train_length"]) == (128, 16)
    assert torch.isfinite(torch.from_numpy(encoder.encode(["x " * 200]))).all()


@pytest.mark.parametrize(
    "argv, says",
    [
        (["merge", "base", "x", "y", "--alpha", "xyz"], "must be a number in [0, 1] or 'auto'"),
        (["merge", "base", "x", "y", "--alpha", "1.5"], "must be in [0, 1]"),
        (["run", "--chunk-tokens", "foo"], "must be a whole number of tokens or 'auto'"),
        (["run", "--chunk-tokens", "-4"], "must be ≥ 8 tokens"),
        (["run", "--merge", "foo"], "must be a number in [0, 1] or 'auto'"),
        (["app", "build", "e", "o", "--name", "bad name"], "must start with a lowercase letter"),
        (["app", "build", "e", "o", "--name", "Upper"], "must start with a lowercase letter"),
        (["run", "--bm25-weight", "heavy"], "must be a number in [0, 100] or 'auto'"),
        (["run", "--bm25-weight", "nan"], "must be in [0, 100]"),
        (["app", "build", "e", "o", "--bm25-weight", "-1"], "must be in [0, 100]"),
    ],
)
def test_malformed_option_values_end_in_one_usage_line(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err


@pytest.mark.parametrize(
    "extra, says",
    [
        (
            ["--chunk-tokens", "16", "--chunk-overlap", "16"],
            "chunk overlap 16 must be at least 0 and under half",
        ),
        (["--chunk-tokens", "16", "--chunk-overlap", "-1"], "chunk overlap -1"),
        (["--chunk-tokens", "4096"], "is above the model's window"),
        (["--chunk-overlap", "8"], "--chunk-overlap needs --chunk-tokens"),
        (["--dim", "7"], "--dim 7 must be between 8 and the model's 32 dimensions"),
        (["--dim", "500"], "--dim 500 must be between 8"),
        (["--merge", "auto", "--no-guards"], "--merge auto chooses α on the guards"),
        (["--late-interaction"], "a late-interaction model is served beside it"),
        (["--lr", "0"], "must be > 0"),
        # issue 35: flags that would have been accepted and ignored
        (["--queries", "q.jsonl"], "--queries without --qrels and --corpus: evaluation needs"),
        (
            ["--symmetric"],
            "--symmetric (the query tower scores each query against every document's frozen vector",
        ),
        (
            ["--loss", "symmetric-infonce"],
            "--loss symmetric-infonce trains the shared and separate towers, not the query",
        ),
        (["--tower", "separate", "--colbert-dim", "64"], "--colbert-dim (only late interaction has it"),
        (["--eval-every", "5", "--tower", "shared"], "siamese run evaluates once, after training"),
    ],
)
def test_run_judges_every_option_before_any_work(tiny_model, small_beir, tmp_path, capsys, extra, says):
    out = tmp_path / "run"
    code = None
    try:
        code = main(["run", "--data", str(small_beir), "--base", str(tiny_model), "--out", str(out), *extra])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    assert code == 2
    assert says in capsys.readouterr().err
    assert not out.exists()  # nothing trained, nothing left behind


def test_a_guard_with_an_empty_half_or_no_folder_is_one_line(tiny_model, small_beir, tmp_path, capsys):
    from common.metrics import report_half

    guard = tmp_path / "guard"
    (guard / "qrels").mkdir(parents=True)
    qid = next(
        q for q in (f"q{i}" for i in range(20)) if not report_half({q})
    )  # its one query: selection half
    (guard / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"text {i}"}) + "\n" for i in range(3))
    )
    (guard / "queries.jsonl").write_text(json.dumps({"_id": qid, "text": "text 1"}) + "\n")
    (guard / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\n{qid}\td1\t1\n")
    common = [
        "eval",
        "--data",
        str(small_beir),
        "--models",
        str(tiny_model),
        "--no-bm25",
        "--limit-queries",
        "2",
    ]
    assert main([*common, "--guard", str(guard)]) == 2
    assert "its report half holds no judged query (of 1)" in capsys.readouterr().err
    assert main([*common, "--guard", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_a_package_folder_vespa_would_not_take_as_a_name_is_checked_all_the_same(tiny_export, tmp_path):
    from vespa_app.check.java import java_missing
    from vespa_app.check.structure import check_package
    from vespa_app.package.build import write_package

    out = write_package(tiny_export, tmp_path / "x" / "my app", check=None)
    if java_missing():
        pytest.skip(f"Vespa's own code cannot run here: {java_missing()}")
    assert check_package(out).vespa == "accepted"


def test_app_build_takes_a_number_for_the_bm25_weight_not_auto(capsys):
    assert main(["app", "build", "export", "out", "--bm25-weight", "auto"]) == 2
    assert "chosen by `siamese run` on the training queries" in capsys.readouterr().err


@pytest.mark.parametrize("no_check", [[], ["--no-check"]])
def test_packed_bits_over_chunks_are_refused_before_a_package_is_written(
    tiny_export, tmp_path, capsys, no_check
):
    out = tmp_path / "app"
    assert (
        main(["app", "build", str(tiny_export), str(out), "--binarized", "--chunk-tokens", "16", *no_check])
        == 2
    )
    assert "--binarized with --chunk-tokens is not offered" in capsys.readouterr().err
    assert not out.exists()
