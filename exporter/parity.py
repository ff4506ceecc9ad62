"""Proof that an export embeds like the model it came from. The export fails if this does not hold.

Two checks, on texts chosen to break things (short, beyond max tokens, non-ASCII, punctuation only):
1. batch parity: PyTorch and ONNX Runtime on the same padded batches; max |Δ| on the pooled embeddings.
2. Vespa parity: the ONNX model driven as Vespa's embedder drives it (one text per call, no padding,
   prefix verbatim) against the PyTorch model; cosine similarity.
"""

from __future__ import annotations

import gzip
import json

import numpy as np

from common.bundled import SCIFACT
from common.errors import UserError
from common.vectors import cosine

from .runtime import OnnxEmbedder, OnnxTokenEmbedder

FP32_MAX_ABS = 1e-5
FP32_MIN_COSINE = 0.99999
INT8_MEAN_COSINE = 0.99

_ODD = [
    "naïve café",
    "Größe und Maß",
    "東京は日本の首都です。",
    "Ελληνικά κείμενα",
    "Привет, мир",
    "مرحبا بالعالم",
    "emoji 🧬🔬 in science",
    "Zürich — Genève",
    "ﬁligree ligatures",
    "x",
    "!!!",
    "...",
    "?",
    "()",
    "— – -",
    "#$%&*",
    "\"'`",
    ";;;",
    "¿¡",
    "…",
]


class ParityError(UserError, AssertionError):
    pass


def parity_texts(n_short: int = 40, n_long: int = 40) -> list[str]:
    """At least 100 texts: SciFact claims, SciFact abstracts (mostly beyond max tokens), and odd ones."""
    with open(SCIFACT / "queries.jsonl") as fh:
        short = [json.loads(line)["text"] for _, line in zip(range(n_short), fh)]
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt") as fh:
        docs = [json.loads(line) for _, line in zip(range(n_long), fh)]
    long = [f"{d['title']} {d['text']}" for d in docs]
    very_long = [" ".join(long[:3]) * 3]
    return short + long + very_long + _ODD


def check_parity(
    encoder,
    export_dir,
    texts: list[str] | None = None,
    model_file: str = "model.onnx",
    quantized: bool = False,
) -> dict:
    """Compare ``encoder`` (PyTorch) with the ONNX export in both contexts; raise ParityError on failure.
    Where queries and documents take the same prefix the two contexts embed the same strings alike: measured
    once, reported for both."""
    texts = texts or parity_texts()
    onnx = OnnxEmbedder(export_dir, model_file)
    report = {"texts": len(texts)}
    failures = []
    for kind in ("query", "passage"):
        if kind == "passage" and encoder.config.query_prefix == encoder.config.document_prefix:
            report[kind] = dict(report["query"])
            continue
        torch_emb = encoder.encode(texts, kind, batch_size=16)
        batch_emb = onnx.embed(texts, kind, batch_size=16)
        vespa_emb = np.stack([onnx.embed_one(t, kind) for t in texts])
        max_abs = float(np.abs(torch_emb - batch_emb).max())
        cos = cosine(torch_emb, vespa_emb)
        report[kind] = {
            "max_abs_diff": max_abs,
            "min_cosine": float(cos.min()),
            "mean_cosine": float(cos.mean()),
        }
        if quantized:
            if cos.mean() < INT8_MEAN_COSINE:
                failures.append(f"{kind}: int8 mean cosine {cos.mean():.5f} < {INT8_MEAN_COSINE}")
        else:
            if max_abs > FP32_MAX_ABS:
                failures.append(f"{kind}: max |PyTorch − ONNX| = {max_abs:.2e} > {FP32_MAX_ABS:.0e}")
            if cos.min() < FP32_MIN_COSINE:
                worst = texts[int(cos.argmin())][:60]
                failures.append(
                    f"{kind}: Vespa-style cosine {cos.min():.7f} < {FP32_MIN_COSINE} on {worst!r}"
                )
    if failures:
        raise ParityError(f"{export_dir}: the export does not embed like the model: " + "; ".join(failures))
    return report


def check_token_parity(model, export_dir, texts: list[str] | None = None) -> dict:
    """A late-interaction export: every token vector of PyTorch (padded batches) against ONNX Runtime driven
    as Vespa's colbert-embedder drives it (one text per call); max |Δ| per token, and the same token count."""
    texts = texts or parity_texts()
    onnx = OnnxTokenEmbedder(export_dir)
    report, failures = {"texts": len(texts)}, []
    for kind in ("query", "passage"):
        ours = model.encode_tokens(texts, kind, batch_size=16)
        served = [onnx.embed_one(t, kind) for t in texts]
        counts = [i for i, (a, b) in enumerate(zip(ours, served)) if a.shape != b.shape]
        if counts:
            failures.append(
                f"{kind}: {len(counts)} texts get another number of token vectors, e.g. "
                f"{texts[counts[0]][:60]!r}: {ours[counts[0]].shape} vs {served[counts[0]].shape}"
            )
            continue
        max_abs = max(float(np.abs(a - b).max()) for a, b in zip(ours, served))
        cos = np.concatenate([cosine(a, b) for a, b in zip(ours, served)])
        report[kind] = {"tokens": int(len(cos)), "max_abs_diff": max_abs, "min_cosine": float(cos.min())}
        if max_abs > FP32_MAX_ABS:
            failures.append(f"{kind}: max |PyTorch − ONNX| per token = {max_abs:.2e} > {FP32_MAX_ABS:.0e}")
    if failures:
        raise ParityError(f"{export_dir}: the export does not embed like the model: " + "; ".join(failures))
    return report
