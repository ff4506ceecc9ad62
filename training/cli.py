"""`siamese train` and `siamese eval` (also `python -m training train|eval`).

Building the parser imports nothing heavy: torch and transformers load inside the commands that use them.
"""
from __future__ import annotations

import argparse
import sys

from common import cli
from common.bundled import SCIFACT, STSB_TEST
from common.cli import positive_int

from .config import add_config_args, config_overrides, recipe_config


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=str(SCIFACT),
                   help="pairs .jsonl, a BEIR folder (its train split) or an STS .csv (default: bundled SciFact)")
    p.add_argument("--split", default="train", help="qrels split of a BEIR folder (default: train)")
    p.add_argument("--base", default=None, help="local Hugging Face encoder directory (default: all-MiniLM-L6-v2)")
    p.add_argument("--out", default="runs/train", help="run directory; the model goes to OUT/model")
    p.add_argument("--full", action="store_true", help="the longer recipe (GPU or patience); default: CPU-sized")
    add_config_args(p)
    p.add_argument("--eval-data", help="a BEIR folder to evaluate on during training (a cheap candidate-pool nDCG)")
    p.add_argument("--eval-split", default="test")
    p.add_argument("--eval-queries", type=positive_int, default=50)
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed input lines and report them")


def train_config_from_args(args):
    from .model_dir import default_base_model

    return recipe_config(str(args.base or default_base_model()), args.out, args.full, **config_overrides(args))


def cmd_train(args) -> int:
    from .loop import train
    from .pairs import load_training_data

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
    p.add_argument("--data", default=str(SCIFACT), help="BEIR folder (default: bundled SciFact)")
    p.add_argument("--split", default="test")
    p.add_argument("--sts", nargs="?", const=str(STSB_TEST), default=None,
                   help="also report Spearman on an STS CSV (default file: bundled STS-B test)")
    p.add_argument("--no-bm25", dest="bm25", action="store_false")
    p.add_argument("--limit-queries", type=positive_int)
    p.add_argument("--max-length", type=positive_int, help="override every model's max length (a fair comparison)")
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed input lines and report them")


def resolve_models(names):
    from .model_dir import default_base_model

    names = names or ["base"]
    return [str(default_base_model()) if n == "base" else n for n in names]


def cmd_eval(args) -> int:
    from common.data import limit_queries, load_beir, read_sts_csv
    from common.metrics import format_table, write_json

    from .evaluate import evaluate

    beir = limit_queries(load_beir(args.data, args.split, skip_bad=args.skip_bad), args.limit_queries)
    sts_rows = read_sts_csv(args.sts) if args.sts else None
    rows = evaluate(resolve_models(args.models), beir, args.bm25, sts_rows, max_length=args.max_length)
    print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
    return 0


def add_commands(sub, with_eval: bool = True) -> None:
    p = sub.add_parser("train", help="fine-tune a bi-encoder (InfoNCE by default)")
    add_train_args(p)
    p.set_defaults(func=cmd_train)
    if not with_eval:  # the top-level command extends eval with search backends
        return
    p = sub.add_parser("eval", help="nDCG@10 / Recall@100 / MRR@10 and STS Spearman, models side by side")
    add_eval_args(p)
    p.set_defaults(func=cmd_eval)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    add_commands(parser.add_subparsers(dest="command"))
    return cli.run(parser, argv)
