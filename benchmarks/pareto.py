"""Quality against speed and memory: distilled students × Matryoshka prefixes.

    python benchmarks/pareto.py [--teacher base] [--layers 6 4 3 2] [--dims 384 256 128 64]
                                [--out runs/pareto] [--max-texts 20000] [--epochs 1] [--matryoshka]
                                [--hidden 1]

For each number of layers (the teacher's own count is the teacher; fewer: a student made by
`siamese distill`, built into OUT once and reused) and each served prefix size:
- nDCG@10 on SciFact test (all, unseen: by the default training data's positives) and the guards' report half,
  every model at ``--max-length`` tokens (128: what the students are distilled at);
- encode rate as Vespa's embedder runs it (ONNX Runtime, int8, one text per call, SciFact claims), as a ratio
  to the teacher's fp32 graph timed in the same run, and to the teacher's int8 graph (prefixes cost the same
  to encode as the whole vector);
- bytes per document for the HNSW field: float, bfloat16, binarized (dim/8).

With ``--matryoshka`` the students are distilled over the prefixes too (``--matryoshka`` of `siamese
distill`). Rows are kept in OUT/rows.json per point, so a re-run measures only what is missing. Prints a
Markdown table, writes OUT/pareto.png (nDCG@10 against encode rate,
one line per prefix size), and the rows as JSON last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.bundled import GUARDS, SCIFACT  # noqa: E402
from common.data import load_beir, read_beir  # noqa: E402
from common.metrics import positives_of  # noqa: E402
from siamese.evaluation import evaluate
from training.evaluate import guard_sets  # noqa: E402
from training.model_dir import default_base_model  # noqa: E402


def student(
    teacher: str,
    layers: int,
    out: Path,
    max_texts: int,
    epochs: int,
    matryoshka: str,
    max_length: int,
    hidden: float,
) -> str:
    from training.distill import DistillConfig, distill, distill_texts
    from training.pairs import load_training_data

    path = out / (f"student-{layers}" + ("-mrl" if matryoshka else ""))
    if not path.exists():
        pairs, corpus = load_training_data(SCIFACT)
        distill(
            DistillConfig(
                teacher,
                str(path),
                layers,
                max_texts=max_texts,
                epochs=epochs,
                matryoshka=matryoshka,
                max_length=max_length,
                hidden=hidden,
            ),
            distill_texts(corpus, pairs, None),
        )
    return str(path)


def encode_rate(model: str, out: Path, texts: list[str]) -> dict:
    """Texts per second, one text per call: the int8 graph Vespa serves and its fp32 twin."""
    from exporter.onnx_export import export
    from exporter.runtime import OnnxEmbedder

    export_dir = out / f"export-{Path(model).name}"
    if not export_dir.exists():
        export(model, export_dir, quantize="int8", progress=False)
    rates = {}
    for name, file in (("int8", "model.onnx"), ("fp32", "model-fp32.onnx")):
        embedder = OnnxEmbedder(export_dir, file, threads=1, one_text_per_call=True)
        for t in texts[:16]:
            embedder.embed_one(t)
        started = time.perf_counter()
        for t in texts:
            embedder.embed_one(t)
        rates[name] = len(texts) / (time.perf_counter() - started)
    return rates


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for dim in sorted({r["dim"] for r in rows}, reverse=True):
        points = sorted((r["int8_speedup"], r["ndcg@10"], r["layers"]) for r in rows if r["dim"] == dim)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{dim} dims")
        for x, y, layers in points:
            ax.annotate(f"{layers}L", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(
        xlabel="int8 encode rate, one text per call (× the 6-layer fp32 graph)",
        ylabel="nDCG@10, SciFact",
        title="students (layers) × served prefix (dims)",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="base")
    parser.add_argument("--layers", nargs="*", type=int, default=[6, 4, 3, 2])
    parser.add_argument("--dims", nargs="*", type=int, default=[384, 256, 128, 64])
    parser.add_argument("--out", default="runs/pareto")
    parser.add_argument("--max-texts", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--matryoshka", action="store_true", help="distil the students over the prefixes too")
    parser.add_argument(
        "--hidden", type=float, default=1.0, help="`siamese distill --hidden`: the per-token term"
    )
    parser.add_argument("--rate-texts", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=128, help="tokens per text, every model alike")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = str(default_base_model()) if args.teacher == "base" else args.teacher
    from transformers import AutoConfig

    full_layers = AutoConfig.from_pretrained(teacher).num_hidden_layers
    mrl = ",".join(map(str, args.dims)) if args.matryoshka else ""
    beir, guards = load_beir(SCIFACT, "test"), guard_sets(GUARDS)
    from training.pairs import load_pairs

    positives = positives_of(load_pairs(SCIFACT)[0])
    claims = list(read_beir(SCIFACT, "test").queries.values())[: args.rate_texts]
    saved = out / "rows.json"
    rows = {r["key"]: r for r in json.loads(saved.read_text())} if saved.exists() else {}
    # Rates are timed afresh each run (quality is kept): a ratio only means something within one run.
    teacher_rates = encode_rate(teacher, out, claims)
    for layers in args.layers:
        model = (
            teacher
            if layers == full_layers
            else student(
                teacher, layers, out, args.max_texts, args.epochs, mrl, args.max_length, hidden=args.hidden
            )
        )
        rates = encode_rate(model, out, claims)
        for dim in args.dims:
            key = f"{layers}-{dim}" + ("-mrl" if mrl and layers != full_layers else "")
            if key not in rows:
                rows[key] = evaluate(
                    [model],
                    beir,
                    bm25=False,
                    guards=guards,
                    positives=positives,
                    dim=dim,
                    max_length=args.max_length,
                    progress=False,
                )[0]
            rows[key].update(
                key=key,
                layers=layers,
                dim=dim,
                int8_per_s=round(rates["int8"], 1),
                fp32_per_s=round(rates["fp32"], 1),
                int8_speedup=round(rates["int8"] / teacher_rates["fp32"], 2),
                int8_vs_teacher_int8=round(rates["int8"] / teacher_rates["int8"], 2),
                bytes_float=4 * dim,
                bytes_bfloat16=2 * dim,
                bytes_binarized=dim // 8,
            )
            saved.write_text(json.dumps(list(rows.values()), indent=2))
    chosen = [r for r in rows.values() if r["layers"] in args.layers and r["dim"] in args.dims]
    top = next((r for r in chosen if r["layers"] == full_layers and r["dim"] == max(args.dims)), None)
    cols = [
        "layers",
        "dim",
        "ndcg@10",
        "ndcg@10 unseen",
        *sorted(k for k in chosen[0] if k.startswith("guard ")),
        "int8_speedup",
        "int8_vs_teacher_int8",
        "bytes_float",
        "bytes_bfloat16",
        "bytes_binarized",
    ]
    print("| " + " | ".join(cols) + " | % of teacher |\n" + "|---" * (len(cols) + 1) + "|")
    for r in sorted(chosen, key=lambda r: (-r["layers"], -r["dim"])):
        share = f"{100 * r['ndcg@10'] / top['ndcg@10']:.1f} %" if top else "–"
        print(
            "| "
            + " | ".join(
                f"{r[c]:.4f}" if isinstance(r[c], float) and not c.startswith("int8") else str(r[c])
                for c in cols
            )
            + f" | {share} |"
        )
    plot(chosen, out / "pareto.png")
    print(json.dumps(chosen))


if __name__ == "__main__":
    main()
