"""`siamese train`, `distill`, `merge` and `import-onnx` (also `python -m training ...`); `siamese eval` and
`run` are the product floor's (`siamese/cli.py`, over ``siamese.evaluation.compare``).

Building the parser imports nothing heavy: torch and transformers load inside the commands that use them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import cli
from common.bundled import GUARDS, SCIFACT
from common.cli import add_groups, alpha_value, arg_group, positive_int
from common.device import add_device_arg
from common.errors import ConfigError

from .config import TrainConfig, add_config_args, check_given, config_overrides, recipe_config
from .held_out import too_few
from .model_dir import TRAIN_CONFIG_FILE, default_base_model, resolve_models
from .pairs import load_training_data
from .train_log import check_report_to, report_training


def add_train_args(p: argparse.ArgumentParser) -> None:
    add_groups(p)
    data, recipe, evaluation, output = (
        arg_group(p, title) for title in ("data", "base and recipe", "evaluation", "output")
    )
    data.add_argument(
        "--data",
        default=None,
        help="pairs .jsonl, a BEIR folder (its train split) or an STS .csv (default: bundled SciFact; "
        "with --resume, the run's own)",
    )
    data.add_argument("--split", default="train", help="qrels split of a BEIR folder (default: train)")
    data.add_argument("--skip-bad", action="store_true", help="skip malformed input lines and report them")
    recipe.add_argument(
        "--base",
        default=None,
        help="a local Hugging Face encoder directory or a hub id such as BAAI/bge-small-en-v1.5 "
        "(default: all-MiniLM-L6-v2); its pooling, window and prompts become the defaults",
    )
    recipe.add_argument(
        "--full", action="store_true", help="the longer recipe (GPU or patience); default: CPU-sized"
    )
    recipe.add_argument(
        "--recipe",
        choices=("fixed", "auto"),
        default=None,
        help="auto (default): the base model, the query tower (its length chosen along training) and the "
        "query tower merged back are scored on held-out training queries; a trained one is written to "
        "OUT/model only where it beats the base beyond noise and falls on no guard beyond noise, else the "
        "base is (training/recipe.py) | fixed: the default recipe (or --full's) as it is",
    )
    recipe.add_argument(
        "--guard",
        action="append",
        default=[],
        metavar="BEIR_DIR",
        help="--recipe auto: a guard set of your own beside the bundled CISI and MedQuAD (repeatable)",
    )
    recipe.add_argument("--no-guards", action="store_true", help="--recipe auto: without the bundled guards")
    recipe.add_argument(
        "--candidates",
        metavar="NAMES",
        help="--recipe auto's candidates, by name (base, query, query-merged, shared, shared-merged), "
        "'cheap' or 'all' (default: all where a GPU trains, the cheap ones on a CPU; the base is always one)",
    )
    add_config_args(p)
    evaluation.add_argument(
        "--eval-data", help="a BEIR folder to evaluate on during training (a cheap candidate-pool nDCG)"
    )
    evaluation.add_argument("--eval-split", default="test")
    evaluation.add_argument("--eval-queries", type=positive_int, default=50)
    output.add_argument("--out", default="runs/train", help="run directory; the model goes to OUT/model")
    output.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    output.add_argument(
        "--report-to",
        choices=("tensorboard", "none"),
        default=None,
        help="where the training curve goes besides train_metrics.json and the model card: tensorboard "
        "(OUT/tensorboard; default where TensorBoard is installed) or none",
    )
    output.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="train across N processes on this machine (torchrun: one GPU each, or gloo on CPUs); "
        "the batch is the global one, each process embeds its share (training/distributed.py)",
    )


def train_config_from_args(args):
    """The recipe with the flags given on top; with --resume, the run's own configuration with them on top (so
    that only what the user changed is compared with what the run started on)."""
    from dataclasses import replace
    from pathlib import Path

    saved = Path(args.out) / TRAIN_CONFIG_FILE
    if args.resume and saved.exists():
        cfg = TrainConfig.load(saved)
        asked = config_overrides(args) | ({"base": args.base} if args.base else {})
        cfg = replace(cfg, **asked, data=str(args.data) if args.data else (cfg.data or str(SCIFACT)))
        cfg.check()
        check_given(cfg, set(asked))
        return cfg
    return recipe_config(
        str(args.base or default_base_model()),
        args.out,
        args.full,
        data=str(args.data or SCIFACT),
        **config_overrides(args),
    )


def launch(nproc: int, argv: list[str]) -> int:
    """``python -m training ARGV`` as ``nproc`` processes under torchrun (one machine; several machines: run
    torchrun yourself, docs/hardware.md); returns its exit code."""
    import os
    import subprocess

    if os.environ.get("WORLD_SIZE"):
        raise ConfigError(
            "--nproc starts torchrun; this process is already one of a torchrun job: drop --nproc"
        )
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "training",
        *argv,
    ]
    print(
        f"launching {nproc} processes: torchrun --standalone --nproc-per-node={nproc} -m training "
        + " ".join(argv),
        file=sys.stderr,
    )
    return subprocess.run(command).returncode


def without_flag(argv: list[str], flag: str) -> list[str]:
    """``argv`` less ``flag VALUE`` / ``flag=VALUE``."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == flag:
            skip = True
        elif not item.startswith(flag + "="):
            out.append(item)
    return out


