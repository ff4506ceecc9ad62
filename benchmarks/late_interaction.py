"""Late interaction against the single-vector model: quality and what it costs, on the embedded backend.

    python benchmarks/late_interaction.py [--out runs/late] [--single-export DIR] [--colbert-export DIR]
                                          [--rate-docs 200] [--late-args ...]

Without exports given, trains both on SciFact's training pairs with the default recipe (the single-vector
model; the ColBERT model with `--late-interaction`, plus ``--late-args``) and exports them into OUT. Then, on
SciFact test (all / seen / unseen queries, by the training
positives) and on the guards' report half (CISI, MedQuAD):

- the package's profiles on the embedded backend: semantic; colbert-maxsim (single-vector candidates, MaxSim
  re-rank of the top 100); colbert (the same candidates, normalize_linear of closeness + MaxSim); hybrid,
  hybrid-linear; hybrid-colbert (normalize_linear of closeness, BM25 and MaxSim); bm25, bm25-colbert; each
  MaxSim profile with the document tokens as packed bits
  (``int8``, the package default) and float16 (``float``);
- exact MaxSim over the whole corpus (float), what the re-rank approximates;
- cost: bytes per document (tokens × 16 B binarized, × 256 B bfloat16, against 1536 / 768 B for one float /
  bfloat16 vector), re-rank latency per query (query encode, MaxSim over 100 documents; p50 / p99), feed-side
  encode time per document (one text per call, one thread, as Vespa's embedders run).

Prints Markdown tables; writes OUT/rows.json and OUT/cost.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, SCIFACT  # noqa: E402
from common.data import read_beir  # noqa: E402
from common.metrics import positives_of, score_split, seen_queries  # noqa: E402

PROFILES = [
    ("semantic", None),
    ("colbert-maxsim", "int8"),
    ("colbert-maxsim", "float"),
    ("colbert", "int8"),
    ("colbert", "float"),
    ("hybrid", None),
    ("hybrid-linear", None),
    ("hybrid-colbert", "int8"),
    ("hybrid-colbert", "float"),
    ("bm25", None),
    ("bm25-colbert", "int8"),
]


def trained_export(out: Path, name: str, extra: list[str]) -> Path:
    """OUT/NAME-export, trained (default recipe + ``extra``) and exported unless already there."""
    from exporter.onnx_export import export
    from training.cli import main as train_main

    export_dir = out / f"{name}-export"
    if not export_dir.exists():
        run = out / f"{name}-train"
        if not (run / "model").exists():
            train_main(["train", "--out", str(run), *extra])
        export(run / "model", export_dir, progress=False)
    return export_dir


def index_for(out: Path, name: str, beir, single: Path, colbert: Path):
    from vespa_app.embedded import EmbeddedIndex

    path = out / f"index-{name}"
    if path.exists():
        index = EmbeddedIndex.open(path)
        index.check_corpus(beir.corpus.values())
        if (index.meta["export_dir"], index.meta["colbert"]["export_dir"]) == (
            str(single.resolve()),
            str(colbert.resolve()),
        ):
            return index
    return EmbeddedIndex.build(
        path, single, list(beir.corpus.values()), colbert_dir=colbert, progress=False, force=path.exists()
    )


def run_profile(index, beir, profile: str, cells: str | None) -> dict:
    if cells:
        index.colbert_cells = cells
    return {
        qid: [(h.id, h.score) for h in index.query(text, profile, hits=100)]
        for qid, text in beir.queries.items()
    }


def exact_maxsim(index, beir) -> dict:
    from training.evaluate import late_run

    index.colbert_cells = "float"
    queries = [index.colbert_embedder.embed_one(t, "query") for t in beir.queries.values()]
    return late_run([index.doc_tokens(i) for i in range(len(index.docs))], queries, beir)


def costs(index, single: Path, colbert: Path, beir, rate_docs: int) -> dict:
    from common.late import maxsim
    from exporter.runtime import OnnxEmbedder, OnnxTokenEmbedder
    from vespa_app.serving import COLBERT_RERANK

    tokens_per_doc = index.meta["colbert"]["tokens"] / len(index.docs)
    cost = {
        "tokens_per_doc": round(tokens_per_doc, 1),
        "bytes_colbert_int8": round(16 * tokens_per_doc),
        "bytes_colbert_bfloat16": round(256 * tokens_per_doc),
        "bytes_single_float": 1536,
        "bytes_single_bfloat16": 768,
    }
    # Re-rank latency: the query's token vectors, then MaxSim over the top 100 of the semantic profile
    # (colbert, colbert-maxsim), and over 1000 documents (hybrid-colbert's global phase, at most).
    encode, late = {"int8": [], "float": []}, {"int8": [], "float": [], "int8 1000": []}
    rng = np.random.default_rng(0)
    for text in list(beir.queries.values()):
        top = index.query(text, "semantic", hits=COLBERT_RERANK)
        positions = [index_of(index, h.id) for h in top]
        index.colbert_cells = "int8"
        q = index.colbert_embedder.embed_one(text, "query")
        thousand = rng.choice(len(index.docs), size=min(1000, len(index.docs)), replace=False)
        started = time.perf_counter()
        maxsim(q, [index.doc_tokens(int(p)) for p in thousand])
        late["int8 1000"].append(time.perf_counter() - started)
        for cells in ("int8", "float"):
            index.colbert_cells = cells
            started = time.perf_counter()
            q = index.colbert_embedder.embed_one(text, "query")
            encode[cells].append(time.perf_counter() - started)
            started = time.perf_counter()
            maxsim(q, [index.doc_tokens(p) for p in positions])
            late[cells].append(time.perf_counter() - started)
    cost["rerank_1000_int8_ms_p50"] = round(1000 * float(np.percentile(late["int8 1000"], 50)), 2)
    cost["rerank_1000_int8_ms_p99"] = round(1000 * float(np.percentile(late["int8 1000"], 99)), 2)
    for cells in ("int8", "float"):
        cost[f"rerank_{cells}_ms_p50"] = round(1000 * float(np.percentile(late[cells], 50)), 2)
        cost[f"rerank_{cells}_ms_p99"] = round(1000 * float(np.percentile(late[cells], 99)), 2)
    cost["query_encode_ms_p50"] = round(1000 * float(np.percentile(encode["int8"], 50)), 2)
    cost["query_encode_ms_p99"] = round(1000 * float(np.percentile(encode["int8"], 99)), 2)
    # Feed side: one document per call, one thread, both exports on the same documents.
    docs = [d.passage for d in index.docs[:rate_docs]]
    for name, embedder in (
        ("single", OnnxEmbedder(single, threads=1)),
        ("colbert", OnnxTokenEmbedder(colbert, threads=1)),
    ):
        for d in docs[:10]:
            embedder.embed_one(d, "passage")
        started = time.perf_counter()
        for d in docs:
            embedder.embed_one(d, "passage")
        cost[f"feed_{name}_ms_per_doc"] = round(1000 * (time.perf_counter() - started) / len(docs), 2)
    return cost


_positions: dict[int, dict[str, int]] = {}


def index_of(index, doc_id: str) -> int:
    table = _positions.setdefault(id(index), {d.id: i for i, d in enumerate(index.docs)})
    return table[doc_id]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/late")
    parser.add_argument("--single-export", help="a single-vector export (default: train one into OUT)")
    parser.add_argument("--colbert-export", help="a late-interaction export (default: train one into OUT)")
    parser.add_argument("--late-args", default="", help="more `siamese train` flags for the ColBERT model")
    parser.add_argument("--rate-docs", type=int, default=200)
    parser.add_argument("--guards", nargs="*", default=list(GUARDS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    single = Path(args.single_export) if args.single_export else trained_export(out, "single", [])
    colbert = (
        Path(args.colbert_export)
        if args.colbert_export
        else trained_export(out, "colbert", ["--late-interaction", *shlex.split(args.late_args)])
    )
    from training.evaluate import guard_sets
    from training.pairs import load_pairs

    sets = {"scifact": read_beir(SCIFACT, "test"), **guard_sets(args.guards)}
    positives = positives_of(load_pairs(SCIFACT)[0])
    rows: dict[str, dict] = {}
    cost = None
    for name, beir in sets.items():
        index = index_for(out, name, beir, single, colbert)
        seen = seen_queries(beir.qrels, beir.corpus, positives) if name == "scifact" else None
        for profile, cells in PROFILES:
            label = profile + (f" [{cells}]" if cells else "")
            started = time.time()
            scores = score_split(run_profile(index, beir, profile, cells), beir.qrels, seen)
            row = rows.setdefault(label, {"name": label})
            if name == "scifact":
                row.update(scores, seconds=round(time.time() - started, 1))
            else:
                row[f"guard {name}"] = scores["ndcg@10"]
        scores = score_split(exact_maxsim(index, beir), beir.qrels, seen)
        row = rows.setdefault(
            "MaxSim exact, whole corpus [float]", {"name": "MaxSim exact, whole corpus [float]"}
        )
        row.update(scores) if name == "scifact" else row.update({f"guard {name}": scores["ndcg@10"]})
        print(f"{name}: done", file=sys.stderr, flush=True)
        if name == "scifact":
            cost = costs(index, single, colbert, beir, args.rate_docs)
    (out / "rows.json").write_text(json.dumps(list(rows.values()), indent=2))
    (out / "cost.json").write_text(json.dumps(cost, indent=2))
    cols = [
        "ndcg@10",
        "ndcg@10 seen",
        "ndcg@10 unseen",
        "recall@100",
        "mrr@10",
        *[f"guard {g}" for g in args.guards],
    ]
    print("| profile | " + " | ".join(cols) + " |\n" + "|---" * (len(cols) + 1) + "|")
    for r in rows.values():
        print(f"| {r['name']} | " + " | ".join(f"{r[c]:.4f}" if c in r else "–" for c in cols) + " |")
    print("\n" + "\n".join(f"- {k}: {v}" for k, v in cost.items()))


if __name__ == "__main__":
    main()
