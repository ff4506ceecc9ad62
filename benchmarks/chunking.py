"""Truncated vs chunked documents: what embedding a long passage as chunks buys, at the same window.

    python benchmarks/chunking.py [--models base
    [LABEL=]path/to/model ...] [--windows 128 256] [--overlaps 0 32]
                                  [--out runs/chunking]
    python benchmarks/chunking.py --feed-cost EXPORT_DIR [--windows 128]   # ms of embedding per document
    python benchmarks/chunking.py --vespa-chunkers [--windows 128 256]   # Vespa's own chunkers vs ours

For each model and window: documents truncated to the window (what the package serves today), then chunked
(title in each chunk, neighbours sharing 0 or 32 tokens) and scored by the best chunk or by the mean of the
best two. SciFact test (all, seen, unseen queries: seen by the given model's training positives) and the
out-of-domain guards (report half). Rows are kept per setting in OUT, so a re-run measures only what is
missing; vectors are cached (``common.vectors.cached_vectors``). Prints a Markdown table, then the rows as
JSON on the last line, and the chunk count per document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, SCIFACT  # noqa: E402
from common.data import load_beir  # noqa: E402
from common.metrics import format_table  # noqa: E402
from siamese.evaluation import Chunking, evaluate
from training.evaluate import guard_sets  # noqa: E402
from training.model_dir import (
    default_base_model,  # noqa: E402
    read_positives,  # noqa: E402
)


def model_label(arg: str) -> tuple[str, str]:
    """``base``, ``LABEL=DIR`` or ``DIR`` (labelled by its name, or its parent's where the name is ``model``,
    as in a run's ``train/model``): the label names the rows and their cache files, so two models must not
    share one."""
    if arg == "base":
        return "base", str(default_base_model())
    if "=" in arg:
        label, path = arg.split("=", 1)
        return label, path
    path = Path(arg)
    return (path.parent.parent.name if path.name == "model" else path.name), arg


def settings(overlaps: list[int]) -> list[Chunking | None]:
    """Truncated, then for each overlap the best chunk, and the mean of the best two at the largest overlap
    (the same vectors: no extra embedding)."""
    return [None, *[Chunking(o, "best") for o in overlaps], Chunking(max(overlaps), "top2")]


def chunk_counts(model: str, window: int, overlap: int, corpus) -> dict:
    from common.chunking import Chunker

    chunker = Chunker.for_model(model, window, overlap)
    counts = [len(chunker.passage_chunks(d.title, d.text)) for d in corpus.values()]
    return {
        "window": window,
        "overlap": overlap,
        "chunks_per_doc": round(sum(counts) / len(counts), 2),
        "max": max(counts),
        "truncated_docs": sum(c > 1 for c in counts),
    }


def feed_cost(export_dir: str, corpus, tokens: int, overlap: int, n: int = 200) -> dict:
    """Feed-side embedding per document, as Vespa's embedder runs it (ONNX Runtime, one text per call):
    the truncated passage, then its chunks; on the first ``n`` documents."""
    import time

    from common.chunking import Chunker
    from exporter.runtime import OnnxEmbedder

    embedder = OnnxEmbedder(export_dir)
    chunker = Chunker.for_model(export_dir, tokens, overlap, prefix=embedder.manifest.prefixes["document"])
    docs = list(corpus.values())[:n]
    out = {"documents": len(docs), "tokens": tokens, "overlap": overlap}
    for name, texts in (
        ("truncated", [[d.passage] for d in docs]),
        ("chunked", [chunker.passage_chunks(d.title, d.text) for d in docs]),
    ):
        started = time.perf_counter()
        for doc_texts in texts:
            for text in doc_texts:
                embedder.embed_one(text, "passage")
        out[f"{name}_ms_per_doc"] = round(1000 * (time.perf_counter() - started) / len(docs), 1)
    return out


def vespa_chunkers(model: str, corpus, window: int) -> list[dict]:
    """Vespa's own chunkers (``chunk fixed-length N`` and ``chunk sentence`` in an indexing statement) against
    ours, on each document's text, no overlap (Vespa's have none): how often they cut where ours does, and how
    much of what they produce the embedder would truncate at ``window`` tokens. Fixed-length is given the
    character count that our chunks average on this corpus, its best chance to match."""
    from common.chunking import Chunker
    from vespa_app.check.java import vespa_chunks

    ours = Chunker.for_model(model, window, 0)
    texts = [d.text for d in corpus.values() if d.text]
    our_chunks = [ours.chunks(t) for t in texts]
    flat = [c for cs in our_chunks for c in cs]
    chars = round(sum(map(len, flat)) / len(flat))
    rows = []
    for name, args, theirs in (
        ("ours", (), our_chunks),
        ("vespa fixed-length", (chars,), vespa_chunks(texts, "fixed-length", (chars,))),
        ("vespa sentence", (), vespa_chunks(texts, "sentence")),
    ):
        tokens = [ours.count(c) for cs in theirs for c in cs]
        lost = sum(max(0, t - ours.budget) for t in tokens)
        rows.append(
            {
                "chunker": name + "".join(f" {a}" for a in args),
                "window": window,
                "chunks_per_doc": round(len(tokens) / len(texts), 2),
                "same_cuts_as_ours": round(
                    sum([c.strip() for c in a] == [c.strip() for c in b] for a, b in zip(theirs, our_chunks))
                    / len(texts),
                    3,
                ),
                "over_window": round(sum(t > ours.budget for t in tokens) / len(tokens), 3),
                "tokens_truncated": round(lost / sum(tokens), 3),
                "mean_window_fill": round(
                    sum(min(t, ours.budget) for t in tokens) / len(tokens) / ours.budget, 2
                ),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["base"])
    parser.add_argument("--windows", nargs="*", type=int, default=[128, 256])
    parser.add_argument("--overlaps", nargs="*", type=int, default=[0, 32])
    parser.add_argument("--out", default="runs/chunking")
    parser.add_argument(
        "--feed-cost",
        metavar="EXPORT_DIR",
        help="only time feed-side embedding per document with this export (one text per call)",
    )
    parser.add_argument(
        "--vespa-chunkers",
        action="store_true",
        help="only compare Vespa's own chunkers (indexing language) with ours, on SciFact's texts",
    )
    args = parser.parse_args()
    if args.vespa_chunkers:
        corpus = load_beir(SCIFACT, "test").corpus
        rows = [r for w in args.windows for r in vespa_chunkers(model_label(args.models[0])[1], corpus, w)]
        print("| " + " | ".join(rows[0]) + " |\n" + "|---" * len(rows[0]) + "|")
        print("\n".join("| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows))
        print(json.dumps(rows))
        return
    if args.feed_cost:
        corpus = load_beir(SCIFACT, "test").corpus
        for window in args.windows:
            print(json.dumps(feed_cost(args.feed_cost, corpus, window, max(args.overlaps))))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    beir = load_beir(SCIFACT, "test")
    guards = guard_sets(GUARDS)
    models = dict(model_label(m) for m in args.models)  # label → directory
    positives = next(filter(None, (read_positives(m) for m in models.values())), None)
    if positives is None:  # the base model has none: split by the default training data's positives
        from common.metrics import positives_of
        from training.pairs import load_pairs

        positives = positives_of(load_pairs(SCIFACT)[0])
    rows = []
    for label, model in models.items():
        for window in args.windows:
            for setting in settings(args.overlaps):
                name = f"{label}-{window}-" + (f"{setting.overlap}-{setting.pooling}" if setting else "trunc")
                cached = out / f"{name}.json"
                if not cached.exists():
                    row = evaluate(
                        [model],
                        beir,
                        bm25=False,
                        max_length=window,
                        guards=guards,
                        positives=positives,
                        chunking=setting,
                    )[0]
                    row["name"] = f"{label} @{window} " + (setting.label(window) if setting else "truncated")
                    cached.write_text(json.dumps(row))
                rows.append(json.loads(cached.read_text()))
                print(format_table(rows[-1:]), file=sys.stderr)
    print(format_table(rows))
    first = next(iter(models.values()))
    counts = [chunk_counts(first, w, o, beir.corpus) for w in args.windows for o in args.overlaps]
    for c in counts:
        print(
            f"SciFact at {c['window']} tokens, overlap {c['overlap']}: "
            f"{c['chunks_per_doc']} chunks per document (max {c['max']}); "
            f"{c['truncated_docs']} of {len(beir.corpus)} documents need more than one"
        )
    print(json.dumps({"rows": rows, "chunks": counts}))


if __name__ == "__main__":
    main()
