"""Evaluation that cannot flatter, and what it says in words: the rows `siamese eval` and `siamese run` print
(each model on all / seen / unseen queries, each guard's report half, STS-B, each fused with BM25), what
fine-tuning did against the base model, and whether it beat an off-the-shelf reference.

The exact-search core the training decisions use (a model as an embed function, the guards' halves, BM25 runs)
stays in ``training/evaluate.py``; this module is the report's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from common.chunking import Chunker, default_overlap
from common.data import Beir
from common.errors import ConfigError
from common.metrics import GUARD, Run, format_table, per_query_ndcg, score_run, score_split, seen_queries
from common.vectors import chunked_dense_run, dense_run, prefix_embed, rrf_run
from training.evaluate import bm25_run, embed_fn, sts_score
from training.model_dir import check_model_dir, model_cache_key, model_name, read_positives
from training.models import load_model

PER_QUERY = "per_query"  # a row's per-query nDCG@10, by set ("main", each guard): kept apart from its means
FORGETTING_BOUND = 0.005  # a guard falling more than half a point below the base model is named


# What a row is, so that the report and the model card select rows by what they are, never by their display
# names: bm25 | base (the base model as deployed) | reference (an off-the-shelf model) | tuned (ours, as
# exported) | served (a profile through the search backend) | fused (a row's system + BM25 by RRF; "of":
# which) | model (`siamese eval`'s models, which it tells apart by name).
KINDS = ("bm25", "base", "reference", "tuned", "served", "fused", "model")


def system_row(
    name: str, runs: dict[str, Run], beir: Beir | None, guards: dict[str, Beir], seen, kind: str = "model"
) -> dict:
    """One table row: the main set (all, seen, unseen) and each guard's report half; under ``PER_QUERY``,
    every query's nDCG@10 (what the search page compares query by query)."""
    row = {"name": name, "kind": kind, PER_QUERY: {}}
    if beir is not None:
        row.update(score_split(runs["main"], beir.qrels, seen))
        row[PER_QUERY]["main"] = per_query_ndcg(runs["main"], beir.qrels)
    for g, guard in guards.items():
        row[f"{GUARD}{g}"] = score_run(runs[g], guard.qrels)["ndcg@10"]
        row[PER_QUERY][g] = per_query_ndcg(runs[g], guard.qrels)
    return row


def system_rows(
    name: str,
    runs: dict[str, Run],
    beir: Beir | None,
    guards: dict[str, Beir],
    seen,
    lexical: dict[str, Run] | None = None,
    encoder=None,
    sts_rows=None,
    kind: str = "model",
    sts_cache: str | None = None,
) -> list[dict]:
    """A model's row (with its STS-B Spearman when ``encoder`` and ``sts_rows`` are given; ``sts_cache``: the
    model's cache key, for a model whose vectors do not change between runs) and, with
    ``lexical`` (each data set's BM25 run), the row of its fusion with BM25 by reciprocal rank fusion: the one
    builder of the rows `siamese eval` and `siamese run` print."""
    rows = [system_row(name, runs, beir, guards, seen, kind)]
    if encoder is not None and sts_rows:
        rows[0]["sts_spearman"] = sts_score(encoder, sts_rows, sts_cache)
    if lexical:
        fused = {n: rrf_run(runs[n], lexical[n]) for n in runs}
        rows.append(system_row(f"{name} + BM25 (RRF)", fused, beir, guards, seen, "fused") | {"of": kind})
    return rows


@dataclass(frozen=True)
class Chunking:
    """Documents embedded as chunks of ``tokens`` (default: the model's window) sharing ``overlap`` tokens
    (default: ``common.chunking.default_overlap``), scored by their best chunk or the mean of their best two
    (``pooling``)."""

    overlap: int | None = None
    pooling: str = "best"
    tokens: int | None = None

    def overlap_for(self, tokens: int) -> int:

        return default_overlap(tokens) if self.overlap is None else self.overlap

    def label(self, tokens: int) -> str:
        return f"chunked {tokens}/{self.overlap_for(tokens)}, {self.pooling}"


