"""`siamese export MODEL_DIR OUT_DIR` (also `python -m exporter export ...`)."""
from __future__ import annotations

import argparse


def cmd_export(args) -> int:
    from .onnx_export import describe, export

    out = export(args.model_dir, args.out_dir, quantize=args.quantize, force=args.force,
                 quality_data=args.quality_data, quality_split=args.quality_split)
    print(describe(out))
    print(out)
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("export", help="ONNX + tokenizer.json + manifest.json for Vespa's hugging-face-embedder")
    p.add_argument("model_dir", help="a model directory from `siamese train`, or any local HF encoder directory")
    p.add_argument("out_dir")
    p.add_argument("--quantize", choices=("int8",), help="dynamic int8 with per-channel weights")
    p.add_argument("--force", action="store_true",
                   help="replace OUT_DIR, a previous export, once the new export has passed its checks")
    p.add_argument("--quality-data", help="with --quantize: a BEIR folder to measure nDCG@10 of fp32 vs int8 on")
    p.add_argument("--quality-split", default="test")
    p.set_defaults(func=cmd_export)


def main(argv=None) -> int:
    from common.cli import run

    parser = argparse.ArgumentParser(prog="python -m exporter")
    add_commands(parser.add_subparsers(dest="command"))
    return run(parser, argv)
