"""A smaller student made of its teacher's own layers, trained to embed as the teacher does.

    siamese distill TEACHER OUT --layers 3 [--pick spread|first] [--loss mse|cosine] [--hidden 1]
                                           [--contrastive 0.1] [--matryoshka 384,128]

1. **Student.** The teacher with fewer transformer layers: the same embeddings, tokenizer, pooling,
   normalisation and prefixes, and ``layers`` of the teacher's blocks copied as they are. ``spread`` keeps
   evenly spaced blocks, the first and the last among them (DistilBERT-style); ``first`` keeps the bottom N.
2. **Texts.** Unlabelled: the corpus passages (embedded as passages), the training queries and general-domain
   sentences (STS-B train; embedded as queries), each with the teacher's prefix for its kind. The teacher's
   vectors of them are computed once and cached on disk.
3. **Loss.** Per batch of texts, the student's unit vectors against the teacher's:

       mse:    (1/n) Σ_i ‖ŝ_i − t̂_i‖²        cosine: (1/n) Σ_i (1 − ŝ_i·t̂_i)

   (the same minimum; MSE's gradient is twice cosine's). ``--hidden μ`` (default 1) adds μ · ``hidden_loss``:
   every student block's output, token by token, against the teacher block it was copied from. A text then
   teaches a vector per token per block, not one vector, which is what a few thousand texts need: measured,
   one epoch with it beat three epochs without on SciFact and both guards. ``--contrastive λ`` adds
   λ · InfoNCE on the labelled pairs, one batch of them a step, so the student also learns the task.
   ``--matryoshka 384,256,...`` sums the distillation over nested prefixes of both vectors, each normalised.

The result is an ordinary model directory: ``export``, ``app build``, ``eval`` and ``run --base`` take it.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from common.atomic import atomic_dir, check_output
from common.bundled import STSB_TRAIN
from common.data import read_general_texts
from common.errors import ConfigError
from common.vectors import cached_vectors

from .config import matryoshka_dims
from .encoder import Encoder
from .infonce import info_nce
from .losses import anchor_mse
from .model_card import write_card
from .model_dir import DISTILL_FILE, check_model_dir, model_cache_key, model_kind
from .models import load_model
from .steps import OptimizerStep, autocast

PICKS = ("spread", "first")


@dataclass
class DistillConfig:
    teacher: str
    out: str
    layers: int
    pick: str = "spread"
    loss: str = "mse"  # or cosine
    contrastive: float = 0.0  # λ of InfoNCE on labelled pairs added to the distillation loss (0: none)
    hidden: float = 1.0  # μ of the per-token hidden-state term (0: the unit vectors alone)
    matryoshka: str = ""  # nested prefix sizes the distillation is also summed over, e.g. "384,256,128,64"
    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-4
    max_length: int = 128
    max_texts: int = 0  # 0: every text; else a seeded sample of this many
    seed: int = 42


def picked_layers(total: int, keep: int, pick: str) -> list[int]:
    """Which of the teacher's ``total`` blocks the student keeps."""
    if not 1 <= keep <= total:
        raise ConfigError(f"--layers {keep}: the teacher has {total} layers; keep between 1 and {total}")
    if pick == "first":
        return list(range(keep))
    if pick == "spread":
        return sorted({int(round(x)) for x in np.linspace(0, total - 1, keep)}) if keep > 1 else [total - 1]
    raise ConfigError(f"--pick must be one of {', '.join(PICKS)}, not {pick!r}")


def make_student(teacher: Encoder, layers: list[int]) -> Encoder:
    """A copy of ``teacher`` keeping only the transformer blocks ``layers`` (BERT-family encoders)."""
    student = copy.deepcopy(teacher)
    blocks = getattr(getattr(student.transformer, "encoder", None), "layer", None)
    if blocks is None:
        raise ConfigError(
            f"cannot take layers from a {type(student.transformer).__name__}: distillation by layer "
            "copy needs a BERT-family encoder (MiniLM, BERT, BGE, E5)"
        )
    student.transformer.encoder.layer = torch.nn.ModuleList([blocks[i] for i in layers])
    student.transformer.config.num_hidden_layers = len(layers)
    return student


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, kind: str, dims: list[int]) -> torch.Tensor:
    """The distillation term, summed over the whole vector and each Matryoshka prefix."""
    total = 0.0
    for d in dims or [student.shape[-1]]:
        if kind == "mse":
            total = total + anchor_mse(student[:, :d], teacher[:, :d])
        else:
            s, t = F.normalize(student[:, :d], dim=-1), F.normalize(teacher[:, :d], dim=-1)
            total = total + (1 - (s * t).sum(-1)).mean()
    return total


def hidden_loss(student_states, teacher_states, layers: list[int], mask: torch.Tensor) -> torch.Tensor:
    """Each student block's output against the output of the teacher block it was copied from, token by token
    over the attended tokens, as a relative squared error:

        (1/L) Σ_j  Σ_tokens ‖h_j − t_{layers[j]}‖² / Σ_tokens ‖t_{layers[j]}‖²
    """
    m = mask.unsqueeze(-1).to(student_states[0].dtype)
    total = 0.0
    for j, k in enumerate(layers):
        s, t = (
            student_states[j + 1].float(),
            teacher_states[k + 1].float(),
        )  # [0]: the embedding layer's output
        total = total + ((s - t).pow(2) * m).sum() / (t.pow(2) * m).sum()
    return total / len(layers)