def evaluate(
    models: list[str],
    beir: Beir | None = None,
    bm25: bool = True,
    sts_rows=None,
    progress: bool = True,
    max_length: int | None = None,
    guards: dict[str, Beir] | None = None,
    positives: dict | None = None,
    hybrid: bool = False,
    chunking: Chunking | None = None,
    dim: int | None = None,
) -> list[dict]:
    """One row per system: {'name', 'ndcg@10', 'ndcg@10 seen', 'ndcg@10 unseen', 'recall@100', 'mrr@10',
    'sts_spearman', 'guard NAME', 'seconds'}. ``positives`` (``common.metrics.read_positives``) splits the
    queries into seen and unseen; without it, the first model directory that recorded its positives does.
    ``chunking``: documents longer than the window are embedded as chunks instead of truncated. ``dim``:
    each model serves the first ``dim`` dimensions of its embedding (a Matryoshka prefix)."""
    guards = guards or {}
    datasets = ({"main": beir} if beir else {}) | guards
    positives = positives or next(filter(None, (read_positives(check_model_dir(m)) for m in models)), None)
    seen = seen_queries(beir.qrels, beir.corpus, positives) if beir and positives else None
    lexical = {name: bm25_run(d.corpus, d.queries) for name, d in datasets.items()} if bm25 or hybrid else {}
    rows = []
    if bm25 and datasets:
        rows.append(system_row("BM25", lexical, beir, guards, seen, "bm25"))
    for model in models:
        started = time.time()
        encoder = load_model(model, max_length=max_length)
        embed, key = embed_fn(encoder, progress), model_cache_key(model, encoder.config)
        label = model_label(model)
        if dim:
            if not 8 <= dim <= encoder.dim:
                raise ConfigError(
                    f"--dim {dim} must be between 8 (what a package serves at least) and {label}'s "
                    f"{encoder.dim} dimensions"
                )
            embed, key, label = prefix_embed(embed, dim, key), None, f"{label} @{dim}d"
        if chunking:
            tokens = chunking.tokens or encoder.config.max_length
            if tokens > encoder.config.max_length:
                raise ConfigError(
                    f"--chunk-tokens {tokens} is above {label}'s window of "
                    f"{encoder.config.max_length} tokens: the encoder would truncate every chunk"
                )
            chunker = Chunker.for_model(
                check_model_dir(model),
                tokens,
                chunking.overlap_for(tokens),
                prefix=encoder.config.document_prefix,
            )
            dense = {
                name: chunked_dense_run(embed, d, chunker, chunking.pooling, cache=key)
                for name, d in datasets.items()
            }
            label = f"{label} {chunking.label(tokens)}"
        else:
            dense = {name: dense_run(embed, d, cache=key) for name, d in datasets.items()}
        model_rows = system_rows(
            label, dense, beir, guards, seen, lexical if hybrid else None, encoder, sts_rows, sts_cache=key
        )
        model_rows[0]["seconds"] = round(time.time() - started, 1)
        rows += model_rows
    return rows


def generalisation(rows: list[dict], base: str, tuned: str) -> list[str]:
    """What fine-tuning did, in words, from the rows of one run: the gain on all queries beside the seen and
    unseen ones, STS and each guard; any guard that fell more than half a point is named."""
    by_name = {r["name"]: r for r in rows}
    b, t = by_name[base], by_name[tuned]

    def delta(key):
        return f"{100 * (t[key] - b[key]):+.1f} points ({b[key]:.4f} → {t[key]:.4f})"

    lines = [f"- all queries: {delta('ndcg@10')}"]
    for part in ("seen", "unseen"):
        if f"ndcg@10 {part}" in b and f"ndcg@10 {part}" in t:
            lines.append(f"- {part} queries: {delta(f'ndcg@10 {part}')}")
    if "sts_spearman" in b and "sts_spearman" in t:
        lines.append(f"- STS-B Spearman: {delta('sts_spearman')}")
    guards = sorted(k for k in b if k.startswith(GUARD) and k in t)
    for key in guards:
        lines.append(f"- guard {key[len(GUARD) :]}: {delta(key)}")
    fallen = [key[len(GUARD) :] for key in guards if b[key] - t[key] > FORGETTING_BOUND]
    lines.append("")
    if fallen:
        lines.append(
            f"**Forgetting:** the fine-tuned model scores more than 0.5 points below the base model on "
            f"{', '.join(fallen)}. Retrieval outside the training domain got worse; consider "
            "`siamese merge BASE TUNED --alpha auto OUT`."
        )
    elif guards:
        lines.append("No guard fell more than 0.5 points below the base model.")
    if "ndcg@10 unseen" in t and t["ndcg@10 unseen"] < b["ndcg@10 unseen"]:
        lines.append(
            "**On unseen queries the fine-tuned model is worse than the base model:** the gain over all "
            "queries comes from documents seen in training."
        )
    return lines


