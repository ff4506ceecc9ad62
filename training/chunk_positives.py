"""Positives longer than the encoder's window, as the chunks they are served as.

Truncated to ``max_length`` tokens, a long positive teaches the model its first few sentences, which are
often not the part that answers the query. Served chunked (``common.chunking``, the same cuts as the feed and
the embedded backend), a document is found by its best chunk, so train on chunks:

- ``best``: one pair per pair; the positive is the chunk the frozen base model finds nearest the query.
- ``all``: each chunk becomes a pair with the same query. The batcher never puts two pairs of one query in a
  batch, and every chunk counts as a known positive of its query, so siblings are never in-batch negatives.

Positives that fit in one chunk, and pairs without a corpus document behind them, are chunked from their text
(title-less) or left as they are.

    pairs = chunk_positives(pairs, corpus, TrainConfig(base, out, max_length=128, chunk_positives="best"))
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from common.chunking import Chunker
from common.data import Doc
from common.vectors import normalize

from .distributed import cached_vectors
from .encoder import Encoder
from .model_dir import check_model_dir, model_cache_key
from .pairs import Pair


def chunk_positives(pairs: list[Pair], corpus, cfg) -> list[Pair]:
    """``cfg``: a TrainConfig; its ``chunk_positives`` mode,
    window (``max_length``), base model and prefixes."""
    # No overlap: at 128 tokens on SciFact, chunks without it
    # served as well as with 32 (docs/long-documents.md).
    chunker = Chunker.for_model(
        check_model_dir(cfg.base), cfg.max_length, 0, prefix=cfg.document_prefix or ""
    )
    docs = {d.id: d for d in corpus or [] if isinstance(d, Doc)}

    def chunks(p: Pair) -> list[str]:
        doc = docs.get(p.positive_id)
        return chunker.passage_chunks(doc.title, doc.text) if doc else chunker.chunks(p.positive)

    split = [chunks(p) for p in pairs]
    if cfg.chunk_positives == "all":
        return [replace(p, positive=c) if len(cs) > 1 else p for p, cs in zip(pairs, split) for c in cs]
    long = [i for i, cs in enumerate(split) if len(cs) > 1]
    if not long:
        return pairs
    best = _nearest_chunks([pairs[i].query for i in long], [split[i] for i in long], cfg)
    out = list(pairs)
    for i, chunk in zip(long, best):
        out[i] = replace(pairs[i], positive=chunk)
    return out


def _nearest_chunks(queries: list[str], candidates: list[list[str]], cfg) -> list[str]:
    """For each query, its nearest candidate (cosine) under the frozen base model; vectors cached on disk."""
    encoder = Encoder.load(cfg.base, **cfg.encoding).eval()
    key = model_cache_key(cfg.base, encoder.config)
    texts = [c for cs in candidates for c in cs]
    q = normalize(cached_vectors(f"query {key}", queries, lambda share: encoder.encode(share, "query")))
    c = normalize(cached_vectors(f"passage {key}", texts, lambda share: encoder.encode(share, "passage")))
    out, start = [], 0
    for i, cs in enumerate(candidates):
        sims = c[start : start + len(cs)] @ q[i]
        out.append(cs[int(np.argmax(sims))])
        start += len(cs)
    return out
