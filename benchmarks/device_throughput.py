"""Throughput on the chosen device: corpus encoding at 256 tokens (fp32 and the half precision encode() keeps,
with the cosine between them) and training tokens/s of each tower, as `siamese train` runs them.

    python benchmarks/device_throughput.py [--device auto] [--n 4096] [--steps 20] [--towers shared,query,...]

Encoding: SciFact abstracts (repeated up to --n), through ``Encoder.encode`` (on a GPU: batches fitted to its
memory, fp16 autocast where the first batch meets the bound, ``training/accelerator_encode.py``). The share of
the chip's peak counts 2 FLOP per weight per token plus the attention products (4·L·d·T per token), over the
datasheet's dense fp16/bf16 rate (--peak-tflops; H100 and H200: 989). Training: ``training.loop.train`` with
--max-steps on SciFact train, default recipe per tower (τ fixed at 0.05 so the base's margin is not measured);
tokens/s counts the texts each step's trained towers embed. Last line: JSON.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import device as devices  # noqa: E402
from common.bundled import SCIFACT  # noqa: E402
from common.data import read_beir  # noqa: E402
from training.encoder import Encoder, default_base_model  # noqa: E402


def synchronize():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def flop_per_text(encoder, tokens: int) -> float:
    hf = encoder.transformer.config
    weights = sum(p.numel() for n, p in encoder.transformer.named_parameters() if "embeddings" not in n)
    return tokens * (2 * weights + 4 * hf.num_hidden_layers * hf.hidden_size * tokens)


def encoding(base: str, n: int, peak_tflops: float) -> dict:
    passages = [d.passage for d in read_beir(SCIFACT, "train").corpus.values()]
    texts = (passages * (n // len(passages) + 1))[:n]
    encoder = Encoder.load(base, max_length=256).eval()
    lengths = [
        len(ids) for ids in encoder.tokenizer(texts[:2000], truncation=True, max_length=256)["input_ids"]
    ]
    flop = float(np.mean([flop_per_text(encoder, t) for t in lengths]))
    out = {"device": str(encoder.device), "texts": n, "mean_tokens": round(float(np.mean(lengths)), 1)}
    vectors = {}
    for name, half in (("fp32", "0"), ("half", "1")):
        os.environ["SIAMESE_HALF_ENCODE"] = half
        encoder.encode(texts[:512])  # warm-up: kernels, the allocator, the fp16 check
        synchronize()
        started = time.perf_counter()
        vectors[name] = encoder.encode(texts)
        synchronize()
        seconds = time.perf_counter() - started
        out[name] = {
            "passages_s": round(n / seconds, 1),
            "tflops": round(n * flop / seconds / 1e12, 2),
            "share_of_peak": round(n * flop / seconds / 1e12 / peak_tflops, 4),
        }
    os.environ.pop("SIAMESE_HALF_ENCODE")
    a, b = vectors["fp32"], vectors["half"]
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    out["half_cosine_to_fp32"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    return out


def training(base: str, towers: list[str], steps: int) -> dict:
    from training.config import recipe_config
    from training.loop import train
    from training.pairs import load_training_data

    pairs, corpus = load_training_data(SCIFACT, "train")
    out = {}
    for tower in towers:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = recipe_config(base, str(Path(tmp) / tower), tower=tower, max_steps=steps, temperature=0.05)
            model_dir = train(cfg, pairs, corpus, progress=False)
            metrics = json.loads((model_dir / "train_metrics.json").read_text())
        out[tower] = {
            "tokens_s": metrics["tokens_per_s"],
            "pairs_s": metrics["pairs_per_s"],
            "seconds_per_step": round(metrics["wall_s"] / metrics["steps"], 3),
        }
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="auto")
    p.add_argument("--base", default=None)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--towers", default="shared,query,adapter,separate")
    p.add_argument("--peak-tflops", type=float, default=989.0)
    args = p.parse_args()
    devices.use(args.device)
    base = args.base or default_base_model()
    result = {
        "device": torch.cuda.get_device_name()
        if devices.current().type == "cuda"
        else str(devices.current()),
        "encode_256": encoding(base, args.n, args.peak_tflops),
        "train": training(base, args.towers.split(","), args.steps),
    }
    enc = result["encode_256"]
    print(
        f"{result['device']}: encode 256 tokens fp32 {enc['fp32']['passages_s']}/s, half "
        f"{enc['half']['passages_s']}/s "
        f"({enc['half']['share_of_peak']:.1%} of {args.peak_tflops:g} TFLOP/s), cosine min "
        f"{enc['half_cosine_to_fp32']['min']}"
    )
    for tower, row in result["train"].items():
        print(f"train {tower}: {row['tokens_s']} tokens/s, {row['seconds_per_step']} s/step")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
