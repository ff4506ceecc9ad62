"""`siamese train` and `siamese eval` (also `python -m training train|eval`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .data import DataError, Skipped, load_pairs
from .recipes import RECIPES

BUNDLED = Path(__file__).parent / "data"
DEFAULT_DATA = BUNDLED / "scifact"
DEFAULT_STS = BUNDLED / "stsb" / "stsb-en-test.csv"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=str(DEFAULT_DATA),
                   help="pairs .jsonl, a BEIR folder (its train split) or an STS .csv (default: bundled SciFact)")
    p.add_argument("--split", default="train", help="qrels split of a BEIR folder (default: train)")
    p.add_argument("--base", default=None, help="local Hugging Face encoder directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--out", default="runs/train", help="run directory; the model goes to OUT/model")
    p.add_argument("--full", action="store_true", help="the longer recipe (GPU or patience); default: CPU-sized")
    p.add_argument("--epochs", type=positive_int)
    p.add_argument("--max-steps", type=non_negative_int)
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--lr", type=positive_float)
    p.add_argument("--max-length", type=positive_int)
    p.add_argument("--pooling", choices=("mean", "cls", "attention"))
    p.add_argument("--no-normalize", dest="normalize", action="store_false", default=None)
    p.add_argument("--temperature", type=positive_float, help="InfoNCE temperature τ (default 0.05)")
    p.add_argument("--symmetric", action="store_true", default=None, help="add the passage→query loss term")
    p.add_argument("--query-prefix")
    p.add_argument("--passage-prefix")
    p.add_argument("--hard-negatives", type=non_negative_int, help="BM25-mined negatives per pair (0: none)")
    p.add_argument("--grad-cache-chunk", type=non_negative_int,
                   help="gradient caching chunk size: batches larger than memory allows (0: off)")
    p.add_argument("--checkpoint-every", type=non_negative_int, help="steps between checkpoints (0: none)")
    p.add_argument("--eval-data", help="a BEIR folder to evaluate on during training (a cheap candidate-pool nDCG)")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eval-every", type=non_negative_int, help="steps between evaluations (needs --eval-data)")
    p.add_argument("--eval-queries", type=positive_int, default=50)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--seed", type=int)
    p.add_argument("--skip-bad", action="store_true", help="skip malformed input lines and report them")


def train_config_from_args(args):
    from .encoder import default_base_model
    from .loop import TrainConfig

    values = dict(RECIPES["full" if args.full else "default"])
    for key in ("epochs", "max_steps", "batch_size", "lr", "max_length", "pooling", "normalize", "temperature",
                "symmetric", "query_prefix", "passage_prefix", "hard_negatives", "grad_cache_chunk",
                "checkpoint_every", "eval_every", "seed"):
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    cfg = TrainConfig(base=str(args.base or default_base_model()), out=args.out, **values)
    cfg.check()
    return cfg


def load_training_data(data, split="train", skip_bad=False):
    """Pairs plus the texts to mine negatives from (a BEIR corpus, if the data has one)."""
    skipped = Skipped()
    pairs, corpus = load_pairs(data, split=split, skip_bad=skip_bad, skipped=skipped)
    if skip_bad:
        print(f"{data}: {skipped.summary()}", file=sys.stderr)
    return pairs, ([d.passage for d in corpus.values()] if corpus else None)


def cmd_train(args) -> int:
    from .loop import train

    cfg = train_config_from_args(args)
    eval_fn = None
    if args.eval_data:
        from .evaluate import during_training

        eval_fn = during_training(args.eval_data, args.eval_split, args.eval_queries)
        cfg.eval_every = cfg.eval_every or 100
    pairs, pool = load_training_data(args.data, args.split, args.skip_bad)
    print(f"training on {len(pairs)} pairs from {args.data}; base {cfg.base}", file=sys.stderr)
    model_dir = train(cfg, pairs, pool, resume=args.resume, eval_fn=eval_fn)
    print(model_dir)
    return 0


def add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", nargs="*", default=None,
                   help="model directories to compare (default: the base model); 'base' names the default base")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="BEIR folder (default: bundled SciFact)")
    p.add_argument("--split", default="test")
    p.add_argument("--sts", nargs="?", const=str(DEFAULT_STS), default=None,
                   help="also report Spearman on an STS CSV (default file: bundled STS-B test)")
    p.add_argument("--no-bm25", dest="bm25", action="store_false")
    p.add_argument("--limit-queries", type=positive_int)
    p.add_argument("--max-length", type=positive_int, help="override every model's max length (a fair comparison)")
    p.add_argument("--json", help="write the rows as JSON here")


def resolve_models(names):
    from .encoder import default_base_model

    names = names or ["base"]
    return [str(default_base_model()) if n == "base" else n for n in names]


def cmd_eval(args) -> int:
    from .evaluate import evaluate, format_table, write_json

    rows = evaluate(resolve_models(args.models), args.data, args.split, args.bm25, args.sts, args.limit_queries,
                    max_length=args.max_length)
    print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
    return 0


def add_commands(sub, with_eval: bool = True) -> None:
    p = sub.add_parser("train", help="fine-tune a bi-encoder with InfoNCE")
    add_train_args(p)
    p.set_defaults(func=cmd_train)
    if not with_eval:  # the top-level command extends eval with search backends
        return
    p = sub.add_parser("eval", help="nDCG@10 / Recall@100 / MRR@10 and STS Spearman, models side by side")
    add_eval_args(p)
    p.set_defaults(func=cmd_eval)


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse, dispatch, and turn the errors a user can fix into one clear line and exit code 2."""
    from .encoder import ModelDirError

    errors = (DataError, ModelDirError, FileExistsError, FileNotFoundError, ValueError, AssertionError,
              RuntimeError, OSError)

    args = parser.parse_args(argv)
    if not getattr(args, "func", None):  # a command group without its subcommand
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except errors as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    add_commands(parser.add_subparsers(dest="command"))
    return run(parser, argv)
