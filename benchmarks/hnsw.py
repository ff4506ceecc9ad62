"""HNSW settings against corpus size: recall@10 / @100 against exact search, query latency, build time and
memory, for the links per node and exploration tried (docs/scale.md, "Choosing HNSW settings").

    python benchmarks/hnsw.py [--sizes 10000,100000] [--links 16,32] [--extra 0,100,300,900] [--json F]

The vectors are scale.py's synthetic ones: a Gaussian with the mean and covariance of all-MiniLM-L6-v2's
SciFact vectors, at unit length (no clusters: harder than a real corpus of the size). The graph is faiss's
HNSW as the embedded backend builds it: M is max-links-per-node, efConstruction 200 is
neighbors-to-explore-at-insert. It is searched as Vespa searches: a query asks targetHits 100 and explores
targetHits + hnsw.exploreAdditionalHits candidates (efSearch = 100 + extra), 200 queries from the same law,
one at a time. Each size and links value is built in a process of its own. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
from scale import QUERIES, prepare, rss_mib, synthetic_vectors  # noqa: E402

TARGET_HITS = 100
EXPLORE_AT_INSERT = 200


def measure(n: int, links: int, extras: list[int]) -> dict:
    import faiss

    from common.vectors import exact_search
    from vespa_app.backend import served_recall

    vectors = synthetic_vectors(n, seed=1)
    queries = synthetic_vectors(QUERIES, seed=5)
    truth, _ = exact_search(queries, vectors, TARGET_HITS)
    before = rss_mib()
    index = faiss.IndexHNSWFlat(vectors.shape[1], links, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EXPLORE_AT_INSERT
    started = time.perf_counter()
    index.add(vectors)
    build_s = time.perf_counter() - started
    added = rss_mib() - before  # the graph and faiss's copy of the vectors
    graph_bytes = faiss.serialize_index(index).nbytes - vectors.nbytes
    rows = []
    for extra in extras:
        index.hnsw.efSearch = TARGET_HITS + extra
        found, times = [], []
        for q in queries:
            started = time.perf_counter()
            _, idx = index.search(q[None, :], TARGET_HITS)
            times.append(1000 * (time.perf_counter() - started))
            found.append(idx[0])
        recall = served_recall(
            {i: f.tolist() for i, f in enumerate(found)}, {i: t.tolist() for i, t in enumerate(truth)}
        )
        rows.append(
            {
                "explore_additional": extra,
                "recall@10": recall["@10"],
                "recall@100": recall["@100"],
                "p50_ms": round(float(np.percentile(times, 50)), 2),
                "p99_ms": round(float(np.percentile(times, 99)), 2),
            }
        )
    return {
        "documents": n,
        "links": links,
        "build_s": round(build_s, 1),
        "added_mib": round(added),
        "graph_bytes_per_doc": round(graph_bytes / n, 1),
        "searches": rows,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000")
    p.add_argument("--links", default="16,32")
    p.add_argument("--extra", default="0,100,300,900")
    p.add_argument("--json", default=str(REPO / "docs" / "hnsw.json"))
    p.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    extras = [int(e) for e in args.extra.split(",")]
    if args.one:
        print(json.dumps(measure(*args.one, extras)))
        return 0
    prepare()
    out = Path(args.json)
    runs = json.loads(out.read_text())["runs"] if out.exists() else []
    for n in map(int, args.sizes.split(",")):
        for links in map(int, args.links.split(",")):
            done = subprocess.run(
                [sys.executable, __file__, "--one", str(n), str(links), "--extra", args.extra],
                capture_output=True,
                text=True,
            )
            if done.returncode:
                sys.exit(f"{n} documents, {links} links: {done.stderr[-2000:]}")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            runs = [r for r in runs if (r["documents"], r["links"]) != (n, links)] + [run]
            for s in run["searches"]:
                print(
                    f"{n:>9,} docs  M {links:>2}  build {run['build_s']:>7.1f} s  +{run['added_mib']} MiB  "
                    f"extra {s['explore_additional']:>4}: recall@10 {s['recall@10']:.4f}  "
                    f"@100 {s['recall@100']:.4f}  p50 {s['p50_ms']} ms  p99 {s['p99_ms']} ms",
                    flush=True,
                )
            out.write_text(json.dumps({"machine": f"{os.cpu_count()} cores", "runs": runs}, indent=2) + "\n")
    print(json.dumps({"runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
