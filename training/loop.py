"""The training loop: the configured loss (InfoNCE by default) over planned batches, AdamW with warmup +
linear decay, checkpoints that a ``--resume`` continues bit for bit, and gradient caching so the batch (and so
the number of in-batch negatives) is not capped by memory.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import shutil
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from common.atomic import atomic_dir
from common.data import Doc
from common.errors import ConfigError, MissingInputError, OutputExistsError
from common.lock import locks

from . import distributed
from .batches import plan_epoch
from .chunk_positives import chunk_positives
from .config import TrainConfig
from .corpus_pairs import corpus_pairs
from .encoder import Encoder
from .late_interaction import LateInteraction
from .losses import Batch, Loss, make_loss
from .model_card import write_card
from .model_dir import (
    TRAIN_CONFIG_FILE,
    TRAIN_METRICS_FILE,
    EncoderConfig,
    check_model_dir,
    hub_revision,
    model_cache_key,
    write_positives,
)
from .models import load_model
from .negatives import known_positives, mine_dense_negatives, mine_hard_negatives
from .pairs import Pair, load_pairs
from .steps import OptimizerStep, anchor_targets, embed_step, training_window
from .temperature import FIXED, base_temperature
from .towers import FROZEN_DOCUMENT, train_towers


class _RngState:
    """The RNG state before a forward pass, so gradient caching can replay it with identical dropout."""

    def __init__(self):
        self.cpu = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        )  # where CUDA is in use

    def restore(self):
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _join(reps: list[torch.Tensor]) -> torch.Tensor:
    """Chunks' embeddings as one tensor; token vectors (B, L, D) are zero-padded to the longest L."""
    if reps[0].dim() == 3:
        width = max(r.shape[1] for r in reps)
        reps = [torch.nn.functional.pad(r, (0, 0, 0, width - r.shape[1])) for r in reps]
    return torch.cat(reps)


def train_step(
    encoder: Encoder, pairs: list[Pair], loss_fn: Loss, grad_cache_chunk: int = 0, step: int = 0
) -> float:
    """Forward + backward for one batch; gradients are left on the parameters. A loss that anchors to
    general text (``general_texts``) gets the student's embeddings of this step's texts in its ``Batch``."""
    general, general_ids = loss_fn.general_texts(step) if hasattr(loss_fn, "general_texts") else ([], None)
    if (
        distributed.active()
    ):  # under torchrun each rank embeds its share; every rank takes the global batch's loss
        embed, width = functools.partial(embed_step, encoder), encoder.dim
        q = distributed.embed_shared(embed, [p.query for p in pairs], "query", width)
        p = distributed.embed_passages(embed, pairs, width)
        loss = loss_fn(
            q, p, Batch(pairs, distributed.embed_shared(embed, general, "query", width), general_ids)
        )
        loss.backward()
        return loss.item()
    groups = [
        ([p.query for p in pairs], "query"),
        ([p.positive for p in pairs] + [n for p in pairs for n in p.negatives], "passage"),
        (general, "query"),
    ]
    chunk = grad_cache_chunk
    if not chunk or chunk >= max(len(texts) for texts, _ in groups):
        q, p, g = (embed_step(encoder, texts, kind) if texts else None for texts, kind in groups)
        loss = loss_fn(q, p, Batch(pairs, g, general_ids))
        loss.backward()
        return loss.item()
    # Gradient caching (Gao et al., 2021): embed all chunks without a graph, take the loss gradient with
    # respect to the embeddings, then re-run each chunk with a graph and push that gradient through it.
    pieces = [
        (n, texts[i : i + chunk], kind)
        for n, (texts, kind) in enumerate(groups)
        for i in range(0, len(texts), chunk)
    ]
    states, reps = [], []
    with torch.no_grad():
        for _, texts, kind in pieces:
            states.append(_RngState())
            reps.append(embed_step(encoder, texts, kind))
    q, p, g = (
        _join([r for (n, _, _), r in zip(pieces, reps) if n == group]).requires_grad_()
        if any(n == group for n, _, _ in pieces)
        else None
        for group in range(3)
    )
    loss = loss_fn(q, p, Batch(pairs, g, general_ids))
    loss.backward()
    grads = [x for t in (q, p, g) if t is not None for x in t.grad.split(chunk)]
    end_state = _RngState()
    for (_, texts, kind), state, rep, grad in zip(pieces, states, reps, grads):
        state.restore()
        embed_step(encoder, texts, kind).backward(grad[:, : rep.shape[1]] if grad.dim() == 3 else grad)
    end_state.restore()
    return loss.item()


