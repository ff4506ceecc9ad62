"""What every trainer uses (``loop.py``: one shared model; ``towers.py``: two towers; ``distill.py``: a
smaller student): the one optimizer step, the learning-rate schedule, autocast, the training window and the
anchor's targets. A trainer computes its loss, calls
``backward``, then ``OptimizerStep``: nothing else differs."""

from __future__ import annotations

from contextlib import contextmanager

import torch

from common.bundled import STSB_TRAIN
from common.data import read_general_texts

from . import distributed
from .config import TrainConfig
from .distributed import cached_vectors
from .encoder import Encoder
from .model_dir import model_cache_key


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
    """The learning rate's factor at each step: a linear rise
    over ``warmup`` steps, then a linear fall to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


class OptimizerStep:
    """The optimizer step every trainer takes after its ``backward``: gradients summed over the processes of a
    torchrun job (``distributed.sum_gradients``; alone, nothing), clipped to ``max_grad_norm``, AdamW, the
    learning rate's schedule (a linear rise over ``warmup_ratio`` of ``total`` steps, then a linear fall to 0;
    without ``total``, constant), gradients cleared."""

    def __init__(
        self,
        params,
        lr: float,
        weight_decay: float,
        max_grad_norm: float,
        total: int | None = None,
        warmup_ratio: float = 0.0,
    ):
        self.params = list(params)
        self.max_grad_norm = max_grad_norm
        self.optimizer = torch.optim.AdamW(self.params, lr=lr, weight_decay=weight_decay)
        self.scheduler = (
            torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_linear(total, int(warmup_ratio * total)))
            if total
            else None
        )

    def __call__(self) -> None:
        distributed.sum_gradients(self.params)
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        """The learning rate the next step takes."""
        return self.scheduler.get_last_lr()[0] if self.scheduler else self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:  # a checkpoint's (the keys older checkpoints have)
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])


def anchor_targets(cfg: TrainConfig, teacher: Encoder | None = None) -> tuple[list[str], torch.Tensor]:
    """The general-domain texts to anchor on and the frozen base model's vectors of them (computed once and
    cached on disk: the base does not change). ``teacher``: the base, where the caller has it loaded."""
    texts = read_general_texts(cfg.anchor_data or STSB_TRAIN)
    teacher = (teacher or Encoder.load(cfg.base, **cfg.encoding)).eval()
    vectors = cached_vectors(
        f"anchor {model_cache_key(cfg.base, teacher.config)}",
        texts,
        lambda share: teacher.encode(share, "query", batch_size=128),
    )
    return texts, torch.from_numpy(vectors)
