"""One device choice (``common/device.py``): every command that runs a model sends every model it makes to the
device ``--device`` names. This machine has no GPU, so torch is told it has one (``fake_cuda``) and ``place``,
the one function that moves a model, records where each model was sent and leaves it on the CPU; every encoder
a command creates must have passed through it, to the chosen device. The CUDA paths themselves run in
``benchmarks/device_check.sh`` on a GPU machine."""

import json

import numpy as np
import pytest
import torch
from conftest import toy_pairs

from common import device as devices
from siamese.cli import main

CUDA = torch.device("cuda", 0)


@pytest.fixture
def fake_cuda(monkeypatch):
    """The device choice finds one CUDA device (torch itself is left as it is: its optimizers ask CUDA too);
    ``place`` records (module, device) and moves nothing; every Encoder made is recorded too. Returns (placed,
    created)."""
    from training.encoder import Encoder

    monkeypatch.setattr(
        devices, "resolve", lambda name: CUDA if name in ("auto", "cuda", "cuda:0") else torch.device(name)
    )
    monkeypatch.setattr(devices, "_chosen", None)
    monkeypatch.setenv(
        "SIAMESE_ONNX_ENCODE", "0"
    )  # a model's device is still the CPU: keep to PyTorch's path
    placed, created = [], []

    def place(module, device=None):
        placed.append((module, torch.device(device) if device is not None else devices.current()))
        return module

    monkeypatch.setattr(devices, "place", place)
    real_init = Encoder.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(Encoder, "__init__", init)
    yield placed, created
    devices._chosen = None


def assert_routed(placed, created, allowed_cpu: int = 0):
    """Every encoder created went through ``place`` (itself, or inside a module that did) to the chosen CUDA
    device; ``allowed_cpu``: placements that name the CPU on purpose (the exporter traces ONNX there)."""
    assert created, "the command made no encoder"
    inside = {id(sub): device for module, device in placed for sub in module.modules()}
    for encoder in created:
        device = inside.get(id(encoder), inside.get(id(encoder.transformer)))
        assert device is not None, f"a {type(encoder).__name__} never reached place()"
    elsewhere = [str(d) for _, d in placed if d != CUDA]
    assert all(d == "cpu" for d in elsewhere) and len(elsewhere) <= allowed_cpu, elsewhere


def write_pairs(path, n=16):
    path.write_text(
        "".join(json.dumps({"query": p.query, "positive": p.positive}) + "\n" for p in toy_pairs(n))
    )
    return path


@pytest.mark.parametrize(
    "flags",
    [
        ["--tower", "shared"],
        ["--tower", "query"],
        ["--tower", "adapter"],
        ["--tower", "separate"],
        ["--late-interaction", "--colbert-dim", "16", "--query-tokens", "8", "--max-length", "32"],
    ],
    ids=["shared", "query", "adapter", "separate", "late-interaction"],
)
def test_train_sends_every_model_of_every_tower_to_the_chosen_device(fake_cuda, tiny_model, tmp_path, flags):
    # the default recipe's temperature (the base's margin) and anchor (the base as teacher) load models too
    assert (
        main(
            [
                "train",
                "--data",
                str(write_pairs(tmp_path / "p.jsonl")),
                "--base",
                str(tiny_model),
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cuda",
                *flags,
            ]
        )
        == 0
    )
    assert_routed(*fake_cuda)


def test_distill_merge_eval_and_import_onnx_send_their_models_to_the_chosen_device(
    fake_cuda, tiny_model, tiny_trained, small_beir, tmp_path
):
    from test_bases import _export_onnx_like_xenova
    from transformers import AutoModel

    placed, created = fake_cuda
    commands = [
        [
            "distill",
            str(tiny_model),
            str(tmp_path / "student"),
            "--layers",
            "1",
            "--data",
            str(small_beir),
            "--max-texts",
            "64",
        ],
        [
            "merge",
            str(tiny_model),
            str(tiny_trained),
            str(tmp_path / "merged"),
            "--alpha",
            "auto",
            "--no-guards",
            "--guard",
            str(small_beir),
        ],
        ["eval", "--models", str(tiny_model), "--data", str(small_beir), "--no-bm25", "--limit-queries", "5"],
    ]
    for argv in commands:
        placed.clear(), created.clear()
        assert main([*argv, "--device", "cuda"]) == 0, argv
        assert_routed(placed, created)
    graph = tmp_path / "model.onnx"
    _export_onnx_like_xenova(AutoModel.from_pretrained(tiny_model).eval(), graph)
    placed.clear(), created.clear()
    assert (
        main(
            [
                "import-onnx",
                str(graph),
                str(tiny_model / "tokenizer.json"),
                str(tmp_path / "imported"),
                "--device",
                "cuda",
            ]
        )
        == 0
    )
    assert placed and all(d == CUDA for _, d in placed)  # the rebuilt model is proven on the device
    assert_routed(placed, created)