def _checkpoints(out: Path) -> list[Path]:
    return sorted((out / "checkpoints").glob("step-*"))


def _save_checkpoint(out, step, encoder, optimize: OptimizerStep, log, keep):
    """Rank 0 writes it, with every rank's random state (each rank's dropout stream resumes where it was)."""
    rng = distributed.all_states(_RngState().__dict__)

    def write(tmp: Path):
        encoder.save(tmp / "model")
        torch.save(
            {"step": step, **optimize.state_dict(), "rng": rng[0], "rng_ranks": rng, "log": log},
            tmp / "state.pt",
        )

    if distributed.is_main():
        atomic_dir(out / "checkpoints" / f"step-{step:07d}", write, "checkpoint")
        for old in _checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    distributed.barrier()


def _base_embed(cfg: TrainConfig):
    """The base model at the training window as an embed function, its vectors cached on disk (the same
    vectors τ is measured with)."""
    encoding = cfg.encoding | {"max_length": min(cfg.train_length, cfg.max_length or cfg.train_length)}
    key = f"margin {model_cache_key(cfg.base, EncoderConfig.load(check_model_dir(cfg.base), **encoding))}"

    @functools.cache
    def base() -> Encoder:  # loaded only where the cache misses
        return Encoder.load(cfg.base, **encoding).eval()

    def embed(texts: list[str], kind: str):
        return distributed.cached_vectors(f"{kind} {key}", texts, lambda share: base().encode(share, kind))

    return embed


def from_the_base(cfg: TrainConfig, pairs: list[Pair]) -> TrainConfig:
    """What the configuration leaves to the base model, settled: the served window (the base's own; late
    interaction: the training one) and τ from the base's similarity scale on ``pairs``. `--recipe auto`
    settles them once on all pairs, so every candidate and the model shipped train with the same τ."""
    if cfg.max_length is None:
        cfg.max_length = (
            cfg.train_length
            if cfg.late_interaction
            else EncoderConfig.load(check_model_dir(cfg.base), pooling=cfg.pooling).max_length
        )
    if cfg.temperature is None:
        _follow_the_base(cfg, pairs)
    return cfg


def _follow_the_base(cfg: TrainConfig, pairs: list[Pair]) -> None:
    """τ from the base model's similarity scale (``training/temperature.py``), its vectors cached on disk."""
    if cfg.late_interaction:
        cfg.temperature = FIXED
        return
    embed = _base_embed(cfg)
    cfg.temperature, cfg.base_margin = base_temperature(embed, pairs, cfg.seed)
    how = (
        f"the base's margin {cfg.base_margin:.3f} between a positive and an in-batch negative"
        if cfg.base_margin is not None
        else "too few pairs to measure the base's margin"
    )
    if distributed.is_main():
        print(f"temperature τ {cfg.temperature} ({how}; --temperature sets it)", file=sys.stderr)


