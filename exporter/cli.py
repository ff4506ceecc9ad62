"""`siamese export MODEL_DIR OUT_DIR` (also `python -m exporter export ...`)."""

from __future__ import annotations

import argparse

from common.cli import run

from .push import push


def cmd_export(args) -> int:
    from .onnx_export import describe, export

    out = export(
        args.model_dir,
        args.out_dir,
        quantize=args.quantize,
        force=args.force,
        quality_data=args.quality_data,
        quality_split=args.quality_split,
    )
    print(describe(out))
    print(out)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "export", help="ONNX + tokenizer.json + manifest.json for Vespa's hugging-face-embedder"
    )
    p.add_argument(
        "model_dir", help="a model directory from `siamese train`, or any local HF encoder directory"
    )
    p.add_argument("out_dir")
    p.add_argument("--quantize", choices=("int8",), help="dynamic int8 with per-channel weights")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace OUT_DIR, a previous export, once the new export has passed its checks",
    )
    p.add_argument(
        "--quality-data", help="with --quantize: a BEIR folder to measure nDCG@10 of fp32 vs int8 on"
    )
    p.add_argument("--quality-split", default="test")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "push",
        help="publish a model directory (and its ONNX export) on the Hugging Face hub, with "
        "a card the hub indexes",
    )
    p.add_argument(
        "model_dir", help="a model directory from `siamese train` or `siamese run` (RUN/train/model)"
    )
    p.add_argument("hub_id", help="the repository, e.g. you/scifact-minilm (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", default=None, help="a branch to commit to (created from main if missing)")
    p.add_argument(
        "--export",
        default=None,
        metavar="EXPORT_DIR",
        help="also the ONNX export Vespa loads (siamese export / RUN/export), under onnx/",
    )
    p.set_defaults(func=cmd_push)


def cmd_push(args) -> int:

    url = push(
        args.model_dir, args.hub_id, private=args.private, revision=args.revision, export_dir=args.export
    )
    print(f"pushed: {url}")
    return 0


def main(argv=None) -> int:

    parser = argparse.ArgumentParser(prog="python -m exporter")
    add_commands(parser.add_subparsers(dest="command"))
    return run(parser, argv)
