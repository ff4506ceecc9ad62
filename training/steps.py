"""What both training loops use (``loop.py``: one shared model; ``towers.py``: two towers): the learning-rate
schedule, the training window, and the anchor's targets."""
from __future__ import annotations

from contextlib import contextmanager

import torch

from .config import TrainConfig
from .encoder import Encoder


def autocast(model):
    """bf16 autocast where ``model`` is on CUDA (matrix products in bf16, reductions in fp32): the training
    step's forward passes; elsewhere full precision."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=model.device.type == "cuda")


def embed_step(encoder: Encoder, texts: list[str], kind: str) -> torch.Tensor:
    """A training step's embeddings of ``texts``: under ``autocast``, returned in fp32 for the loss."""
    with autocast(encoder):
        return encoder.embed_batch(texts, kind).float()


@contextmanager
def training_window(encoder: Encoder, tokens: int):
    """Texts cut to ``tokens`` while training; the model keeps (and saves) the window it is served at."""
    served, encoder.config.max_length = encoder.config.max_length, tokens
    try:
        yield
    finally:
        encoder.config.max_length = served


def warmup_linear(total: int, warmup: int):
    """The learning rate's factor at each step: a linear rise over ``warmup`` steps, then a linear fall to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


def anchor_targets(cfg: TrainConfig, teacher: Encoder | None = None) -> tuple[list[str], torch.Tensor]:
    """The general-domain texts to anchor on and the frozen base model's vectors of them (computed once and
    cached on disk: the base does not change). ``teacher``: the base, where the caller has it loaded."""
    from common.bundled import STSB_TRAIN
    from common.data import read_general_texts
    from .distributed import cached_vectors
    from .model_dir import model_cache_key

    texts = read_general_texts(cfg.anchor_data or STSB_TRAIN)
    teacher = (teacher or Encoder.load(cfg.base, **cfg.encoding)).eval()
    vectors = cached_vectors(f"anchor {model_cache_key(cfg.base, teacher.config)}", texts,
                             lambda share: teacher.encode(share, "query", batch_size=128))
    return texts, torch.from_numpy(vectors)
