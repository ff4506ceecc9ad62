"""The embedded backend on the SciFact corpus: HNSW recall@10 against exact search, query latency p50/p99
with and without query embedding, and index build time, for a few HNSW settings.

    python benchmarks/backend.py [--export DIR] [--embeddings FILE.npy]

Uses runs/latest/index/embeddings.npy (from `siamese run`) when present, so the corpus is not embedded
again; otherwise embeds it with the export. Last line: JSON.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from common.bundled import SCIFACT as DEFAULT_DATA  # noqa: E402
from common.data import read_beir  # noqa: E402
from vespa_app.embedded import EmbeddedIndex  # noqa: E402
from vespa_app.hnsw import HnswSettings  # noqa: E402

# (M, ef_construction, explored beyond targetHits 100: efSearch 100 + that)
SETTINGS = [(16, 100, 0), (16, 200, 0), (16, 200, 100), (32, 500, 100)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--export", default="runs/latest/export")
    p.add_argument("--embeddings", default="runs/latest/index/embeddings.npy")
    p.add_argument("--k", type=int, default=10)
    args = p.parse_args()
    if not Path(args.export, "manifest.json").exists():
        sys.exit(f"{args.export}: no export. Run `siamese run` first, or pass --export DIR.")
    beir = read_beir(DEFAULT_DATA, "train")
    docs = list(beir.corpus.values())
    embeddings = np.load(args.embeddings) if Path(args.embeddings).exists() else None
    queries = list(read_beir(DEFAULT_DATA, "test").queries.values()) + list(beir.queries.values())[:700]
    results = {"documents": len(docs), "queries": len(queries), "k": args.k, "settings": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (m, ef_c, extra) in enumerate(SETTINGS):
            ef_s = 100 + extra
            started = time.perf_counter()
            index = EmbeddedIndex.build(
                Path(tmp) / f"i{i}",
                args.export,
                docs,
                hnsw=HnswSettings(m, ef_c, extra),
                embeddings=embeddings,
                progress=False,
            )
            build_s = time.perf_counter() - started - index.meta["embed_seconds"]
            embeddings = index.embeddings
            if i == 0:
                started = time.perf_counter()
                vectors = np.stack([index.embedder.embed_one(q, "query") for q in queries])
                results["query_embedding_ms_mean"] = round(
                    1000 * (time.perf_counter() - started) / len(queries), 2
                )
                exact, _ = index.exact(vectors, args.k)
            found, lat_search, lat_full = [], [], []
            for q, v in zip(queries, vectors):
                t0 = time.perf_counter()
                idx = index.nearest(v, 100)[0][: args.k]  # targetHits 100, as a served query asks
                lat_search.append(time.perf_counter() - t0)
                found.append(idx)
                t0 = time.perf_counter()
                index.query(q, "semantic", hits=args.k)
                lat_full.append(time.perf_counter() - t0)
            recall = float(
                np.mean([len(set(f.tolist()) & set(e.tolist())) / args.k for f, e in zip(found, exact)])
            )
            ms = lambda xs, p: round(1000 * float(np.percentile(xs, p)), 3)  # noqa: E731
            results["settings"].append(
                {
                    "max_links_per_node": m,
                    "ef_construction": ef_c,
                    "ef_search": ef_s,
                    "recall_at_10": round(recall, 4),
                    "build_s": round(build_s, 2),
                    "search_ms_p50": ms(lat_search, 50),
                    "search_ms_p99": ms(lat_search, 99),
                    "with_embedding_ms_p50": ms(lat_full, 50),
                    "with_embedding_ms_p99": ms(lat_full, 99),
                }
            )
    print(
        f"{len(docs)} documents, {len(queries)} queries, query embedding "
        f"{results['query_embedding_ms_mean']} ms"
    )
    print(
        f"{'M':>3} {'efC':>4} {'efS':>4} {'recall@10':>9} {'build s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'+embed p50':>10} {'+embed p99':>10}"
    )
    for s in results["settings"]:
        print(
            f"{s['max_links_per_node']:3} {s['ef_construction']:4} {s['ef_search']:4} "
            f"{s['recall_at_10']:9.4f} "
            f"{s['build_s']:8.2f} {s['search_ms_p50']:7.3f} {s['search_ms_p99']:7.3f} "
            f"{s['with_embedding_ms_p50']:10.2f} {s['with_embedding_ms_p99']:10.2f}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
