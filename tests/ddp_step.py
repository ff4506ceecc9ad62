"""One training step on one global batch, run by ``torchrun --nproc-per-node N tests/ddp_step.py MODEL OUT``
(``test_distributed.py``): rank 0 saves the loss and every parameter's gradient after the all-reduce to OUT,
for two losses: in-batch InfoNCE with hard negatives and the anchor (the shared recipe), and the query tower's
InfoNCE against a document bank. Equal files for N = 1 and N = 2 mean the ranks together took the gradient one
process takes on the whole batch."""

import sys
from dataclasses import replace

import torch
from conftest import toy_pairs

from training import distributed
from training.encoder import Encoder
from training.loop import train_step
from training.losses import Anchored, CorpusInfoNCE, InfoNCE


def main(model: str, out: str) -> None:
    distributed.start()
    torch.manual_seed(0)
    pairs = toy_pairs(13)  # 13 pairs over 2 ranks: shares of 6 and 7
    negatives = [p.positive for p in toy_pairs(13, seed=1)]
    pairs = [
        replace(p, negatives=[negatives[i]] if i % 2 else []) for i, p in enumerate(pairs)
    ]  # 6, unevenly
    general = [p.query + " " + p.positive for p in toy_pairs(20, seed=2)]
    results = {}
    for name in ("infonce+anchor", "corpus"):
        encoder = Encoder.load(model).train()
        with torch.no_grad():
            teacher = torch.randn(len(general), encoder.dim)
        if name == "corpus":
            bank = [p.positive for p in pairs] + negatives
            vectors = torch.randn(len(bank), encoder.dim).numpy()
            loss_fn = CorpusInfoNCE(bank, vectors, pairs, temperature=0.05)
        else:
            loss_fn = Anchored(InfoNCE(0.05), "mse", general, teacher, weight=20.0, per_step=9, seed=3)
        loss = train_step(encoder, pairs, loss_fn, step=0)
        distributed.sum_gradients(encoder.parameters())
        results[name] = {
            "loss": loss,
            "grads": {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None},
        }
    if distributed.is_main():
        torch.save(results, out)
    distributed.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
