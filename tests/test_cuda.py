"""What only a GPU can show: the models on CUDA embed and train as they do on the CPU, the bank stays on the
device (or scores from the host when it does not fit), and torchrun runs its collectives through NCCL. Skipped
without CUDA (CI and this machine); ``benchmarks/device_check.sh`` runs them on a GPU machine."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO, build_tiny_model, toy_pairs

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
CUDA = torch.device("cuda", 0)


@pytest.fixture(scope="module")
def steady_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("cuda") / "model", dropout=0.0)


def test_encoding_on_cuda_matches_the_cpu_in_fp32_and_within_the_bound_in_fp16(steady_model, monkeypatch):
    import training.accelerator_encode as fast
    from training.encoder import Encoder

    texts = [p.positive for p in toy_pairs(300)]
    cpu = Encoder.load(steady_model, device="cpu").encode(texts)
    gpu = Encoder.load(steady_model, device=CUDA)
    assert gpu.device == CUDA
    half = gpu.encode(texts)  # many texts: the accelerator path, fp16 unless it misses the bound
    cos = (half * cpu).sum(-1) / np.linalg.norm(half, axis=-1) / np.linalg.norm(cpu, axis=-1)
    assert cos.min() >= fast.HALF_MIN_COSINE and gpu not in fast._FP32_ONLY
    monkeypatch.setenv("SIAMESE_HALF_ENCODE", "0")
    np.testing.assert_allclose(gpu.encode(texts), cpu, rtol=0, atol=1e-5)


def test_every_tower_trains_on_cuda_and_saves_a_model_the_cpu_loads(steady_model, tmp_path):
    from training.config import recipe_config
    from training.loop import train
    from training.models import load_model

    for tower in ("shared", "query", "adapter", "separate"):
        cfg = recipe_config(
            str(steady_model), str(tmp_path / tower), tower=tower, epochs=1, batch_size=8, temperature=0.05
        )
        model_dir = train(cfg, toy_pairs(24), progress=False)
        model = load_model(model_dir, device="cpu")
        assert np.isfinite(model.encode(["a query"], "query")).all(), tower
        metrics = json.loads((model_dir / "train_metrics.json").read_text())
        assert np.isfinite(metrics["final_loss"]) and metrics["tokens_per_s"] > 0, tower


def test_the_bank_on_the_device_and_from_the_host_give_one_loss(monkeypatch):
    import training.losses.corpus_infonce as corpus_infonce
    from training.losses import Batch
    from training.pairs import Pair

    texts = [f"doc {i}" for i in range(1000)]
    vectors = torch.nn.functional.normalize(torch.randn(1000, 32), dim=-1).numpy()
    pairs = [Pair(f"q{i}", texts[i]) for i in range(8)]
    q = torch.randn(8, 32, device=CUDA, requires_grad=True)
    on_device = corpus_infonce.CorpusInfoNCE(texts, vectors, pairs, 0.05, CUDA)
    assert on_device.bank.device == CUDA
    a = on_device(q, None, Batch(pairs))
    (grad_a,) = torch.autograd.grad(a, q)
    monkeypatch.setattr(corpus_infonce, "BANK_SHARE", 0.0)  # as if it did not fit
    monkeypatch.setattr(corpus_infonce, "BANK_CHUNK", 300)
    from_host = corpus_infonce.CorpusInfoNCE(texts, vectors, pairs, 0.05, CUDA)
    assert from_host.bank.device.type == "cpu" and from_host.bank.is_pinned()
    b = from_host(q, None, Batch(pairs))
    (grad_b,) = torch.autograd.grad(b, q)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_a, grad_b, rtol=1e-5, atol=1e-6)


def test_torchrun_trains_through_nccl_on_one_gpu(steady_model, tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(24))
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node=1",
            "-m",
            "training",
            "train",
            "--data",
            str(data),
            "--base",
            str(steady_model),
            "--out",
            str(tmp_path / "run"),
            "--batch-size",
            "8",
            "--max-steps",
            "3",
            "--tower",
            "query",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "distributed: 1 processes (nccl)" in done.stderr
    metrics = json.loads((tmp_path / "run" / "model" / "train_metrics.json").read_text())
    assert metrics["processes"] == 1 and metrics["steps"] == 3
