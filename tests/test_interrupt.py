"""kill -9 in the middle of training, then --resume: the same model as a run that was never interrupted.
And command-line values out of range fail before any work."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, toy_pairs

from training.encoder import Encoder


def write_pairs(path):
    with open(path, "w") as fh:
        for p in toy_pairs(48):
            fh.write(json.dumps({"query": p.query, "positive": p.positive}) + "\n")
    return path


def train_cmd(data, base, out, *extra):
    return [
        sys.executable,
        "-m",
        "training",
        "train",
        "--data",
        str(data),
        "--base",
        str(base),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--max-length",
        "32",
        "--lr",
        "1e-3",
        "--checkpoint-every",
        "2",
        "--seed",
        "7",
        *extra,
    ]


def test_kill_9_then_resume_matches_an_uninterrupted_run(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run(train_cmd(data, tiny_model, tmp_path / "whole"), check=True, env=env, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        train_cmd(data, tiny_model, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "checkpoints").glob("step-0000004")):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model").exists(), "the run finished before it could be killed"
    # a checkpoint being written when the kill came stays a hidden temporary that never looks complete
    assert all(p.name.startswith(("step-", ".step-")) for p in (out / "checkpoints").iterdir())
    for checkpoint in (out / "checkpoints").glob("step-*"):
        assert (checkpoint / "state.pt").exists() and (checkpoint / "model" / "model.safetensors").exists()

    subprocess.run(train_cmd(data, tiny_model, out, "--resume"), check=True, env=env, capture_output=True)
    a, b = Encoder.load(tmp_path / "whole").state_dict(), Encoder.load(out).state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--batch-size", "-4", "must be ≥ 1"),
        ("--temperature", "0", "must be > 0"),
        ("--lr", "-1", "must be > 0"),
        ("--epochs", "0", "must be ≥ 1"),
    ],
)
def test_out_of_range_arguments_fail_before_work(tmp_path, capsys, flag, value, message):
    from siamese.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "run"), flag, value])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_max_length_above_the_model_fails_before_training(tiny_model, tmp_path, capsys):
    from siamese.cli import main

    data = write_pairs(tmp_path / "pairs.jsonl")
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--base",
                str(tiny_model),
                "--out",
                str(tmp_path / "run"),
                "--max-length",
                "4096",
            ]
        )
        == 2
    )
    assert "max length 4096 is above what" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_wrong_model_directory_is_explained(tmp_path, capsys):
    from siamese.cli import main

    assert main(["export", str(tmp_path), str(tmp_path / "out")]) == 2
    assert "no config.json" in capsys.readouterr().err
