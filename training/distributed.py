"""Training across processes with torch.distributed: one global batch, each process embedding its share of it.

Launched by ``torchrun`` (``siamese train --nproc N`` runs ``torchrun --nproc_per_node N`` for one machine;
several machines use torchrun's own rendezvous, ``--nnodes``/``--rdzv-endpoint``, docs/hardware.md). Each
process (rank) reads the same pairs and plans the same batches; at every step it embeds a contiguous share of
the batch's queries, positives, negatives and anchor texts (``embed_shared``), and every rank gathers the
others' rows, so every rank computes the loss of the *global*
batch, in-batch negatives across all ranks included:

    L = loss(q_1..q_B, p_1..p_{B+N})         the same value on every rank; rank r's rows keep their graph
    ∂L/∂θ = Σ_r ∂L/∂θ |through rank r's rows  (``sum_gradients``: one all-reduce of the flattened gradients)

so each rank ends the step with the gradient a single process would have taken on the whole batch, clips and
steps identically, and the weights stay equal on every rank without broadcasting them. DDP's wrapper is not
used: it expects one forward pass per backward, and a step embeds queries, passages and anchor texts in
separate passes; the all-reduce is the one DDP performs. Dropout draws from each rank's own stream, so
training with dropout is equal to a single process in distribution,
not bit for bit (the equivalence test turns dropout off).

Frozen vectors (the query tower's bank, the anchor's targets, the base's margin) are embedded a share per
rank, gathered, and cached by rank 0 (``cached_vectors``); rank 0 alone writes checkpoints and the model
directory. Process groups: NCCL where the device choice (``common/device.py``) is
CUDA, gloo otherwise. One process (no torchrun) runs none of this.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from common import device as devices
from common.errors import ConfigError
from common.vectors import cached
from common.vectors import cached_vectors as cache


def start() -> bool:
    """Join torchrun's process group (its environment names rank, world size and rendezvous); True under
    torchrun, even as its only process (so one GPU runs the collectives a job of several would)."""
    if "WORLD_SIZE" not in os.environ:
        return False
    if not dist.is_initialized():
        device = devices.current()  # under torchrun, CUDA means this rank's local GPU
        backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        if rank() == 0:
            print(f"distributed: {size()} processes ({backend})", file=sys.stderr)
    return True


def active() -> bool:
    """Whether this process is part of a torchrun job; without one, every helper below does what one process
    does alone, the same code as before training knew of processes."""
    return dist.is_initialized()


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def share(n: int) -> slice:
    """This rank's contiguous share of ``n`` rows, in rank order (shares differ by one row at most)."""
    r, w = rank(), size()
    return slice(r * n // w, (r + 1) * n // w)


def _wire() -> torch.device:
    """Where collectives take their tensors: NCCL wants them on this rank's GPU, gloo on the CPU."""
    return (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )


def gather(local: torch.Tensor | None, width: int = 0) -> torch.Tensor:
    """Every rank's rows (B_r, D), concatenated in rank order; this rank's own rows stay the tensor it gave
    (with its graph, so the loss's gradient reaches this rank's encoder). ``local`` None: this rank has no
    rows (``width``: D, where known). No torchrun: ``local`` itself."""
    if not active():
        return local
    wire = _wire()
    shape = torch.tensor(
        [0 if local is None else local.shape[0], width if local is None else local.shape[1]], device=wire
    )
    shapes = [torch.zeros_like(shape) for _ in range(size())]
    dist.all_gather(shapes, shape)
    rows, dim = [int(s[0]) for s in shapes], max(int(s[1]) for s in shapes)
    padded = torch.zeros(max(rows), dim, device=wire)  # float32 on every rank, whatever autocast gave
    if local is not None and local.shape[0]:
        padded[: local.shape[0]] = local.detach().float().to(wire)
    parts = [torch.zeros_like(padded) for _ in range(size())]
    dist.all_gather(parts, padded)
    home = local.device if local is not None else wire
    out = [part[:n].to(home) for part, n in zip(parts, rows)]
    if local is not None:
        out[rank()] = local
    return torch.cat(out)


def embed_shared(embed, texts: list[str], kind: str, width: int):
    """``embed(texts, kind)`` of the whole list, each rank
    embedding its share (``gather``); None for no texts."""
    if not texts:
        return None
    if not active():
        return embed(texts, kind)
    mine = texts[share(len(texts))]
    return gather(embed(mine, kind) if mine else None, width)


def embed_passages(embed, pairs, width: int) -> torch.Tensor:
    """The batch's passages as a loss takes them, (B + N, D): the B positives in pair order, then the N
    negatives. One process embeds them as one batch; several gather positives and negatives apart, which keeps
    that order."""
    positives, negatives = [p.positive for p in pairs], [n for p in pairs for n in p.negatives]
    if not active():
        return embed(positives + negatives, "passage")
    parts = [embed_shared(embed, texts, "passage", width) for texts in (positives, negatives)]
    return torch.cat([x for x in parts if x is not None])


def sum_gradients(parameters) -> None:
    """Sum every parameter's gradient over the ranks (one all-reduce of them all, flattened); see the module's
    docstring for why the sum is the single-process gradient."""
    if not active():
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    wire = _wire()
    flat = flat.to(wire)
    dist.all_reduce(flat)
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


def encode_shared(encode, texts: list[str]) -> np.ndarray:
    """``encode(texts)`` (→ float32 (N, D) numpy), each rank encoding its share, every rank given all rows."""
    if not active():
        return np.asarray(encode(texts), dtype=np.float32)
    mine = texts[share(len(texts))]
    local = torch.from_numpy(np.asarray(encode(mine), dtype=np.float32)) if mine else None
    return gather(local).cpu().numpy()


def cached_vectors(key: str, texts: list[str], encode) -> np.ndarray:
    """``common.vectors.cached_vectors`` for every rank: read where every rank finds the cache; else embedded
    a share per rank (``encode(share)``), gathered, and written by rank 0 alone."""
    if not active():
        return cache(key, texts, lambda: encode(texts))
    hit = torch.tensor([int(cached(key, texts) is not None)], device=_wire())
    dist.all_reduce(
        hit, op=dist.ReduceOp.MIN
    )  # all read, or all embed: a rank alone in a collective would hang
    if hit.item():
        return cached(key, texts)
    vectors = encode_shared(encode, texts)
    if is_main():
        cache(key, texts, lambda: vectors)
    barrier()
    return vectors


def all_states(state) -> list:
    """``state`` (any picklable object) of every rank, in rank order."""
    if not active():
        return [state]
    states = [None] * size()
    dist.all_gather_object(states, state)
    return states


def refuse(cfg) -> None:
    """What a multi-process run cannot do, refused in one line before any work."""
    if not active():
        return
    if cfg.late_interaction:
        raise ConfigError(
            "--late-interaction trains in one process (its token vectors are not gathered across "
            "ranks): run it without torchrun / --nproc"
        )
    if cfg.grad_cache_chunk:
        raise ConfigError(
            "--grad-cache-chunk trains in one process: with N processes the batch is already N "
            "devices wide; drop --grad-cache-chunk or --nproc"
        )
