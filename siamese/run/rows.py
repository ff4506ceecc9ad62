"""The rows of `siamese run`'s report beside the served ones: exact search on the evaluation set and on every
guard for BM25, the base model as a user would deploy it, each ``--reference`` model and the fine-tuned model
as served, each also fused with BM25 (``model_rows``). A frozen document tower's corpus vectors are the base
model's, embedded once for all of them (``frozen_documents``)."""

from __future__ import annotations

import json
from pathlib import Path

from common.chunking import Chunker
from common.data import Beir, read_sts_csv
from common.vectors import chunked_dense_run, dense_run
from exporter.runtime import OnnxEmbedder
from siamese.evaluation import model_label, system_row, system_rows
from training.encoder import Encoder
from training.evaluate import bm25_run, embed_fn
from training.model_dir import RECIPE_FILE, TOWERS_FILE, EncoderConfig, check_model_dir, model_cache_key
from training.models import load_model

TUNED = "fine-tuned (exact)"
UNTRAINED = "served: the base model, untrained (exact)"  # --recipe auto kept the base


def frozen_documents(model_dir: Path, manifest, dim: int):
    """A frozen document tower (``--tower query`` or ``adapter``), or the base itself where `--recipe auto`
    kept it, is the base model, byte for byte: its
    documents' vectors are the base's, which training (the query tower's bank) and the base row compute and
    cache. Returns their cache key and a PyTorch passage embedder for what the cache lacks, or None where the
    document side was trained, a prefix of the vector is served (``dim``) or the export is quantized: there
    the exported graph embeds the documents. The export's parity check holds the served document graph to
    these vectors (max |Δ| ~3e-7), so one embedding of each
    corpus serves training, the index and every row."""

    towers, recipe = model_dir / TOWERS_FILE, model_dir / RECIPE_FILE
    frozen = json.loads(towers.read_text()).get("frozen") if towers.exists() else None
    kept = recipe.exists() and json.loads(recipe.read_text()).get("chosen") == "base"
    if not (frozen == "document" or kept) or dim != manifest.dimension or manifest.quantization:
        return None

    config = EncoderConfig.load(model_dir)
    document = None

    def embed(texts: list[str]):
        nonlocal document
        document = document or Encoder.load(model_dir)
        return document.encode(texts, "passage", progress=len(texts) > 1000)

    return model_cache_key(model_dir, config), embed


def _encoder_runs(model: str, encoder, datasets: dict, chunker) -> dict:
    """Exact-search runs of a PyTorch encoder on every data set (its vectors cached between runs); chunked
    runs embed documents as the run serves them, in chunks of the same size."""

    embed, key = embed_fn(encoder, True), model_cache_key(model, encoder.config)
    if not chunker:
        return {name: dense_run(embed, d, cache=key) for name, d in datasets.items()}
    own = Chunker.for_model(
        check_model_dir(model),
        min(chunker.max_tokens, encoder.config.max_length),
        chunker.overlap,
        prefix=encoder.config.document_prefix,
    )
    return {name: chunked_dense_run(embed, d, own, cache=key) for name, d in datasets.items()}


def model_rows(
    options,
    base: str,
    model_dir: Path,
    export_dir: Path,
    beir: Beir,
    guards: dict,
    index,
    seen,
    chunker=None,
    served_label: str = TUNED,
) -> list[dict]:
    """Exact search on the evaluation set and on every guard: BM25; the base model as a user would deploy it
    (PyTorch, at its own window, and also at the fine-tuned model's window where that differs); each
    ``--reference`` model at its own window; the fine-tuned model as served (the exported ONNX graph,
    parity-checked against PyTorch; on the embedded backend, the index's own document vectors); each fused
    with BM25. Chunked runs score every model's documents by their best chunk."""

    datasets = {"main": beir} | guards
    lexical = {name: bm25_run(d.corpus, d.queries) for name, d in datasets.items()}
    sts_rows = read_sts_csv(options.sts) if options.sts else None
    rows = [system_row("BM25", lexical, beir, guards, seen, "bm25")]

    def add(name: str, runs: dict, encoder=None, kind: str = "base", model: str | None = None):
        cache = model_cache_key(model, encoder.config) if model and encoder is not None else None
        rows.extend(system_rows(name, runs, beir, guards, seen, lexical, encoder, sts_rows, kind, cache))

    window = EncoderConfig.load(model_dir).max_length
    base_encoder = Encoder.load(base)
    add(base_row_name(base), _encoder_runs(base, base_encoder, datasets, chunker), base_encoder, model=base)
    if base_encoder.config.max_length != window:
        base_encoder = Encoder.load(base, max_length=window)
        add(
            f"{base_row_name(base)} @{window} tokens",
            _encoder_runs(base, base_encoder, datasets, chunker),
            base_encoder,
            model=base,
        )  # a base row too; the report compares with the first, at the base's own window
    for reference in options.references:
        encoder = load_model(reference)
        add(
            f"reference ({model_label(reference)})",
            _encoder_runs(reference, encoder, datasets, chunker),
            encoder,
            "reference",
            reference,
        )
    served = index.embedder if index else OnnxEmbedder(export_dir)
    # documents' vectors are named by what decides them (the index's key): a new query tower re-embeds none,
    # and a frozen document tower's are the base model's, embedded once for its row above
    frozen = frozen_documents(model_dir, served.manifest, served.dim)
    served_key = frozen[0] if frozen else f"onnx documents {served.manifest.document_side()} @{served.dim}"

    def embed(texts, kind):
        return frozen[1](texts) if frozen and kind != "query" else served.embed(texts, kind)

    if chunker:
        tuned_runs = {
            name: chunked_dense_run(embed, d, chunker, cache=served_key) for name, d in guards.items()
        }
        tuned_runs["main"] = chunked_dense_run(
            embed, beir, chunker, cache=served_key, vectors=index.embeddings if index else None
        )
    else:
        tuned_runs = {name: dense_run(embed, d, cache=served_key) for name, d in guards.items()}
        tuned_runs["main"] = (
            dense_run(embed, beir, doc_vectors=index.embeddings, doc_ids=[d.id for d in index.docs])
            if index
            else dense_run(embed, beir, cache=served_key)
        )
    add(served_label, tuned_runs, load_model(model_dir) if sts_rows else None, "tuned")
    return rows


def base_row_name(base: str) -> str:
    return f"base ({model_label(base)})"