def prepare_pairs(pairs: list[Pair], corpus: list[Doc] | None, cfg: TrainConfig) -> list[Pair]:
    """Keep the negatives the data gives (less any that are really positives); mine BM25 negatives for the
    labelled pairs that have none when ``cfg.hard_negatives`` asks for them (``cfg.miner``: BM25 or the base
    model's own ranking); add pairs made from the corpus
    when ``cfg.corpus_pairs`` names kinds of them."""
    known = known_positives(pairs)
    pairs = [replace(p, negatives=[n for n in p.negatives if n not in known[p.query]]) for p in pairs]
    if cfg.hard_negatives:
        texts = [d.passage if isinstance(d, Doc) else d for d in corpus] if corpus else None
        if cfg.miner == "dense":
            pairs = mine_dense_negatives(
                pairs, texts, _base_embed(cfg), cfg.hard_negatives, cfg.window, cfg.mine_margin, cfg.seed
            )
        else:
            pairs = mine_hard_negatives(pairs, texts, cfg.hard_negatives, cfg.mine_depth, cfg.seed)
    labelled = len(pairs)  # the ratios below count labelled pairs before any is split into chunks
    if cfg.chunk_positives:  # after mining, so a long positive's whole passage is never mined as its negative
        pairs = chunk_positives(pairs, corpus, cfg)
    if cfg.corpus_kinds:
        if not corpus or not isinstance(corpus[0], Doc):
            raise ConfigError(
                "--corpus-pairs needs a corpus: train on a BEIR folder, or give `siamese run` --corpus"
            )
        pairs += corpus_pairs(corpus, cfg.corpus_kinds, int(labelled * cfg.corpus_pairs_ratio), cfg.seed)
    if cfg.general_pairs:
        pairs += general_pairs(cfg.general_pairs, int(labelled * cfg.general_pairs_ratio), pairs, cfg.seed)
    return pairs


def general_pairs(path, n: int, taken: list[Pair], seed: int) -> list[Pair]:
    """``n`` labelled pairs from another domain, none repeating a text already in ``taken`` (a repeat would be
    a false in-batch negative), marked as their own source so their batches keep to themselves."""
    seen = {t for p in taken for t in (p.query, p.positive)}
    fresh = [
        replace(p, source="general")
        for p in load_pairs(path)[0]
        if p.query not in seen and p.positive not in seen
    ]
    fresh = list({(p.query, p.positive): p for p in fresh}.values())
    return random.Random(seed).sample(fresh, min(n, len(fresh)))


# Settings a resumed run may change (said when it does): they
# decide when to stop or save, not what a step does.
FROM_THE_BASE = ("max_length", "temperature")  # None: resolved from the base when the run started
RESUMABLE = ("max_steps", "checkpoint_every", "keep_checkpoints", "eval_every")
RECORDED = (
    "out",
    "base_revision",
    "pairs_fingerprint",
    "base_margin",
)  # written by the run itself, not asked for


def pairs_fingerprint(pairs: list[Pair]) -> str:
    digest = hashlib.sha256()
    for p in pairs:
        digest.update(json.dumps([p.query, p.positive, p.negatives, p.query_id, p.positive_id]).encode())
    return digest.hexdigest()[:16]


def _resumed_config(saved: TrainConfig, asked: TrainConfig, pairs: list[Pair], finished: bool) -> TrainConfig:
    """The saved run's configuration, with the changes a resume may make; anything else that differs, or other
    pairs, is refused with what differs (resuming a run on other settings is a new run). A finished run takes
    no change: there is nothing left for it to apply to."""
    changed = {
        f.name: (getattr(saved, f.name), getattr(asked, f.name))
        for f in fields(TrainConfig)
        if f.name not in RECORDED
        and getattr(asked, f.name) != getattr(saved, f.name)
        and not (f.name in FROM_THE_BASE and getattr(asked, f.name) is None)
    }
    refused = [
        f"{k.replace('_', ' ')} {a!r} → {b!r}"
        for k, (a, b) in changed.items()
        if k not in RESUMABLE or finished
    ]
    if saved.pairs_fingerprint and pairs_fingerprint(pairs) != saved.pairs_fingerprint:
        refused.insert(0, f"the training pairs ({len(pairs)} given are not the ones the run started on)")
    if refused:
        state = (
            "the run has finished, so nothing can change: "
            if finished
            else "--resume continues the run as it was started, but "
        )
        raise ConfigError(
            f"{saved.out}: {state}{'; '.join(refused)}. Resume without changing them, or start a "
            "new run in another --out."
        )
    for key, (before, after) in changed.items():
        print(f"resume: {key.replace('_', ' ')} {before} → {after} (applied)", file=sys.stderr)
    return replace(saved, **{k: b for k, (_, b) in changed.items()})