def test_run_sends_every_model_to_the_chosen_device_and_exports_on_the_cpu(
    fake_cuda, tiny_model, small_beir, tmp_path
):
    assert (
        main(
            [
                "run",
                "--data",
                str(small_beir),
                "--base",
                str(tiny_model),
                "--out",
                str(tmp_path / "run"),
                "--epochs",
                "1",
                "--no-guards",
                "--no-sts",
                "--limit-queries",
                "5",
                "--device",
                "cuda",
            ]
        )
        == 0
    )
    assert_routed(*fake_cuda, allowed_cpu=2)  # the export traces and proves each tower's graph on the CPU


def test_auto_takes_the_best_device_present(monkeypatch):
    monkeypatch.setattr(devices, "_chosen", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert devices.resolve("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert devices.resolve("auto") == CUDA
    assert devices.resolve("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setenv("LOCAL_RANK", "1")  # torchrun's second process on this machine takes the second GPU
    assert devices.resolve("auto") == torch.device("cuda", 1)


def test_a_device_that_is_not_here_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["eval", "--device", "cuda", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --device cuda: no CUDA device here") and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as exit:
        main(["train", "--device", "gpu"])
    assert (
        exit.value.code == 2 and "must be one of auto | cpu | cuda | cuda:N | mps" in capsys.readouterr().err
    )


def test_half_precision_is_kept_only_where_it_matches_fp32(tiny_model, monkeypatch, capsys):
    """The fp16 path of ``accelerator_encode``, run on the CPU (CPU autocast also takes fp16): within the
    bound its vectors are kept; above it, fp32 from then on, for that encoder."""
    import training.accelerator_encode as fast
    from training.encoder import Encoder

    encoder = Encoder.load(tiny_model, device="cpu").eval()
    monkeypatch.setattr(devices, "is_accelerator", lambda device: True)
    monkeypatch.setattr(devices, "half_encoding", lambda device=None: True)
    texts = [p.positive for p in toy_pairs(40)]
    exact = encoder(encoder.tokenize(texts)).detach().numpy()
    half = fast.accelerator_encode(encoder, texts, 16, False)
    cosines = (half * exact).sum(-1) / np.linalg.norm(half, axis=-1) / np.linalg.norm(exact, axis=-1)
    assert cosines.min() >= fast.HALF_MIN_COSINE and np.abs(half - exact).max() > 0  # half, and close
    monkeypatch.setattr(fast, "HALF_MIN_COSINE", 1.0 + 1e-9)  # no fp16 vector can meet this bound
    other = Encoder.load(tiny_model, device="cpu").eval()
    refused = fast.accelerator_encode(other, texts, 16, False)
    assert "fp32 from here on" in capsys.readouterr().err
    np.testing.assert_allclose(refused, other(other.tokenize(texts)).detach().numpy(), rtol=0, atol=1e-6)
    assert other in fast._FP32_ONLY and encoder not in fast._FP32_ONLY


def test_a_bank_scored_from_the_host_in_chunks_gives_the_same_loss_and_gradient(monkeypatch):
    import training.losses.corpus_infonce as towers  # the bank lives with its loss

    torch.manual_seed(0)
    q = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    bank = torch.randn(50, 8, dtype=torch.float64)
    weights = torch.randn(6, 50, dtype=torch.float64)
    (q @ bank.T * weights).sum().backward()
    expected, q.grad = q.grad.clone(), None
    monkeypatch.setattr(towers, "BANK_CHUNK", 7)  # 50 documents: 8 chunks, the last one short
    scores = towers.BankScores.apply(q, bank)
    torch.testing.assert_close(scores, q @ bank.T, rtol=0, atol=1e-12)
    (scores * weights).sum().backward()
    torch.testing.assert_close(q.grad, expected, rtol=0, atol=1e-12)