def distill(
    cfg: DistillConfig, texts: list[tuple[str, str]], pairs=None, progress: bool = True, force: bool = False
) -> Path:
    """Write the student to ``cfg.out`` (a model directory) and return it. ``texts``: (text, "query" or
    "passage") pairs; ``pairs``: labelled pairs for ``cfg.contrastive``."""
    out = Path(cfg.out)
    cfg.teacher = str(check_model_dir(cfg.teacher))  # a run directory stands for the model inside it

    if model_kind(cfg.teacher) == "towers":
        raise ConfigError(
            f"{cfg.teacher}: a two-tower model (--tower); the student learns one model for queries "
            "and documents, so distill a shared-weights model"
        )
    check_output(out, "model", force, inputs=[Path(cfg.teacher)])
    if cfg.loss not in ("mse", "cosine"):
        raise ConfigError(f"--loss must be mse or cosine, not {cfg.loss!r}")
    if cfg.hidden < 0 or cfg.contrastive < 0:
        raise ConfigError(
            f"--hidden and --contrastive are weights ≥ 0, not {cfg.hidden} and {cfg.contrastive}"
        )
    if cfg.contrastive and not pairs:
        raise ConfigError("--contrastive needs labelled pairs (--data)")
    dims = matryoshka_dims(cfg.matryoshka)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    teacher = load_model(cfg.teacher, max_length=cfg.max_length).eval()
    if any(d > teacher.dim for d in dims):
        raise ConfigError(f"--matryoshka {cfg.matryoshka} goes above the teacher's {teacher.dim} dimensions")
    texts = taught_texts(texts, cfg.max_texts, cfg.seed)
    targets = torch.zeros(len(texts), teacher.dim, device=teacher.device)  # on the device once
    for kind in ("query", "passage"):
        rows = [i for i, (_, k) in enumerate(texts) if k == kind]
        of_kind = [texts[i][0] for i in rows]
        if rows:
            targets[rows] = torch.from_numpy(
                cached_vectors(
                    f"distill {kind} {model_cache_key(cfg.teacher, teacher.config)}",
                    of_kind,
                    lambda of_kind=of_kind, kind=kind: teacher.encode(of_kind, kind, progress=progress),
                )
            )
    layers = picked_layers(teacher.transformer.config.num_hidden_layers, cfg.layers, cfg.pick)
    student = make_student(teacher, layers).train()
    optimize = OptimizerStep(
        student.parameters(), cfg.lr, weight_decay=0.01, max_grad_norm=1.0
    )  # constant lr
    # Random batches, not batches of similar length: those cost half as much, but short texts then take most
    # steps, and the student lost 3.5 points of MedQuAD nDCG@10 at the same epoch (measured).
    order = [
        i
        for epoch in range(cfg.epochs)
        for i in random.Random(cfg.seed + epoch).sample(range(len(texts)), len(texts))
    ]
    steps = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    labelled = list(pairs or [])
    log, started = [], time.time()
    bar = tqdm(steps, desc="distill", disable=not progress)
    for step, idx in enumerate(bar):
        batch = student.tokenize([student.with_prefix([texts[i][0]], texts[i][1])[0] for i in idx])
        with autocast(student):
            vectors, states = student.forward_with_states(batch)
            loss = distill_loss(vectors.float(), targets[idx], cfg.loss, dims)
            if cfg.hidden:
                with torch.no_grad():
                    taught = teacher.forward_with_states(batch)[1]
                loss = loss + cfg.hidden * hidden_loss(states, taught, layers, batch["attention_mask"])
            if cfg.contrastive:
                some = random.Random(cfg.seed * 7919 + step).sample(
                    labelled, min(cfg.batch_size // 2, len(labelled))
                )
                q = student.embed_batch([p.query for p in some], "query").float()
                p = student.embed_batch([p.positive for p in some], "passage").float()
                loss = loss + cfg.contrastive * info_nce(q, p, 0.05)
        loss.backward()
        optimize()
        log.append(round(float(loss.detach()), 5))
        bar.set_postfix(loss=f"{log[-1]:.4f}")

    def write(tmp: Path):
        student.save(tmp)
        (tmp / DISTILL_FILE).write_text(
            json.dumps(
                {
                    **asdict(cfg),
                    "teacher_layers": layers,
                    "texts": len(texts),
                    "steps": len(steps),
                    "seconds": round(time.time() - started),
                    "loss": log[-20:],
                },
                indent=2,
            )
        )

        write_card(tmp)

    return atomic_dir(out, write, "model", replace=force, inputs=[Path(cfg.teacher)])


def taught_texts(texts: list[tuple[str, str]], max_texts: int, seed: int) -> list[tuple[str, str]]:
    """The texts a student is taught on: each distinct non-blank
    one once; ``max_texts`` > 0: a seeded sample."""
    texts = list(dict.fromkeys((t, kind) for t, kind in texts if t.strip()))
    if max_texts and len(texts) > max_texts:
        texts = random.Random(seed).sample(texts, max_texts)
    return texts


def distill_texts(corpus, pairs, general: str | None) -> list[tuple[str, str]]:
    """The unlabelled text a student learns from, each with how it is embedded: corpus passages, training
    queries and general sentences (as queries: a symmetric task)."""
    return (
        [(d.passage, "passage") for d in (corpus or [])]
        + [(p.query, "query") for p in (pairs or [])]
        + [(t, "query") for t in read_general_texts(general or STSB_TRAIN)]
    )
