"""Training across processes (``training/distributed.py``), proven on this machine with torchrun and gloo: two
processes take the gradient one process takes on the same global batch, and `siamese train --nproc 2` writes
the model one process writes. Dropout is off (a rank's dropout draws from its own random stream).

The bounds: the two runs differ only in float32 rounding. A rank pads its share to its own longest text (so
matrix products run on other shapes and sum in another order), and a gradient arrives as the sum of two
partial sums: relative differences of a few 1e-7 per operation (measured: 3e-7 of the largest gradient entry;
bound 1e-5). Over several steps AdamW amplifies rounding where a gradient is near zero: its first steps move
every parameter by about ±lr whatever the gradient's size, so an embedding row that few texts use may move
either way. The two models are therefore compared by what they do: the loss at every step (measured within
6e-6, bound 5e-5 relative) and the vectors they give 80 texts, which may differ by at most 2 % of what
training changed in them (measured: 1.8e-5 against 7.1e-3, 0.25 %)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, build_tiny_model, toy_pairs
from safetensors.torch import load_file

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


@pytest.fixture(scope="module")
def steady_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("steady") / "model", dropout=0.0)


def _env(**extra) -> dict:
    # gloo on the CPU, also on a GPU machine: NCCL cannot put two ranks on one GPU (test_cuda.py runs NCCL)
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]),
        OMP_NUM_THREADS="1",
        CUDA_VISIBLE_DEVICES="",
        **extra,
    )
    env.pop("WORLD_SIZE", None)
    return env


def _run(command: list[str], **env) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_take_the_gradient_one_process_takes_on_the_global_batch(steady_model, tmp_path):
    outs = {n: tmp_path / f"step-{n}.pt" for n in (1, 2)}
    script = [str(REPO / "tests" / "ddp_step.py"), str(steady_model)]
    _run([sys.executable, *script, str(outs[1])])  # one process, no torchrun: the code a user runs alone
    _run([*TORCHRUN, "--nproc-per-node=2", *script, str(outs[2])])
    one, two = (torch.load(outs[n], weights_only=False) for n in (1, 2))
    for loss in ("infonce+anchor", "corpus"):
        a, b = one[loss], two[loss]
        assert abs(a["loss"] - b["loss"]) <= 1e-6 * abs(a["loss"]), (loss, a["loss"], b["loss"])
        assert a["grads"].keys() == b["grads"].keys() and len(a["grads"]) > 10
        scale = max(g.abs().max() for g in a["grads"].values())
        worst = max((a["grads"][k] - b["grads"][k]).abs().max() for k in a["grads"]) / scale
        print(f"{loss}: loss {a['loss']:.6f} vs {b['loss']:.6f}, gradient max |Δ| / max |g| = {worst:.1e}")
        assert worst <= 1e-5, (loss, worst)


def _train(model: Path, out: Path, data: Path, nproc: int, *flags, **env) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "training",
        "train",
        "--data",
        str(data),
        "--base",
        str(model),
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--max-steps",
        "4",
        "--seed",
        "1",
        *flags,
    ]
    return _run(command + (["--nproc", str(nproc)] if nproc > 1 else []), **env)


def _weights(model_dir: Path) -> dict:
    return {
        f"{path.parent.name}/{k}": v
        for path in sorted(model_dir.rglob("*.safetensors"))
        for k, v in load_file(path).items()
    }


def _vectors(model_dir: Path):
    from training.models import load_model

    texts = [p.query for p in toy_pairs(40)] + [p.positive for p in toy_pairs(40, seed=5)]
    return load_model(model_dir, device="cpu").encode(texts, "query")


@pytest.mark.parametrize("tower", ["shared", "query"])
def test_siamese_train_nproc_2_writes_the_model_one_process_writes(steady_model, tmp_path, tower):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(40))
    )
    _train(steady_model, tmp_path / "one", data, 1, "--tower", tower)
    # the two-process run embeds the bank, the anchor's texts and the base's margin itself, a share per rank
    done = _train(
        steady_model, tmp_path / "two", data, 2, "--tower", tower, SIAMESE_CACHE=str(tmp_path / "cache")
    )
    assert "launching 2 processes" in done.stderr and "distributed: 2 processes (gloo)" in done.stderr
    one, two = tmp_path / "one" / "model", tmp_path / "two" / "model"
    assert sorted(p.relative_to(one) for p in one.rglob("*")) == sorted(
        p.relative_to(two) for p in two.rglob("*")
    )
    assert _weights(one).keys() == _weights(two).keys()
    a, b, base = _vectors(one), _vectors(two), _vectors(steady_model)
    worst, moved = float(abs(a - b).max()), float(abs(a - base).max())
    print(f"{tower}: vectors max |Δ| {worst:.1e} (training changed them by up to {moved:.1e})")
    assert worst <= 0.02 * moved
    metrics = [json.loads((d / "train_metrics.json").read_text()) for d in (one, two)]
    assert (metrics[0].get("processes"), metrics[1]["processes"]) == (1, 2)
    assert len(metrics[0]["log"]["loss"]) == len(metrics[1]["log"]["loss"]) == 4
    for x, y in zip(metrics[0]["log"]["loss"], metrics[1]["log"]["loss"]):
        assert abs(x - y) <= 5e-5 * abs(x), (x, y)
    config = [json.loads((d / "train_config.json").read_text()) for d in (one, two)]
    assert config[0]["temperature"] == config[1]["temperature"]


def test_a_two_process_run_stopped_by_ctrl_c_resumes_to_the_model_of_an_unstopped_one(steady_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(40))
    )
    flags = ["--tower", "shared", "--checkpoint-every", "2"]
    _train(steady_model, tmp_path / "whole", data, 2, *flags)
    stopped = subprocess.run(
        [
            *TORCHRUN,
            "--nproc-per-node=2",
            str(REPO / "tests" / "ddp_interrupt.py"),
            "3",
            "train",
            "--data",
            str(data),
            "--base",
            str(steady_model),
            "--out",
            str(tmp_path / "cut"),
            "--batch-size",
            "8",
            "--max-steps",
            "4",
            "--seed",
            "1",
            *flags,
        ],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert stopped.returncode != 0 and "interrupted (Ctrl-C)" in stopped.stderr
    assert not (tmp_path / "cut" / "model").exists()
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step-0000002"]
    _train(steady_model, tmp_path / "cut", data, 2, *flags, "--resume")
    a, b = _weights(tmp_path / "whole" / "model"), _weights(tmp_path / "cut" / "model")
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0  # every rank resumed its own state
