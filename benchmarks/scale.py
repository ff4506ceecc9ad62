"""How cost grows with the corpus: 10k, 100k and 1M synthetic documents on this machine (docs/scale.md).

    python benchmarks/scale.py [--sizes 10000,100000,1000000]
    [--feed-sizes 10000,100000] [--json F] [--plot F]

For each size, each measurement runs in a process of its own,
so that its peak memory (``ru_maxrss``) is its own:
- **query tower**: training steps of all-MiniLM-L6-v2's query tower as the default recipe takes them (32
  queries and 32 anchor texts a step, 128 tokens, InfoNCE of every query against a bank of N document
  vectors); seconds a step (median of 3, after one), the process's peak
  memory and what the steps added to it (bank, scores, AdamW);
- **index**: ``EmbeddedIndex.build`` over N documents (HNSW with the settings chosen for N, vespa_app/hnsw.py;
  BM25 over the texts, written to disk; the vectors are given, so the embedding is not timed here: that is the
  feed's cost), its seconds, the memory it added to the process (its peak less what the process held before:
  the vectors and texts) and its size on disk;
- **recall**: HNSW recall@10 against exact search, 200 queries, each asking targetHits 100 as served;
- **latency**: ``index.query`` p50 / p99 for ``semantic`` (the query embedded by the exported model, then
  HNSW) and ``hybrid`` (BM25 too, fused), 200 queries, one at a time.
Then the **feed** throughput to the fault server (no faults) at
the feed's concurrency (16), for the feed sizes.

Synthetic data, said plainly: vectors from a Gaussian with the mean and covariance of all-MiniLM-L6-v2's
vectors of the 5,183 SciFact abstracts, at unit length (their neighbourhoods crowd as real ones do;
independent coordinates would be harder than any real corpus); texts of 60 words from a Zipf law (s = 1.1)
over 50,000 made-up words. Queries are drawn from the same laws. Last line: JSON.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

WORK = (
    REPO / "build" / "scale"
)  # the export the latency measurement embeds queries with, the real vectors' law
VOCABULARY, WORDS, ZIPF = 50_000, 60, 1.1
QUERIES = 200


def peak_mib() -> float:
    """The process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    """The process's resident memory now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def vector_law():
    """Mean and covariance of the base model's vectors of the 5,183 SciFact abstracts (at its own window: the
    vectors `siamese run` caches, so a machine that ran it embeds nothing here)."""
    from common.bundled import SCIFACT
    from common.data import read_beir
    from common.vectors import cached_vectors
    from training.encoder import Encoder
    from training.model_dir import EncoderConfig, check_model_dir, default_base_model, model_cache_key

    base = default_base_model()
    docs = list(read_beir(SCIFACT, "train").corpus.values())
    texts = [d.passage for d in docs]
    encoder = None

    def embed():
        nonlocal encoder
        encoder = Encoder.load(base, device="cpu")
        return encoder.encode(texts, "passage", progress=True)

    vectors = cached_vectors(model_cache_key(base, EncoderConfig.load(check_model_dir(base))), texts, embed)
    return vectors.mean(0), np.cov(vectors, rowvar=False)


def synthetic_vectors(n: int, seed: int) -> np.ndarray:
    mean, cov = (np.load(WORK / name) for name in ("mean.npy", "cov.npy"))
    rng = np.random.default_rng(seed)
    out = np.empty((n, len(mean)), dtype=np.float32)
    root = np.linalg.cholesky(cov + 1e-9 * np.eye(len(mean)))
    for start in range(0, n, 100_000):
        z = rng.standard_normal((min(100_000, n - start), len(mean)))
        block = mean + z @ root.T
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_texts(n: int, seed: int, words: int = WORDS) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, VOCABULARY + 1, dtype=np.float64)
    p = ranks**-ZIPF
    ids = rng.choice(VOCABULARY, size=(n, words), p=p / p.sum())
    return [" ".join(f"w{i}" for i in row) for row in ids]


# ---------------------------------------------------------------- one measurement a process


def measure_step(n: int) -> dict:
    """The default recipe's query-tower step against a bank of ``n`` vectors."""
    import copy

    import torch

    from training.encoder import Encoder
    from training.losses import Batch, anchor_mse
    from training.model_dir import default_base_model
    from training.pairs import Pair
    from training.steps import embed_step, training_window
    from training.towers import CorpusInfoNCE

    torch.manual_seed(0)
    bank = synthetic_vectors(n, seed=1)
    texts = [f"d{i}" for i in range(n)]  # the bank's rows need names only
    base = Encoder.load(default_base_model(), device="cpu").eval()
    query = copy.deepcopy(base).train()
    queries, general = synthetic_texts(32, 2, 12), synthetic_texts(32, 3, 20)
    pairs = [Pair(q, texts[i * (n // 32)]) for i, q in enumerate(queries)]
    with torch.no_grad():
        teacher = base.embed_batch(general, "query")
    before = rss_mib()
    loss_fn = CorpusInfoNCE(texts, bank, pairs, temperature=0.05, device=query.device)
    optimizer = torch.optim.AdamW(query.parameters(), lr=1e-4)
    times = []
    for _ in range(4):
        started = time.perf_counter()
        with training_window(query, 128):
            q = embed_step(query, queries, "query")
            loss = loss_fn(q, None, Batch(pairs)) + 40.0 * anchor_mse(
                embed_step(query, general, "query"), teacher
            )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return {
        "step_s": round(statistics.median(times[1:]), 3),
        "step_peak_mib": round(peak_mib()),
        "step_added_mib": round(peak_mib() - before),
        "bank_mib": round(bank.nbytes / 2**20),
    }


def measure_index(n: int) -> dict:
    """Build, recall and latency of the embedded index over ``n`` synthetic documents."""
    from common.data import Doc
    from common.vectors import exact_search
    from vespa_app.embedded import EmbeddedIndex

    vectors = synthetic_vectors(n, seed=1)
    docs = [Doc(f"d{i}", "", t) for i, t in enumerate(synthetic_texts(n, seed=4))]
    before = rss_mib()
    with tempfile.TemporaryDirectory(dir=WORK) as tmp:
        started = time.perf_counter()
        index = EmbeddedIndex.build(
            Path(tmp) / "index", WORK / "export", docs, embeddings=vectors, progress=False
        )
        build_s = time.perf_counter() - started
        build_peak = peak_mib()
        disk = sum(f.stat().st_size for f in (Path(tmp) / "index").rglob("*") if f.is_file())
        queries = synthetic_vectors(QUERIES, seed=5)
        truth, _ = exact_search(queries, vectors, 10)
        found = np.stack([index.nearest(q, 100)[0][:10] for q in queries])
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth)])
        texts = synthetic_texts(QUERIES, seed=6, words=8)
        latency = {}
        for profile in ("semantic", "hybrid"):
            index.query(texts[0], profile)  # the first query loads the ONNX session
            times = []
            for text in texts:
                started = time.perf_counter()
                index.query(text, profile)
                times.append(1000 * (time.perf_counter() - started))
            latency[profile] = {
                "p50_ms": round(float(np.percentile(times, 50)), 1),
                "p99_ms": round(float(np.percentile(times, 99)), 1),
            }
    return {
        "index_s": round(build_s, 1),
        "index_added_mib": round(build_peak - before),
        "index_peak_mib": round(build_peak),
        "index_disk_mib": round(disk / 2**20),
        "recall@10": round(float(recall), 4),
        "hnsw": index.hnsw_settings.record(),
        "latency": latency,
    }


def measure_feed(n: int) -> dict:
    """Documents a second into the fault server (every fault off) at the feed's default concurrency."""
    sys.path.insert(0, str(REPO / "tests"))
    from fault_server import FaultServer

    from common.data import Doc
    from vespa_app.client.feed import feed

    docs = [Doc(f"d{i}", f"title {i}", t) for i, t in enumerate(synthetic_texts(n, seed=7))]
    with (
        FaultServer(every_429=0, every_503=0, every_slow=0, every_reset=0, every_drop=0) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        started = time.perf_counter()
        result = feed(server.url, docs, Path(tmp) / "ledger", Path(tmp) / "failed", progress=False)
        seconds = time.perf_counter() - started
    return {
        "feed_docs_s": round(result.acked / seconds),
        "feed_s": round(seconds, 1),
        "acked": result.acked,
        "failed": len(result.failed),
    }


# ---------------------------------------------------------------- the driver


def in_process(what: str, n: int) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--one", what, str(n)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TOKENIZERS_PARALLELISM="false"),
    )
    if done.returncode:
        sys.exit(f"{what} at {n}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def prepare() -> None:
    """The vectors' law and the export that embeds queries (the base model's), made once under build/scale."""
    WORK.mkdir(parents=True, exist_ok=True)
    if not (WORK / "cov.npy").exists():
        mean, cov = vector_law()
        np.save(WORK / "mean.npy", mean)
        np.save(WORK / "cov.npy", cov)
    if not (WORK / "export" / "manifest.json").exists():
        from exporter.onnx_export import export
        from training.model_dir import default_base_model

        export(default_base_model(), WORK / "export", progress=False)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [r["documents"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [
        ("seconds", [("query-tower step", "step_s"), ("index build", "index_s")]),
        (
            "memory (MiB)",
            [("query-tower step, peak", "step_peak_mib"), ("index build, added", "index_added_mib")],
        ),
        (
            "ms per query",
            [
                ("semantic p50", ("semantic", "p50_ms")),
                ("semantic p99", ("semantic", "p99_ms")),
                ("hybrid p50", ("hybrid", "p50_ms")),
                ("hybrid p99", ("hybrid", "p99_ms")),
            ],
        ),
        ("HNSW recall@10", [("against exact search", "recall@10")]),
    ]
    for ax, (label, series) in zip(axes, panels):
        for name, key in series:
            if isinstance(key, tuple):
                ys = [r["latency"][key[0]][key[1]] for r in rows]
            else:
                ys = [r[key] for r in rows]
            ax.plot(sizes, ys, marker="o", label=name)
        ax.set_xscale("log")
        if label != "HNSW recall@10":
            ax.set_yscale("log")
        ax.set_xlabel("documents")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Cost against corpus size (2 CPU cores, synthetic corpus; benchmarks/scale.py)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000,100000,1000000")
    p.add_argument("--feed-sizes", default="10000,100000")
    p.add_argument("--json", default=str(REPO / "docs" / "scale.json"))
    p.add_argument("--plot", default=str(REPO / "docs" / "scale.png"))
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--replot", action="store_true", help="draw --plot again from --json")
    args = p.parse_args()
    if args.replot:
        plot(json.loads(Path(args.json).read_text())["rows"], Path(args.plot))
        return
    if args.one:
        what, n = args.one[0], int(args.one[1])
        print(json.dumps({"step": measure_step, "index": measure_index, "feed": measure_feed}[what](n)))
        return
    prepare()
    rows = []
    for n in map(int, args.sizes.split(",")):
        row = {"documents": n, **in_process("step", n), **in_process("index", n)}
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    feeds = [
        {"documents": n, **in_process("feed", n)}
        for n in map(int, args.feed_sizes.split(",") if args.feed_sizes else [])
    ]
    result = {"machine": f"{os.cpu_count()} cores", "rows": rows, "feed": feeds}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, Path(args.plot))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
