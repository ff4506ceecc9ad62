"""`siamese`: one command in front of every stage. It only wires the stages' own commands together."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exporter import cli as exporter_cli
from training import cli as training_cli
from training.cli import positive_int


def cmd_app_build(args) -> int:
    from .check import check_package
    from .package import AppOptions, write_package

    options = AppOptions(name=args.name, nodes=args.nodes, redundancy=args.redundancy,
                         max_links_per_node=args.max_links, neighbors_to_explore_at_insert=args.explore,
                         cell_type="bfloat16" if args.bfloat16 else "float", binarized=args.binarized,
                         cloud=args.cloud)
    out = write_package(args.export_dir, args.out_dir, options, force=args.force)
    print(f"wrote {out}")
    if not args.no_check:
        print(check_package(out, hosted=args.cloud).summary())
    return 0


def cmd_app_check(args) -> int:
    from .check import check_package

    texts = None
    if args.texts:
        texts = [line.rstrip("\n") for line in Path(args.texts).read_text(encoding="utf-8").splitlines() if line.strip()]
    report = check_package(args.package, texts, hosted=args.hosted, vectors_out=args.vectors_out)
    print(report.summary())
    return 0


def add_app_commands(sub) -> None:
    app = sub.add_parser("app", help="build and check the Vespa application package").add_subparsers(dest="app_cmd")
    p = app.add_parser("build", help="application package from an export directory (manifest.json)")
    p.add_argument("export_dir")
    p.add_argument("out_dir")
    p.add_argument("--name", default="siamese")
    p.add_argument("--nodes", type=positive_int, default=1, help="content nodes (several: hosts.xml is written)")
    p.add_argument("--redundancy", type=positive_int, default=1)
    p.add_argument("--max-links", type=positive_int, default=16, help="HNSW max-links-per-node")
    p.add_argument("--explore", type=positive_int, default=200, help="HNSW neighbors-to-explore-at-insert")
    p.add_argument("--bfloat16", action="store_true", help="bfloat16 embedding cells (half the memory)")
    p.add_argument("--binarized", action="store_true", help="add a packed-bits field with hamming HNSW + re-rank")
    p.add_argument("--cloud", action="store_true", help="the Vespa Cloud variant")
    p.add_argument("--force", action="store_true")
    p.add_argument("--no-check", action="store_true", help="skip the checks after building")
    p.set_defaults(func=cmd_app_build)
    p = app.add_parser("check", help="Vespa's own config model and embedder on a package (offline)")
    p.add_argument("package")
    p.add_argument("--texts", help="a file with one text per line to embed with Vespa's embedder")
    p.add_argument("--vectors-out", help="write Vespa's vectors for --texts here (JSON)")
    p.add_argument("--hosted", action="store_true", help="check as Vespa Cloud would")
    p.set_defaults(func=cmd_app_check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamese", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    training_cli.add_commands(sub)
    exporter_cli.add_commands(sub)
    add_app_commands(sub)
    return parser


def main(argv=None) -> int:
    return training_cli.run(build_parser(), argv)