def against_reference(rows: list[dict], reference: str, tuned: str) -> list[str]:
    """Did fine-tuning beat an off-the-shelf model, in words: all and unseen queries, STS and each guard (a
    guard counts as held within half a point), alone and each fused with BM25."""
    by_name = {r["name"]: r for r in rows}
    lines = []
    for suffix in ("", " + BM25 (RRF)"):
        r, t = by_name.get(reference + suffix), by_name.get(tuned + suffix)
        if not (r and t):
            continue
        keys = [k for k in ("ndcg@10", "ndcg@10 seen", "ndcg@10 unseen", "sts_spearman") if k in r and k in t]
        keys += sorted(k for k in r if k.startswith(GUARD) and k in t)
        for key in keys:
            gap = t[key] - r[key]
            bound = FORGETTING_BOUND if key.startswith(GUARD) else 0.0
            verdict = "beats it" if gap > 0 else ("holds it" if gap >= -bound else "**loses to it**")
            what = {"ndcg@10": "all queries", "sts_spearman": "STS-B"}.get(
                key, key.replace("ndcg@10 ", "") + ("" if key.startswith(GUARD) else " queries")
            )
            lines.append(
                f"- {tuned}{suffix} on {what}: "
                f"{verdict} ({100 * gap:+.1f} points, {r[key]:.4f} → {t[key]:.4f})"
            )
    return lines


def model_label(path) -> str:
    return model_name(path)


def compare(
    models: list[str], beir: Beir, *, base: str, guards: dict[str, Beir], **evaluate_kw
) -> tuple[list[dict], str]:
    """``siamese eval``'s exact search: every model's rows (``evaluate``) and what to print under them: the
    table, what its columns mean, and each model against ``base`` on seen / unseen queries and the guards."""
    rows = evaluate(models, beir, guards=guards, **evaluate_kw)
    text = [format_table(rows), evaluation_notes(beir, rows, guards)]
    base_name = next((r["name"] for r in rows if r["name"] == model_label(base)), None)
    for row in rows:
        if base_name and row["name"] not in (base_name, "BM25") and "RRF" not in row["name"]:
            lines = generalisation(rows, base_name, row["name"])
            text.append(f"\n{row['name']} against {base_name}:\n" + "\n".join(lines))
    return rows, "\n".join(text)


def evaluation_notes(beir, rows, guards) -> str:
    """What the columns mean, said under every table."""
    notes = [f"{len(beir.queries)} queries, {len(beir.corpus)} documents."]
    if any("ndcg@10 seen" in r for r in rows):
        notes.append(
            "seen: queries with a relevant document that was a training positive (a gain there may be "
            "memorised documents); unseen: the others (generalisation)."
        )
    else:
        notes.append(
            "No seen/unseen split: no training positives known (give --train-data, or a model directory "
            "written by `siamese train`)."
        )
    if guards:
        notes.append(
            "guard columns: nDCG@10 on the report half of each out-of-domain set ("
            + ", ".join(f"{g}: {len(b.queries)} queries" for g, b in guards.items())
            + ")."
        )
    return "\n".join(notes)
