"""`siamese`: one command in front of every stage. It only wires the stages' own commands together.

Building the parser imports nothing heavy; each command imports what it needs, so `siamese --help`,
`query`, `feed`, `deploy`, `search` and `app build` start without torch or transformers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import cli
from common.cli import app_name, bm25_weight_value, positive_int
from common.errors import ConfigError
from exporter import cli as exporter_cli
from training import cli as training_cli
from training.config import add_config_args, config_overrides

from . import profiles, serving


def cmd_app_build(args) -> int:
    from .check import check_package
    from .package import AppOptions, write_package

    if args.bm25_weight == "auto":
        raise ConfigError("--bm25-weight auto is chosen by `siamese run` on the training queries; give app build a "
                          "number (e.g. the run's, in its models/package.json)")
    given = args.bm25_weight is not None
    options = AppOptions(name=args.name, nodes=args.nodes, redundancy=args.redundancy,
                         max_links_per_node=args.max_links, neighbors_to_explore_at_insert=args.explore,
                         cell_type="bfloat16" if args.bfloat16 else "float", binarized=args.binarized,
                         cloud=args.cloud, chunk_tokens=args.chunk_tokens, chunk_overlap=args.chunk_overlap,
                         dim=args.dim, colbert_cells=args.colbert_cells or "int8",
                         bm25_weight=args.bm25_weight if given else serving.BM25_WEIGHT,
                         bm25_weight_choice={"method": "given (--bm25-weight)" if given else "default"})
    if args.colbert_cells and not args.colbert and not _is_colbert_export(args.export_dir):
        raise ConfigError("--colbert-cells shapes the token vectors of --colbert COLBERT_EXPORT; give --colbert too")
    if args.chunk_overlap and not args.chunk_tokens:
        raise ConfigError("--chunk-overlap needs --chunk-tokens: without it a document is one vector, not chunks")
    reports = []

    def check(package):  # on the finished package, before it takes OUT_DIR's place
        reports.append(check_package(package, hosted=args.cloud))

    out = write_package(args.export_dir, args.out_dir, options, force=args.force,
                        check=None if args.no_check else check, colbert_dir=args.colbert)
    print(f"wrote {out}")
    for report in reports:
        print(report.summary())
    return 0


def _is_colbert_export(export_dir) -> bool:
    from exporter.manifest import Manifest

    return (Path(export_dir) / "manifest.json").exists() and Manifest.load(export_dir).kind == "colbert"


def cmd_app_check(args) -> int:
    from .check import check_package

    texts = None
    if args.texts:
        texts = [line.rstrip("\n") for line in Path(args.texts).read_text(encoding="utf-8").splitlines() if line.strip()]
    docs = None
    if args.corpus:
        from common.data import load_corpus

        docs = list(load_corpus(args.corpus).values())
    report = check_package(args.package, texts, hosted=args.hosted, vectors_out=args.vectors_out, docs=docs)
    print(report.summary())
    return 0


def add_app_commands(sub) -> None:
    group = sub.add_parser("app", help="build and check the Vespa application package")
    group.set_defaults(func=lambda args: group.print_help() or 2)
    app = group.add_subparsers(dest="app_cmd")
    p = app.add_parser("build", help="application package from an export directory (manifest.json)")
    p.add_argument("export_dir")
    p.add_argument("out_dir")
    p.add_argument("--name", default="siamese", type=app_name,
                   help="the Vespa application name (default siamese; not taken from OUT_DIR's folder name)")
    p.add_argument("--nodes", type=positive_int, default=1, help="content nodes (several: hosts.xml is written)")
    p.add_argument("--redundancy", type=positive_int, default=1)
    p.add_argument("--max-links", type=positive_int, default=serving.HNSW_MAX_LINKS, help="HNSW max-links-per-node")
    p.add_argument("--explore", type=positive_int, default=serving.HNSW_EXPLORE_AT_INSERT,
                   help="HNSW neighbors-to-explore-at-insert")
    p.add_argument("--bfloat16", action="store_true", help="bfloat16 embedding cells (half the memory)")
    p.add_argument("--binarized", action="store_true", help="add a packed-bits field with hamming HNSW + re-rank")
    p.add_argument("--cloud", action="store_true", help="the Vespa Cloud variant")
    p.add_argument("--chunk-tokens", type=positive_int,
                   help="chunked: a vector per chunk of this many tokens (at most the model's window); the feed "
                        "sends the chunks (siamese feed --package)")
    p.add_argument("--chunk-overlap", type=int, help="tokens neighbouring chunks share (default: 32, at most a "
                   "quarter of the chunk)")
    p.add_argument("--dim", type=positive_int, help="serve the first DIM dimensions of the embedding (a model "
                   "trained with --matryoshka); Vespa's embedder cuts, then normalises")
    p.add_argument("--colbert", metavar="COLBERT_EXPORT",
                   help="a late-interaction export (siamese train --late-interaction, then export) served beside "
                        "the single-vector one: a colbert field and the colbert, colbert-maxsim, hybrid-colbert and "
                        "bm25-colbert profiles (MaxSim re-ranking); a late-interaction export as EXPORT_DIR is "
                        "served alone (bm25, bm25-colbert)")
    p.add_argument("--colbert-cells", choices=("int8", "bfloat16"), default=None,
                   help="the colbert field: packed sign bits (int8, 16 bytes a token at 128 dims) or bfloat16 "
                        "(256 bytes a token)")
    p.add_argument("--bm25-weight", metavar="W", type=bm25_weight_value,
                   help="hybrid-linear: normalised closeness + W · normalised BM25 (default 1; siamese run "
                        "chooses W on the training queries)")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR when it holds a previous package")
    p.add_argument("--no-check", action="store_true", help="write the package unchecked (without it, a package that "
                   "fails the checks is not kept)")
    p.set_defaults(func=cmd_app_build)
    p = app.add_parser("check", help="Vespa's own config model, embedder, indexing and query stack on a package "
                                     "(offline)")
    p.add_argument("package")
    p.add_argument("--corpus", help="documents to put through the package's indexing (a corpus.jsonl[.gz] or BEIR "
                                    "folder; default: the bundled SciFact corpus)")
    p.add_argument("--texts", help="a file with one text per line to embed with Vespa's embedder")
    p.add_argument("--vectors-out", help="write Vespa's vectors for --texts here (JSON)")
    p.add_argument("--hosted", action="store_true", help="check as Vespa Cloud would")
    p.set_defaults(func=cmd_app_check)


def _backend(args, beir):
    if args.backend == "vespa":
        from .vespa_client import VespaBackend

        if not args.url:
            raise ConfigError("--backend vespa needs --url (the container's query endpoint, e.g. http://localhost:8080)")
        return VespaBackend(args.url)
    from .embedded import EmbeddedIndex

    if not args.index:
        raise ConfigError("--backend embedded needs --index (a directory written by `siamese run`)")
    index = EmbeddedIndex.open(args.index)
    index.check_corpus(beir.corpus.values())
    return index


def cmd_eval(args) -> int:
    from common.data import limit_queries, load_beir
    from common.metrics import format_table, write_json

    from .backend import evaluate_backend

    if args.backend == "exact":
        return training_cli.cmd_eval(args)
    if args.chunk_tokens or args.chunk_overlap is not None or args.chunk_pooling or args.dim:
        raise ConfigError("--chunk-* and --dim set how exact search (--backend exact) embeds; an index or a package "
                          "is chunked and sized when it is built (siamese run / app build --chunk-tokens, --dim)")
    beir = limit_queries(load_beir(args.data, args.split, skip_bad=args.skip_bad), args.limit_queries)
    rows = evaluate_backend(_backend(args, beir), beir, args.profiles, label=args.backend)
    print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
    return 0


def cmd_run(args) -> int:
    from .pipeline import run
    from .run_options import RunOptions

    result = run(RunOptions.from_args(args, config_overrides(args)))
    from common.metrics import format_table

    if result["rows"]:
        print(format_table(result["rows"]))
    print(f"\nwall time {result['timings']['total']:.0f} s; report: {result['report']}")
    print("\nTo serve this model with Vespa:\n" + result["deploy"])
    return 0


def cmd_search(args) -> int:
    from .embedded import EmbeddedIndex
    from .vespa_client import print_hits

    if not args.text.strip():
        raise ConfigError("the query text is empty: give the words to search for")
    print_hits(EmbeddedIndex.open(args.index).query(args.text, args.profile, args.hits))
    return 0


def cmd_query(args) -> int:
    from .app_package import AppPackage
    from .vespa_client import VespaBackend, print_hits

    chunked = bool(args.package) and AppPackage.open(args.package).chunked
    print_hits(VespaBackend(args.url, chunked=chunked).query(args.text, args.profile, args.hits))
    return 0


def cmd_deploy(args) -> int:
    from .vespa_client import deploy

    url = deploy(args.package, args.target, tenant=args.tenant, application=args.application, key=args.key,
                 query_url=args.query_url)
    print(f"deployed; the application answers at {url}")
    return 0


def cmd_feed(args) -> int:
    from .vespa_client import feed

    from common.data import load_corpus

    docs = list(load_corpus(args.data, skip_bad=args.skip_bad).values())
    target = args.target
    if Path(target).is_dir() and (Path(target) / "services.xml").exists():
        raise ConfigError(f"{target} is an application package; deploy it with `siamese deploy {target}` and "
                         "feed the URL it prints")
    schema = chunker = None
    if args.package:
        from .app_package import AppPackage

        package = AppPackage.open(args.package)
        schema, chunker = package.feed_key, package.chunker()
    result = feed(target, docs, args.ledger, args.failed, schema=schema, chunker=chunker, concurrency=args.concurrency)
    print(result.summary())
    if result.failed:
        print(f"{len(result.failed)} document(s) failed for good; ids and reasons in {args.failed}. "
              "Re-run the same command to retry only those.", file=sys.stderr)
        return 1
    return 0


def add_pipeline_commands(sub) -> None:
    for add in (_add_eval, _add_run, _add_search, _add_query, _add_deploy, _add_feed):
        add(sub)


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="nDCG@10 / Recall@100 / MRR@10 (+ STS), exact or through a search backend")
    training_cli.add_eval_args(p)
    p.add_argument("--backend", choices=("exact", "embedded", "vespa"), default="exact")
    p.add_argument("--url", help="with --backend vespa: the query endpoint")
    p.add_argument("--index", help="with --backend embedded: the index directory")
    p.add_argument("--profiles", nargs="+", default=list(profiles.CORE), choices=profiles.NAMES)
    p.set_defaults(func=cmd_eval)


def _add_run(sub) -> None:
    from .run_options import RunOptions

    p = sub.add_parser("run", help="the whole job: train, export, package, index, evaluate, report")
    RunOptions.add_run_args(p)
    add_config_args(p)
    p.set_defaults(func=cmd_run)


def _add_search(sub) -> None:
    p = sub.add_parser("search", help="try queries on an embedded index")
    p.add_argument("index")
    p.add_argument("text")
    p.add_argument("--profile", choices=profiles.NAMES, default="semantic")
    p.add_argument("--hits", type=positive_int, default=10)
    p.set_defaults(func=cmd_search)


def _add_query(sub) -> None:
    p = sub.add_parser("query", help="query a running Vespa through its query API")
    p.add_argument("url")
    p.add_argument("text")
    p.add_argument("--profile", choices=profiles.NAMES, default="semantic",
                   help="binary needs a package built with --binarized")
    p.add_argument("--hits", type=positive_int, default=10)
    p.add_argument("--package", help="the deployed package: a chunked one's hits come with their best chunk")
    p.set_defaults(func=cmd_query)


def _add_deploy(sub) -> None:
    p = sub.add_parser("deploy", help="deploy an application package")
    p.add_argument("package")
    p.add_argument("--target", default="docker",
                   help="docker (default), a config server URL such as http://localhost:19071, or cloud")
    p.add_argument("--query-url", help="with a config server: where the container answers (default HOST:8080)")
    p.add_argument("--tenant")
    p.add_argument("--application")
    p.add_argument("--key", help="Vespa Cloud API key file")
    p.set_defaults(func=cmd_deploy)


def _add_feed(sub) -> None:
    p = sub.add_parser("feed", help="feed a corpus (JSONL or BEIR folder) to a running Vespa")
    p.add_argument("target", help="the container URL, e.g. http://localhost:8080")
    p.add_argument("data")
    p.add_argument("--ledger", default="feed-ledger.jsonl",
                   help="ids acknowledged so far, per target; a re-run to the same target skips them")
    p.add_argument("--package", help="the deployed application package: a re-deploy with another schema "
                                     "then feeds everything again; a chunked package's chunks are sent (needed)")
    p.add_argument("--failed", default="feed-failed.jsonl", help="ids that failed for good, with reasons")
    p.add_argument("--concurrency", type=positive_int, default=16)
    p.add_argument("--skip-bad", action="store_true")
    p.set_defaults(func=cmd_feed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamese", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    training_cli.add_commands(sub, with_eval=False)
    add_pipeline_commands(sub)
    exporter_cli.add_commands(sub)
    add_app_commands(sub)
    return parser


def main(argv=None) -> int:
    return cli.run(build_parser(), argv)
