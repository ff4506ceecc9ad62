"""Encoding throughput on this CPU: PyTorch fp32 vs ONNX Runtime fp32 vs int8 (dynamic, per-channel),
on short queries (SciFact claims) and 256-token passages (SciFact abstracts), each as a ratio to PyTorch fp32
measured in the same run (and ``encode_via_onnx``: ``Encoder.encode``'s path for many texts, the transformer
through a fused ONNX Runtime graph, ``training/onnx_encode.py``); plus int8 quality: cosine to fp32. Also ONNX
Runtime's transformer graph fusions (the optimisation optimum's ORTOptimizer applies; its fused ops are
contrib ops of a stock ONNX Runtime), with and without int8,
to show whether they earn a place in the exporter.

    python benchmarks/encode_throughput.py [--model DIR] [--n 256]

Exports the model to a temporary directory (the real exporter, parity checks included). Last line: JSON.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from common.bundled import SCIFACT as DEFAULT_DATA  # noqa: E402
from common.data import read_beir  # noqa: E402
from common.vectors import cosine  # noqa: E402
from exporter.onnx_export import export  # noqa: E402
from exporter.runtime import OnnxEmbedder  # noqa: E402
from training import onnx_encode  # noqa: E402
from training.encoder import default_base_model  # noqa: E402
from training.models import load_model  # noqa: E402


def rate(fn, texts, repeats=2):
    fn(texts[:16])  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def fuse(export_dir: Path, encoder) -> dict:
    """Fused attention / layer norm / GELU graphs (fp32 and int8) beside the export."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_encode.fuse(
        export_dir / "model-fp32.onnx", export_dir / "fused-fp32.onnx", encoder.transformer.config
    )
    quantize_dynamic(
        str(export_dir / "fused-fp32.onnx"),
        str(export_dir / "fused-int8.onnx"),
        per_channel=True,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Gemm"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return {"fp32": "fused-fp32.onnx", "int8": "fused-int8.onnx"}


def via_onnx(encoder, texts, kind, batch_size):
    """``Encoder.encode``'s path for many texts (``training/onnx_encode.py``), here on any number of them."""
    saved, onnx_encode.MIN_TEXTS = onnx_encode.MIN_TEXTS, 0
    try:
        return onnx_encode.onnx_encode(encoder, encoder.with_prefix(texts, kind), batch_size, False)
    finally:
        onnx_encode.MIN_TEXTS = saved


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default=None, help="model directory (default: the base model)")
    p.add_argument("--n", type=int, default=256, help="texts per measurement")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    model = args.model or default_base_model()
    beir = read_beir(DEFAULT_DATA, "train")
    queries = list(beir.queries.values())[: args.n]
    passages = [d.passage for d in beir.corpus.values()][: args.n]

    with tempfile.TemporaryDirectory() as tmp:
        encoder = load_model(
            model, device="cpu", max_length=256
        ).eval()  # a CPU benchmark: ONNX Runtime beside it
        model_256 = Path(tmp) / "model256"
        encoder.save(
            model_256
        )  # the same weights with max length 256, so every system sees 256-token passages
        exp = export(model_256, Path(tmp) / "export", quantize="int8", progress=False)
        fused_files = fuse(exp, encoder)
        fp32 = OnnxEmbedder(exp, "model-fp32.onnx")
        int8 = OnnxEmbedder(exp, "model.onnx")
        # Padded batches of the int8 graph: faster, but its activation scales then span the batch, so the
        # vectors are not Vespa's (one text per call); measured to show what exactness costs.
        int8_batched = OnnxEmbedder(exp, "model.onnx", one_text_per_call=False)
        fused = {
            name: OnnxEmbedder(exp, f, one_text_per_call=name == "int8") for name, f in fused_files.items()
        }
        systems = {
            "pytorch_fp32": lambda kind: lambda t: encoder.encode(t, kind, batch_size=args.batch_size),
            "encode_via_onnx": lambda kind: lambda t: via_onnx(encoder, t, kind, args.batch_size),
            "onnx_fp32": lambda kind: lambda t: fp32.embed(t, kind, batch_size=args.batch_size),
            "onnx_int8": lambda kind: lambda t: int8.embed(t, kind),  # one text per call (see runtime.py)
            "onnx_int8_batched": lambda kind: (
                lambda t: int8_batched.embed(t, kind, batch_size=args.batch_size)
            ),
            "onnx_fused_fp32": lambda kind: (
                lambda t: fused["fp32"].embed(t, kind, batch_size=args.batch_size)
            ),
            "onnx_fused_int8": lambda kind: lambda t: fused["int8"].embed(t, kind),
        }
        results = {"threads": torch.get_num_threads(), "n": args.n, "passage_tokens": 256}
        for name, texts, kind in (("queries", queries, "query"), ("passages", passages, "passage")):
            rates = {s: rate(make(kind), texts) for s, make in systems.items()}
            results[name] = {
                s: {"per_s": round(r, 1), "x_pytorch": round(r / rates["pytorch_fp32"], 2)}
                for s, r in rates.items()
            }
        int8_vectors = int8.embed(passages, "passage")
        cos = cosine(fp32.embed(passages, "passage"), int8_vectors)
        results["int8_cosine_to_fp32"] = {
            "mean": round(float(cos.mean()), 5),
            "min": round(float(cos.min()), 5),
        }
        cos = cosine(int8_batched.embed(passages, "passage", batch_size=args.batch_size), int8_vectors)
        results["int8_batched_cosine_to_one_per_call"] = {
            "mean": round(float(cos.mean()), 5),
            "min": round(float(cos.min()), 5),
        }
        results["int8_bytes"] = (exp / "model.onnx").stat().st_size
        results["fp32_bytes"] = (exp / "model-fp32.onnx").stat().st_size

    print(f"{'':10} {'system':16} {'texts/s':>9} {'× PyTorch':>10}")
    for name in ("queries", "passages"):
        for s, r in results[name].items():
            print(f"{name:10} {s:16} {r['per_s']:9.1f} {r['x_pytorch']:10.2f}")
    for key in ("int8_cosine_to_fp32", "int8_batched_cosine_to_one_per_call"):
        print(f"{key}: mean {results[key]['mean']}, min {results[key]['min']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