def cmd_train(args) -> int:
    from .loop import train

    if args.nproc > 1:
        return launch(args.nproc, without_flag(args.argv, "--nproc"))
    from .recipe import resolve

    asked = args.recipe
    args.recipe, why = resolve(args.recipe, _fixed_by(args))
    if args.recipe == "auto":
        pairs, pool = load_training_data(str(args.data or SCIFACT), args.split, args.skip_bad)
        reason = too_few(pairs)
        if not reason or asked:
            return train_auto(args, why, pairs, pool)
        print(f"recipe: fixed ({reason}): nothing is compared with the base model", file=sys.stderr)
    cfg = train_config_from_args(args)
    report_to = check_report_to(args.report_to)
    eval_fn = None
    if cfg.eval_every and not args.eval_data:
        raise ConfigError(
            "--eval-every evaluates during training on --eval-data: give --eval-data BEIR_DIR too"
        )
    if args.eval_data:
        from .evaluate import during_training

        eval_fn = during_training(args.eval_data, args.eval_split, args.eval_queries)
        cfg.eval_every = cfg.eval_every or 100
    pairs, pool = load_training_data(cfg.data, args.split, args.skip_bad)
    print(f"training on {len(pairs)} pairs from {cfg.data}; base {cfg.base}", file=sys.stderr)
    model_dir = train(cfg, pairs, pool, resume=args.resume, eval_fn=eval_fn)
    from . import distributed

    if distributed.is_main() and report_training(model_dir, report_to):
        print(
            f"training curve for TensorBoard: tensorboard --logdir {Path(cfg.out) / 'tensorboard'}",
            file=sys.stderr,
        )
    print(model_dir)
    return 0


def _fixed_by(args) -> str | None:
    """What the user chose that `--recipe auto` would choose, or a run auto cannot be: the recipe is then
    fixed, as asked."""
    import os

    if args.tower:
        return "--tower was given"
    if args.nproc > 1 or os.environ.get("WORLD_SIZE"):
        return "training across processes (--nproc, torchrun) runs the recipe as it is"
    if args.eval_data:
        return "--eval-data evaluates one training run"
    if args.resume and (Path(args.out) / TRAIN_CONFIG_FILE).exists():
        return "--resume continues the fixed run in --out"
    base = str(args.base or default_base_model())
    tower = recipe_config(base, args.out, args.full, **config_overrides(args)).tower
    return (
        f"your settings train {tower} weights (--full, --late-interaction and the like)"
        if tower != "query"
        else None
    )