@locks("siamese train", lambda a: a["cfg"].out)
def train(
    cfg: TrainConfig,
    pairs: list[Pair],
    corpus: list[Doc] | None = None,
    *,
    resume: bool = False,
    eval_fn=None,
    progress: bool = True,
    watch=None,
) -> Path:
    """Fine-tune ``cfg.base`` on ``pairs``; returns the model directory ``cfg.out/model``. One writer at a
    time per ``cfg.out`` (``common.lock``). ``watch``: the two-tower loop's hook after every step
    (``training/towers.py``, ``train_towers``)."""
    cfg.check()
    distributed.start()  # under torchrun: join its process group
    distributed.refuse(cfg)
    out = Path(cfg.out)
    config_file = out / TRAIN_CONFIG_FILE
    if not pairs:
        raise ConfigError("no training pairs")
    if resume:
        if not config_file.exists():
            raise MissingInputError(
                f"{out}: nothing to resume (no train_config.json). Start without --resume."
            )
        cfg = _resumed_config(TrainConfig.load(config_file), cfg, pairs, finished=(out / "model").exists())
        if (out / "model").exists():
            print(f"resume: {out} is a finished run; its model is {out / 'model'}", file=sys.stderr)
            return out / "model"
    elif (out / "model").exists() or _checkpoints(out):
        raise OutputExistsError(
            f"{out} already holds a training run. Use --resume to continue it, or choose another --out."
        )
    fingerprint = pairs_fingerprint(pairs)
    from_the_base(cfg, pairs)  # before the seeds: loading the base must not move the run's random streams
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    pairs = prepare_pairs(pairs, corpus, cfg)
    plan = [b for epoch in range(cfg.epochs) for b in plan_epoch(pairs, cfg.batch_size, cfg.seed, epoch)]
    total = min(cfg.max_steps, len(plan)) if cfg.max_steps else len(plan)
    if cfg.length < 1:  # the share of the steps `--recipe auto` chose on held-out queries
        total = max(1, round(cfg.length * total))
    if total == 0:
        queries, positives = len({p.query for p in pairs}), len({p.positive for p in pairs})
        raise ConfigError(
            f"{len(pairs)} training pairs ({queries} distinct queries, {positives} distinct positives) "
            "form no batch of two or more pairs without a false in-batch negative, so training would "
            "take 0 steps and change nothing. Give at least 2 pairs with different queries and "
            "different positives (a batch needs company: each query's negatives are the others)."
        )

    if cfg.tower != "shared":
        cfg.base_revision, cfg.pairs_fingerprint = hub_revision(check_model_dir(cfg.base)), fingerprint
        return _train_towers(cfg, out, pairs, corpus, plan[:total], progress, watch)
    checkpoints = _checkpoints(out) if resume else []
    source = checkpoints[-1] / "model" if checkpoints else cfg.base
    encoder = load_model(source, **cfg.encoding)
    if cfg.late_interaction and not isinstance(encoder, LateInteraction):
        encoder = LateInteraction.from_encoder(encoder, cfg.colbert_dim, cfg.query_tokens, cfg.max_length)
    if any(d > encoder.dim for d in cfg.matryoshka_dims):
        raise ConfigError(f"matryoshka sizes {cfg.matryoshka} go above the model's {encoder.dim} dimensions")
    encoder.train()
    optimize = OptimizerStep(
        encoder.parameters(), cfg.lr, cfg.weight_decay, cfg.max_grad_norm, total, cfg.warmup_ratio
    )
    log = {"step": [], "loss": [], "lr": [], "eval": []}
    start = 0
    if checkpoints:
        state = torch.load(checkpoints[-1] / "state.pt", map_location="cpu", weights_only=False)
        optimize.load_state_dict(state)
        ranks = state.get("rng_ranks") or [state["rng"]]
        if len(ranks) != distributed.size():
            raise ConfigError(
                f"{out}: the run was checkpointed by {len(ranks)} process(es); resume it with as many "
                f"(this is {distributed.size()})"
            )
        rng = _RngState.__new__(_RngState)
        rng.__dict__.update(ranks[distributed.rank()])
        rng.restore()
        start, log = state["step"], state["log"]
    else:
        cfg.base_revision = hub_revision(check_model_dir(cfg.base))
        cfg.pairs_fingerprint = fingerprint
        if distributed.is_main():
            out.mkdir(parents=True, exist_ok=True)
            cfg.save(config_file)

    loss_fn = make_loss(cfg, *anchor_targets(cfg)) if cfg.anchor != "none" else make_loss(cfg)
    started, n_pairs, n_tokens = time.time(), 0, 0
    window = min(cfg.train_length, cfg.max_length)
    bar = tqdm(
        range(start, total),
        initial=start,
        total=total,
        desc="train",
        unit="step",
        disable=not (progress and distributed.is_main()),
    )
    for step in bar:
        batch = [pairs[i] for i in plan[step]]
        with training_window(encoder, window):
            loss = train_step(encoder, batch, loss_fn, cfg.grad_cache_chunk, step)
        optimize()
        n_pairs += len(batch)
        texts = [t for p in batch for t in (p.query, p.positive, *p.negatives)]
        n_tokens += sum(
            len(ids) for ids in encoder.tokenizer(texts, truncation=True, max_length=window)["input_ids"]
        )
        log["step"].append(step + 1)
        log["loss"].append(loss)
        log["lr"].append(optimize.lr)
        elapsed = time.time() - started
        bar.set_postfix(
            loss=f"{loss:.4f}",
            lr=f"{log['lr'][-1]:.2e}",
            pairs_s=f"{n_pairs / elapsed:.1f}",
            tok_s=f"{n_tokens / elapsed:.0f}",
        )
        if eval_fn and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            rng = _RngState()  # evaluation must not shift the dropout stream a resumed run replays
            log["eval"].append({"step": step + 1, **eval_fn(encoder)})
            rng.restore()
            if distributed.is_main():
                bar.write(
                    f"step {step + 1}: "
                    + ", ".join(f"{k} {v:.4f}" for k, v in log["eval"][-1].items() if k != "step")
                )
            encoder.train()
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
            _save_checkpoint(out, step + 1, encoder, optimize, log, cfg.keep_checkpoints)
    bar.close()
    elapsed = time.time() - started
    metrics = {
        "steps": total,
        "pairs": len(pairs),
        "final_loss": log["loss"][-1] if log["loss"] else None,
        "wall_s": round(elapsed, 1),
        "pairs_per_s": round(n_pairs / max(elapsed, 1e-9), 2),
        "tokens_per_s": round(n_tokens / max(elapsed, 1e-9), 1),
        "log": log,
    }

    return _write_model(out, cfg, pairs, metrics, encoder.save)


