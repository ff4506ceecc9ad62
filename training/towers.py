"""Two towers: a query encoder and a document encoder that need not share weights (``--tower``).

- ``query``: the document tower is the base model, frozen; only the query tower trains. The corpus is embedded
  once (the base model's vectors, the same cached ones the evaluation's base row uses; the exported graph is
  held to them by the parity check), so every step scores each query against *every* document:

      L = −(1/B) Σ_i log softmax_j(q_i · d_j / τ)[pos(i)]
      j over the whole corpus (other positives of q_i masked)

  all hard negatives, no mining. Above ``FULL_SOFTMAX_MAX`` documents the softmax runs over every training
  positive and negative plus a random sample of the rest, up to that many. Deployed, its documents keep the
  vectors they were fed with: a new query tower needs no re-feed.
- ``adapter``: as ``query``, but the query tower is the frozen base plus one trainable D×D matrix after
  pooling (initialised to the identity, so it starts as the base), baked into the exported query graph.
- ``separate``: both towers trained from the base, not shared, in-batch InfoNCE as the shared recipe.

The anchor against forgetting (``training/losses/``) holds each trained tower to the base on general text.
A two-tower model directory is the document tower (for a frozen one, the base model's files as they are) with
the query tower in ``query/`` and ``towers.json`` saying which is which and which is frozen.

Example::

    cfg = recipe_config(base, "runs/q", tower="query")
    train(cfg, pairs, corpus)                   # training/loop.py hands two-tower settings to train_towers
    TwoTowers.load("runs/q/model").encode(["a query"], "query")
"""

from __future__ import annotations

import copy
import json
import random
import shutil
import sys
import time
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.data import Doc

from . import distributed
from .config import FROZEN_DOCUMENT
from .distributed import cached_vectors, encode_shared
from .encoder import Encoder
from .losses import LOSSES, Anchored, Batch
from .model_dir import BASE_FILES, BASE_FOLDERS, TOWERS_FILE, EncoderConfig, check_model_dir, model_cache_key
from .steps import OptimizerStep, anchor_targets, embed_step, training_window

FULL_SOFTMAX_MAX = 1_000_000  # documents (1.5 GB of float32 vectors at 384 dimensions)
QUERY_DIR = "query"
# What a frozen document tower keeps of the base model's folder, byte for byte (so its cached corpus vectors,
# named by these bytes, are the base model's).


class TwoTowers(nn.Module):
    """A query tower and a document tower behind the ``Encoder`` surface evaluation uses: ``encode(texts,
    kind)`` picks the tower by kind; ``config``, ``dim`` and ``tokenizer`` are the document tower's (what
    documents are cut and cached by)."""

    def __init__(self, query: Encoder, document: Encoder, record: dict):
        super().__init__()
        self.query, self.document, self.record = query, document, record

    @property
    def config(self) -> EncoderConfig:
        return self.document.config

    @property
    def tokenizer(self):
        return self.document.tokenizer

    @property
    def dim(self) -> int:
        return self.document.dim

    def tower(self, kind: str) -> Encoder:
        return self.query if kind == "query" else self.document

    def encode(self, texts, kind: str = "passage", **kw):
        return self.tower(kind).encode(texts, kind, **kw)

    @classmethod
    def load(cls, path, device=None, **overrides) -> TwoTowers:
        path = check_model_dir(path)
        record = json.loads((path / TOWERS_FILE).read_text())
        return cls(
            Encoder.load(path / record["query"], device, **overrides),
            Encoder.load(path, device, **overrides),
            record,
        )

    def save(self, path, base_dir: Path | None = None) -> None:
        """``base_dir``: the frozen document tower's source, copied as it is."""
        path = Path(path)
        if base_dir is not None:
            copy_base(base_dir, path)
            self.document.config.save(path)
        else:
            self.document.save(path)
        self.query.save(path / QUERY_DIR)
        (path / TOWERS_FILE).write_text(json.dumps(self.record, indent=2) + "\n")