def train_auto(args, why: str, pairs, pool) -> int:
    """`siamese train --recipe auto`: the candidates on held-out training queries, the one shipped in
    OUT/model (the base model where no trained one beat it beyond noise)."""
    from .recipe import candidate_configs, parse_candidates, select_recipe

    out = Path(args.out)
    clash = [
        flag
        for flag, given in (
            ("--tower", args.tower),
            ("--nproc", args.nproc > 1),
            ("--eval-data", args.eval_data),
        )
        if given
    ]
    if clash:
        raise ConfigError(
            f"--recipe auto chooses the tower on held-out queries in one process: drop {' and '.join(clash)}"
            ", or drop --recipe auto"
        )
    if out.exists() and any(out.iterdir()) and not args.resume:
        raise ConfigError(
            f"{out} already holds a training run. Use --resume to continue it (finished candidates are "
            "kept), or choose another --out."
        )
    base = str(args.base or default_base_model())
    data = str(args.data or SCIFACT)
    guards = [*(() if args.no_guards else GUARDS), *args.guard]
    configs = candidate_configs(base, args.full, data, config_overrides(args))
    candidates = parse_candidates(args.candidates)
    print(f"--recipe auto ({why}): {len(pairs)} pairs from {data}; base {base}", file=sys.stderr)
    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    model_dir, _ = select_recipe(configs, pairs, pool, out, guards, base, candidates, say=say)
    print(model_dir)
    return 0


def cmd_merge(args) -> int:

    from .merge import merge

    alpha = args.alpha
    guards = [*(() if args.no_guards else GUARDS), *args.guard]
    out = merge(
        resolve_models([args.base])[0],
        args.tuned,
        args.out,
        alpha,
        guards,
        force=args.force,
        say=lambda line: print(line, file=sys.stderr),
    )
    print(out)
    return 0


def cmd_distill(args) -> int:
    from .distill import DistillConfig, distill, distill_texts, taught_texts

    teacher = resolve_models([args.teacher])[0]
    cfg = DistillConfig(
        teacher,
        args.out,
        args.layers,
        pick=args.pick,
        loss=args.loss,
        contrastive=args.contrastive,
        hidden=args.hidden,
        matryoshka=args.matryoshka,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_length=args.max_length,
        max_texts=args.max_texts,
    )
    pairs, corpus = load_training_data(args.data, args.split, args.skip_bad)
    texts = distill_texts(corpus, pairs, args.general)
    taught = len(taught_texts(texts, cfg.max_texts, cfg.seed))  # what distill() keeps: distinct, sampled
    print(f"distilling {teacher} into {args.layers} layers ({args.pick}) on {taught} texts", file=sys.stderr)
    print(distill(cfg, texts, pairs, force=args.force))
    return 0


