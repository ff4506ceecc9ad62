"""Training throughput: pairs/s and tokens/s of the real training step (forward, InfoNCE, backward, AdamW).

    python benchmarks/train_throughput.py [--batch-size 32] [--max-length 128] [--steps 8] [--base DIR]

On a GPU it uses bf16 autocast, as training does (the device: --device, as every command). Last line: JSON.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from common import device as devices  # noqa: E402
from common.bundled import SCIFACT as DEFAULT_DATA  # noqa: E402
from siamese.evaluation import model_label  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.encoder import Encoder, default_base_model  # noqa: E402
from training.loop import train_step  # noqa: E402
from training.losses import make_loss  # noqa: E402
from training.pairs import load_pairs  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--grad-cache-chunk", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (common/device.py)")
    args = p.parse_args()

    devices.use(args.device)
    base = args.base or default_base_model()
    encoder = Encoder.load(base, max_length=args.max_length).train()
    device = encoder.device.type
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=1e-5)
    pairs, _ = load_pairs(DEFAULT_DATA)
    loss_fn = make_loss(
        TrainConfig(base=str(base), out="-", anchor="none", temperature=0.05)
    )  # the contrastive step alone
    n_pairs = n_tokens = 0
    elapsed = 0.0
    for step in range(args.warmup + args.steps):
        batch = [pairs[(step * args.batch_size + i) % len(pairs)] for i in range(args.batch_size)]
        queries, passages = [b.query for b in batch], [b.positive for b in batch]
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        train_step(encoder, batch, loss_fn, args.grad_cache_chunk)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            elapsed += time.perf_counter() - started
            n_pairs += len(batch)
            n_tokens += sum(
                len(x)
                for x in encoder.tokenizer(queries + passages, truncation=True, max_length=args.max_length)[
                    "input_ids"
                ]
            )
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{torch.get_num_threads()}",
        "model": model_label(base),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "steps": args.steps,
        "pairs_per_s": round(n_pairs / elapsed, 2),
        "tokens_per_s": round(n_tokens / elapsed, 1),
        "seconds_per_step": round(elapsed / args.steps, 3),
    }
    print(
        f"{result['device']}: {result['pairs_per_s']} pairs/s, {result['tokens_per_s']} tokens/s "
        f"(batch {args.batch_size}, max length {args.max_length}, {result['seconds_per_step']} s/step)"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
