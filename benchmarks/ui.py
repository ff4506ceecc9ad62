"""The search page's latency: one query through all five columns (BM25, the base, the model served, hybrid,
hybrid-linear) and the page rendered, over a run's index loaded once, for the run's test queries.

    python benchmarks/ui.py [RUN] [--queries 200]     (default: runs/latest)

Prints p50 / p99 of the whole request (Flask's test client: routing, the five searches, the template) and of
each column, then the figures as JSON on the last line. Goal (issue 44): p50 under 100 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from siamese.ui.app import create_app  # noqa: E402
from siamese.ui.run_folder import RunFolder  # noqa: E402
from siamese.ui.serve import systems_for  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", default="runs/latest")
    p.add_argument("--queries", type=int, default=200)
    args = p.parse_args()
    run = RunFolder.open(args.run)
    started = time.perf_counter()
    systems = systems_for(run)
    load_s = time.perf_counter() - started
    client = create_app(run, lambda: systems).test_client()
    queries = [q["text"] for q in run.per_query["main"]["queries"].values()][: args.queries]
    client.get("/search", query_string={"q": queries[0]})  # warm: the first query loads the runtimes' kernels
    total, columns = [], {}
    for text in queries:
        started = time.perf_counter()
        assert client.get("/search", query_string={"q": text}).status_code == 200
        total.append(1000 * (time.perf_counter() - started))
    # the columns in a pass of their own: a query's profiles share its embedding, so searching the text the
    # request just searched would time the served columns without it
    for text in queries:
        for column in systems.search(text):
            columns.setdefault(column.name, []).append(column.ms)

    def pct(values):
        return {
            "p50": round(float(np.percentile(values, 50)), 1),
            "p99": round(float(np.percentile(values, 99)), 1),
        }

    figures = {
        "run": str(run.path),
        "queries": len(queries),
        "load_s": round(load_s, 1),
        "request_ms": pct(total),
        "columns_ms": {name: pct(v) for name, v in columns.items()},
    }
    print(f"{len(queries)} queries over {run.path} (index and base model loaded once, {load_s:.1f} s)")
    print(f"whole request: p50 {figures['request_ms']['p50']} ms, p99 {figures['request_ms']['p99']} ms")
    for name, ms in figures["columns_ms"].items():
        print(f"  {name}: p50 {ms['p50']} ms, p99 {ms['p99']} ms")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
