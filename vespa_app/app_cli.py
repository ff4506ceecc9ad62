"""`siamese app build` and `siamese app check`: the application package's two commands."""

from __future__ import annotations

from pathlib import Path

from common import cli
from common.data import load_corpus
from common.errors import ConfigError
from exporter.manifest import Manifest


def cmd_app_build(args) -> int:
    from vespa_app.check.structure import check_package
    from vespa_app.package.build import write_package
    from vespa_app.package.options import AppOptions

    if args.bm25_weight == "auto":
        raise ConfigError(
            "--bm25-weight auto is chosen by `siamese run` on the training queries; give app build a "
            "number (e.g. the run's, in its models/package.json)"
        )
    options = AppOptions(
        **cli.given_options(AppOptions, args),
        bm25_weight_choice={"method": "given (--bm25-weight)" if args.bm25_weight is not None else "default"},
    )
    if args.colbert_cells and not args.colbert and not _is_colbert_export(args.export_dir):
        raise ConfigError(
            "--colbert-cells shapes the token vectors of --colbert COLBERT_EXPORT; give --colbert too"
        )
    if args.chunk_overlap and not args.chunk_tokens:
        raise ConfigError(
            "--chunk-overlap needs --chunk-tokens: without it a document is one vector, not chunks"
        )
    reports = []

    def check(package):  # on the finished package, before it takes OUT_DIR's place
        reports.append(check_package(package, hosted=args.cloud))

    out = write_package(
        args.export_dir,
        args.out_dir,
        options,
        force=args.force,
        check=None if args.no_check else check,
        colbert_dir=args.colbert,
    )
    print(f"wrote {out}")
    for report in reports:
        print(report.summary())
    return 0


def _is_colbert_export(export_dir) -> bool:

    return (Path(export_dir) / "manifest.json").exists() and Manifest.load(export_dir).kind == "colbert"


def cmd_app_check(args) -> int:
    from vespa_app.check.structure import check_package

    texts = None
    if args.texts:
        texts = [
            line.rstrip("\n")
            for line in Path(args.texts).read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    docs = None
    if args.corpus:
        docs = list(load_corpus(args.corpus).values())
    report = check_package(args.package, texts, hosted=args.hosted, vectors_out=args.vectors_out, docs=docs)
    print(report.summary())
    return 0


def add_app_commands(sub) -> None:
    from vespa_app.package.options import AppOptions

    group = sub.add_parser("app", help="build and check the Vespa application package")
    group.set_defaults(func=lambda args: group.print_help() or 2)
    app = group.add_subparsers(dest="app_cmd")
    p = app.add_parser("build", help="application package from an export directory (manifest.json)")
    p.add_argument("export_dir")
    p.add_argument("out_dir")
    AppOptions.add_args(p)
    p.add_argument(
        "--colbert",
        metavar="COLBERT_EXPORT",
        help="a late-interaction export (siamese train --late-interaction, then export) served beside "
        "the single-vector one: a colbert field and the colbert, colbert-maxsim, hybrid-colbert and "
        "bm25-colbert profiles (MaxSim re-ranking); a late-interaction export as EXPORT_DIR is "
        "served alone (bm25, bm25-colbert)",
    )
    p.add_argument("--force", action="store_true", help="replace OUT_DIR when it holds a previous package")
    p.add_argument(
        "--no-check",
        action="store_true",
        help="write the package unchecked (without it, a package that fails the checks is not kept)",
    )
    p.set_defaults(func=cmd_app_build)
    p = app.add_parser(
        "check", help="Vespa's own config model, embedder, indexing and query stack on a package (offline)"
    )
    p.add_argument("package")
    p.add_argument(
        "--corpus",
        help="documents to put through the package's indexing (a corpus.jsonl[.gz] or BEIR "
        "folder; default: the bundled SciFact corpus)",
    )
    p.add_argument("--texts", help="a file with one text per line to embed with Vespa's embedder")
    p.add_argument("--vectors-out", help="write Vespa's vectors for --texts here (JSON)")
    p.add_argument("--hosted", action="store_true", help="check as Vespa Cloud would")
    p.set_defaults(func=cmd_app_check)