def copy_base(base_dir: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for source in (f for pattern in BASE_FILES for f in base_dir.glob(pattern)):
        shutil.copyfile(source, target / source.name)
    for folder in BASE_FOLDERS:
        if (base_dir / folder).is_dir():
            shutil.copytree(base_dir / folder, target / folder)


def _bank(base: Encoder, base_dir, pairs, corpus, seed: int) -> tuple[list[str], np.ndarray]:
    """Every document the query tower is scored against, with the frozen base's vectors: the corpus in its
    order (cached under the key evaluation gives the base model's corpus vectors), then positives and
    negatives the corpus lacks."""
    texts = [d.passage if isinstance(d, Doc) else d for d in (corpus or [])]
    ordered = list(dict.fromkeys(t for p in pairs for t in (p.positive, *p.negatives)))
    training, known = set(ordered), set(texts)
    extra = [t for t in ordered if t not in known]
    if len(texts) + len(extra) > FULL_SOFTMAX_MAX:  # every training text stays, the rest is sampled
        needed = [i for i, t in enumerate(texts) if t in training]
        rest = [i for i, t in enumerate(texts) if t not in training]
        room = max(0, FULL_SOFTMAX_MAX - len(extra) - len(needed))
        keep = needed + random.Random(seed).sample(rest, min(room, len(rest)))
        texts = [texts[i] for i in sorted(keep)]
        print(
            f"towers: the corpus is over {FULL_SOFTMAX_MAX} documents; each step scores against the training "
            f"texts and a sample of {len(texts)}",
            file=sys.stderr,
        )
    key = model_cache_key(base_dir, base.config)
    vectors = (
        [cached_vectors(key, texts, lambda share: base.encode(share, "passage", progress=True))]
        if texts
        else []
    )
    if extra:
        vectors.append(encode_shared(lambda share: base.encode(share, "passage"), extra))
    return texts + extra, np.concatenate(vectors)


def build_towers(cfg, base: Encoder) -> TwoTowers:
    query = copy.deepcopy(base)
    if cfg.tower == "adapter":
        for p in query.transformer.parameters():
            p.requires_grad_(False)
        query.head = nn.Linear(base.dim, base.dim, bias=False, device=base.device)
        with torch.no_grad():
            query.head.weight.copy_(torch.eye(base.dim))
    frozen = cfg.tower in FROZEN_DOCUMENT
    document = base if frozen else copy.deepcopy(base)
    for p in document.parameters():
        p.requires_grad_(not frozen)
    return TwoTowers(
        query,
        document,
        {
            "query": QUERY_DIR,
            "document": ".",
            "variant": cfg.tower,
            "frozen": "document" if frozen else None,
            "base": cfg.base,
        },
    )


@contextmanager
def watching(towers: TwoTowers):
    """The towers as evaluation sees them (no dropout, no gradients), then back as training left them, with
    the random streams restored: a watched run trains exactly as an unwatched one."""
    state = torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    modes = [(m, m.training) for m in towers.modules()]
    towers.eval()
    try:
        with torch.no_grad():
            yield towers
    finally:
        for module, mode in modes:
            module.train(mode)
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state_all(state[1])


def train_towers(
    cfg, pairs, corpus, plan: list[list[int]], progress: bool = True, watch=None
) -> tuple[TwoTowers, dict]:
    """Train the towers ``cfg.tower`` names on ``plan`` (batches of ``pairs``' indices); returns the towers
    and the metrics the model directory records. The caller saves them (``TwoTowers.save``).
    ``watch(step, steps, towers)``, when given, is called after every step with the towers in evaluation
    mode (``watching``): how `--recipe auto` follows held-out queries along training."""
    from tqdm.auto import tqdm

    base = Encoder.load(cfg.base, **cfg.encoding).eval()
    frozen = cfg.tower in FROZEN_DOCUMENT
    towers = build_towers(cfg, base)
    bank = _bank(base, check_model_dir(cfg.base), pairs, corpus, cfg.seed) if frozen else None
    inner = LOSSES[cfg.loss].build(cfg, bank=bank, pairs=pairs, device=base.device)
    general, teacher = anchor_targets(cfg, base) if cfg.anchor != "none" else ([], None)
    loss_fn = (
        Anchored(inner, cfg.anchor, general, teacher, cfg.anchor_weight, cfg.anchor_batch, cfg.seed)
        if cfg.anchor != "none"
        else inner
    )
    trained = [t for t in (towers.query, towers.document) if any(p.requires_grad for p in t.parameters())]
    params = [p for t in trained for p in t.parameters() if p.requires_grad]
    optimize = OptimizerStep(params, cfg.lr, cfg.weight_decay, cfg.max_grad_norm, len(plan), cfg.warmup_ratio)
    window = min(cfg.train_length, cfg.max_length)
    log = {"step": [], "loss": [], "lr": [], "eval": []}
    started, n_tokens, watch_s = time.time(), 0, 0.0
    for t in trained:
        t.train()
    if cfg.tower == "adapter":
        towers.query.transformer.eval()  # frozen: no dropout, the base's vectors through the trained map
    query, document = (partial(embed_step, tower) for tower in (towers.query, towers.document))
    for step in tqdm(
        range(len(plan)),
        desc=f"train ({cfg.tower} tower)",
        unit="step",
        disable=not (progress and distributed.is_main()),
    ):
        batch = [pairs[i] for i in plan[step]]
        texts, ids = loss_fn.general_texts(step) if cfg.anchor != "none" else ([], None)
        with training_window(towers.query, window), training_window(towers.document, window):
            q = distributed.embed_shared(query, [p.query for p in batch], "query", towers.dim)
            p = None if frozen else distributed.embed_passages(document, batch, towers.dim)
            g = distributed.embed_shared(query, texts, "query", towers.dim)
            loss = loss_fn(q, p, Batch(batch, g, ids))
            if texts and not frozen:  # the document tower is anchored too
                loss = loss + cfg.anchor_weight * loss_fn.anchor(
                    distributed.embed_shared(document, texts, "query", towers.dim), teacher[ids].to(q.device)
                )
        loss.backward()
        optimize()
        log["step"].append(step + 1)
        log["loss"].append(loss.item())
        log["lr"].append(optimize.lr)
        embedded = (
            [x.query for x in batch]
            + texts
            + ([] if frozen else texts + [t for x in batch for t in (x.positive, *x.negatives)])
        )
        n_tokens += sum(map(len, towers.tokenizer(embedded, truncation=True, max_length=window)["input_ids"]))
        if watch is not None:
            watched = time.time()
            with watching(towers):
                watch(step + 1, len(plan), towers)
            watch_s += time.time() - watched
    elapsed = time.time() - started - watch_s
    for t in (towers.query, towers.document):
        t.eval()
    metrics = {
        "steps": len(plan),
        "pairs": len(pairs),
        "final_loss": log["loss"][-1],
        "wall_s": round(elapsed, 1),
        "pairs_per_s": round(sum(map(len, plan)) / max(elapsed, 1e-9), 2),
        "tower": cfg.tower,
        "tokens_per_s": round(n_tokens / max(elapsed, 1e-9), 1),
        "trained_parameters": sum(p.numel() for p in params),
        "log": log,
    } | ({"watch_s": round(watch_s, 1)} if watch is not None else {})
    return towers, metrics