def _write_model(out: Path, cfg: TrainConfig, pairs: list[Pair], metrics: dict, save) -> Path:
    """The finished model directory, written atomically by rank 0 (the other ranks wait for it): the weights
    (``save(folder)``), the configuration and metrics of the run, its labelled positives (seen / unseen later)
    and the model card."""
    if not distributed.is_main():
        distributed.barrier()
        return out / "model"
    metrics["processes"] = distributed.size()

    def write(tmp: Path):
        save(tmp)
        cfg.save(tmp / TRAIN_CONFIG_FILE)
        (tmp / TRAIN_METRICS_FILE).write_text(json.dumps(metrics, indent=2))
        write_positives(tmp, [p for p in pairs if p.source == "labelled"])
        write_card(tmp)

    model_dir = atomic_dir(out / "model", write, "model")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    distributed.barrier()
    return model_dir


def _train_towers(
    cfg: TrainConfig, out: Path, pairs: list[Pair], corpus, plan, progress: bool, watch=None
) -> Path:
    """``--tower query | adapter | separate`` (``training/towers.py``): cheap enough to need no checkpoints; a
    resumed run that did not finish starts again."""
    # a base that cannot load leaves no run
    towers, metrics = train_towers(cfg, pairs, corpus, plan, progress, watch)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        cfg.save(out / TRAIN_CONFIG_FILE)
    base_dir = check_model_dir(cfg.base) if cfg.tower in FROZEN_DOCUMENT else None
    return _write_model(out, cfg, pairs, metrics, lambda tmp: towers.save(tmp, base_dir))