def cmd_import_onnx(args) -> int:
    from .onnx_import import import_onnx

    out, proof = import_onnx(
        args.onnx,
        args.tokenizer,
        args.out,
        pooling=args.pooling,
        normalize=args.normalize,
        max_length=args.max_length,
        query_prefix=args.query_prefix,
        document_prefix=args.document_prefix,
        source=args.source,
        force=args.force,
    )
    print(
        f"{proof['heads']} attention heads; last_hidden_state max |Δ| {proof['max_abs_diff']:.2e} against "
        f"the ONNX graph on {proof['texts']} texts (bound {proof['tolerance']:g})",
        file=sys.stderr,
    )
    print(out)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "import-onnx",
        help="a trainable model directory rebuilt from a BERT-family ONNX encoder graph, proven equal to it",
    )
    p.add_argument(
        "onnx",
        help="the encoder graph (inputs input_ids, attention_mask[, token_type_ids]; output "
        "last_hidden_state), e.g. a transformers.js / Xenova export",
    )
    p.add_argument("tokenizer", help="its tokenizer.json")
    p.add_argument("out", help="where the model directory goes")
    p.add_argument(
        "--pooling", default="mean", choices=("mean", "cls"), help="how the model pools (bge: cls)"
    )
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-length", type=positive_int, help="its window (default: its positions, at most 512)")
    p.add_argument(
        "--query-prefix",
        default="",
        help="its query instruction, e.g. bge-small-en-v1.5's \"Represent "
        'this sentence for searching relevant passages: "',
    )
    p.add_argument("--document-prefix", "--passage-prefix", dest="document_prefix", default="")
    p.add_argument("--source", default="", help="where the graph comes from (recorded in the model card)")
    p.add_argument("--force", action="store_true", help="replace OUT when it holds a previous model")
    add_device_arg(p)
    p.set_defaults(func=cmd_import_onnx)
    p = sub.add_parser(
        "distill", help="a smaller student from the teacher's own layers, trained on its vectors"
    )
    p.add_argument(
        "teacher", help="any model directory ('base': all-MiniLM-L6-v2, a fine-tuned or merged one)"
    )
    p.add_argument("out", help="where the student's model directory goes")
    p.add_argument("--layers", type=positive_int, required=True, help="transformer layers the student keeps")
    p.add_argument(
        "--pick",
        default="spread",
        choices=("spread", "first"),
        help="evenly spaced layers, first and last kept (default), or the first N",
    )
    p.add_argument(
        "--loss", default="mse", choices=("mse", "cosine"), help="on the unit vectors (default mse)"
    )
    p.add_argument(
        "--contrastive",
        type=float,
        default=0.0,
        metavar="LAMBDA",
        help="add λ · InfoNCE on the labelled pairs of --data (default 0: distillation only)",
    )
    p.add_argument(
        "--hidden",
        type=float,
        default=1.0,
        metavar="MU",
        help="μ · each block's hidden states against its teacher block's, token by token (default 1; "
        "0: the unit vectors alone)",
    )
    p.add_argument("--matryoshka", default="", help="also distil nested prefixes, e.g. 384,256,128,64")
    p.add_argument(
        "--data",
        default=str(SCIFACT),
        help="where the corpus and training queries come from (default: bundled SciFact)",
    )
    p.add_argument("--split", default="train")
    p.add_argument("--general", help="general-domain text, .txt or STS .csv (default: bundled STS-B train)")
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--max-length", type=positive_int, default=128)
    p.add_argument("--max-texts", type=int, default=0, help="a seeded sample of this many texts (0: all)")
    p.add_argument("--force", action="store_true", help="replace OUT when it holds a previous model")
    p.add_argument("--skip-bad", action="store_true")
    add_device_arg(p)
    p.set_defaults(func=cmd_distill)
    p = sub.add_parser("train", help="fine-tune a bi-encoder (InfoNCE by default)")
    add_train_args(p)
    add_device_arg(arg_group(p, "output"))
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("merge", help="interpolate a fine-tuned model with its base against forgetting")
    p.add_argument("base", help="the base model directory ('base': all-MiniLM-L6-v2)")
    p.add_argument("tuned", help="the fine-tuned model directory (or its run directory)")
    p.add_argument("out", help="where the merged model directory goes")
    p.add_argument(
        "--alpha",
        default="auto",
        type=alpha_value,
        help="weight of the fine-tuned model in [0, 1], or 'auto' (default): "
        "the largest α whose drop on every guard's selection half is ≤ 0.5 point",
    )
    p.add_argument("--no-guards", action="store_true", help="without the bundled guards (give --guard)")
    p.add_argument(
        "--guard", action="append", default=[], metavar="BEIR_DIR", help="a guard of your own (repeatable)"
    )
    p.add_argument("--force", action="store_true", help="replace OUT when it holds a previous model")
    add_device_arg(p)
    p.set_defaults(func=cmd_merge)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training")
    add_commands(parser.add_subparsers(dest="command"))
    return cli.run(parser, argv)
