"""The one device choice: where every model of a command runs (``--device auto|cpu|cuda|cuda:N|mps``).

Every command that runs a model takes ``--device`` (``add_device_arg``); ``common.cli.run`` hands it to
``use`` before the command starts, and every model reaches its device through ``place`` (``Encoder.load``
calls it), so one choice moves the base, both towers, the anchor's teacher, the distillation student, the
merged model and the evaluation encoders together. ``auto`` (the default) takes the best device present: CUDA,
then Apple's MPS, then the CPU. Under ``torchrun`` each process takes
the GPU of its local rank (``training/distributed.py``).

What stays on the host whatever the device: vectors handed back by ``encode`` (float32 numpy), the vector
cache, indexes and the embedded backend, and the exporter's graphs (ONNX is traced and proven on the CPU).

Nothing here imports torch at module level: building a command line stays fast.

    use("auto")                 # once, from the command line
    encoder = place(encoder)    # every model; current() says where that is
"""

from __future__ import annotations

import argparse
import os
import re

from .errors import ConfigError

CHOICES = "auto | cpu | cuda | cuda:N | mps"
_NAME = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
_chosen = None  # the resolved torch.device; None until ``use`` or the first ``current``


def device_name(text: str) -> str:
    """``--device``'s value, checked for its form only (whether the device exists is ``use``'s to say)."""
    if not _NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be one of {CHOICES}, got {text!r}")
    return text


def add_device_arg(parser) -> None:
    """``--device`` on a parser, or on one of its ``--help`` sections (``common.cli.arg_group``)."""
    parser.add_argument(
        "--device",
        type=device_name,
        default="auto",
        metavar="DEVICE",
        help=f"where models run: {CHOICES} (default auto: the best present, CUDA, then MPS, then "
        "the CPU; under torchrun, the GPU of each process's local rank)",
    )


def best() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve(name: str):
    """The torch.device ``name`` means here; one ConfigError line where it is not present."""
    import torch

    name = best() if name == "auto" else device_name(name)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: no CUDA device here (torch {torch.__version__}, CUDA build "
                f"{torch.version.cuda or 'none'}). Use --device cpu or auto."
            )
        local = os.environ.get("LOCAL_RANK")  # torchrun: one GPU a process, its local rank's
        index = (
            int(name.split(":")[1]) if ":" in name else int(local) if local else torch.cuda.current_device()
        )
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                f"numbered from 0"
            )
        return torch.device("cuda", index)
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError("--device mps: Apple's MPS is not available here. Use --device cpu or auto.")
    return torch.device(name)


def use(name: str | None) -> None:
    """Make ``name`` (None: auto) the device every model of this process is placed on."""
    global _chosen
    _chosen = resolve(name or "auto")


def current():
    """The chosen device (auto where no command chose one: library use)."""
    if _chosen is None:
        use("auto")
    return _chosen


def chosen_type() -> str | None:
    """The kind of device a command chose ("cuda", "cpu", ...), None where none was: for code that must not
    import torch (ONNX Runtime's sessions)."""
    return _chosen.type if _chosen is not None else None


def place(module, device=None):
    """``module`` on ``device`` (default: the chosen one), returned. The one place a model is moved: the tests
    watch it to prove that every entry point routes its models through the one choice."""
    return module.to(device if device is not None else current())


def half_encoding(device=None) -> bool:
    """Whether corpus encoding on ``device`` (default: the chosen one) starts in half precision: on CUDA,
    unless ``SIAMESE_HALF_ENCODE=0`` (each call still checks it
    against fp32: ``training/accelerator_encode.py``)."""
    device = device if device is not None else current()
    return getattr(device, "type", "") == "cuda" and os.environ.get("SIAMESE_HALF_ENCODE") != "0"


def is_accelerator(device) -> bool:
    return getattr(device, "type", str(device)) in ("cuda", "mps")
