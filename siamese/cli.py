"""`siamese`: one command in front of every stage. It wires the stages' own commands together (each stage
package adds its own: ``training.cli``, ``exporter.cli``, ``vespa_app.cli``) and adds the product's two:
`siamese eval` and `siamese run`.

Building the parser imports nothing heavy; each command imports what it needs, so `siamese --help`,
`query`, `feed`, `deploy`, `search` and `app build` start without torch or transformers.
"""

from __future__ import annotations

import argparse
import sys

from common import cli
from common.bundled import GUARDS, SCIFACT, STSB_TEST
from common.cli import host_address, positive_int
from common.data import limit_queries, load_beir, read_sts_csv
from common.device import add_device_arg
from common.errors import ConfigError
from common.metrics import format_table, positives_of, write_json
from common.nanobeir import benchmark_sets, load_nanobeir
from common.poolings import CHUNK_POOLINGS
from exporter import cli as exporter_cli
from training import cli as training_cli
from training.config import add_config_args, config_overrides
from training.model_dir import resolve_models
from training.pairs import load_pairs
from vespa_app import cli as vespa_cli
from vespa_app import profiles
from vespa_app.backend import evaluate_backend


def _backend(args, beir):
    if args.backend == "vespa":
        from vespa_app.client.query import VespaBackend

        if not args.url:
            raise ConfigError(
                "--backend vespa needs --url (the container's query endpoint, e.g. http://localhost:8080)"
            )
        return VespaBackend(args.url)
    from vespa_app.embedded import EmbeddedIndex

    if not args.index:
        raise ConfigError("--backend embedded needs --index (a directory written by `siamese run`)")
    index = EmbeddedIndex.open(args.index)
    index.check_corpus(beir.corpus.values())
    return index


def _benchmark_eval(args) -> list[dict]:
    """Every NanoBEIR set asked for, each with the rows of any other evaluation, then each system's mean."""
    if args.backend != "exact" or args.data or args.guards or args.guard or args.sts:
        raise ConfigError(
            "--benchmark evaluates exact search on its own sets: drop --backend, --data, --guards, "
            "--guard and --sts (evaluate those in a run of their own)"
        )
    sets = benchmark_sets(args.benchmark)
    per_set = {}
    for name in sets:
        print(f"\n== NanoBEIR {name}", file=sys.stderr, flush=True)
        per_set[name] = _exact_eval(args, limit_queries(load_nanobeir(name), args.limit_queries))
    figures: dict[str, dict[str, float]] = {}  # system → set → nDCG@10
    for name, rows in per_set.items():
        for row in rows:
            figures.setdefault(row["name"], {})[name] = row["ndcg@10"]
    summary = [
        {
            "name": system,
            "ndcg@10 mean": sum(by_set.values()) / len(by_set),
            **{f"ndcg@10 {s}": v for s, v in by_set.items()},
        }
        for system, by_set in figures.items()
    ]
    print(f"\nNanoBEIR ({len(sets)} set{'s' * (len(sets) > 1)}), nDCG@10:")
    print(format_table(summary))
    return summary


def cmd_eval(args) -> int:

    if args.benchmark:
        rows = _benchmark_eval(args)
        if args.json:
            write_json(rows, args.json)
        return 0
    beir = limit_queries(
        load_beir(args.data or SCIFACT, args.split, skip_bad=args.skip_bad), args.limit_queries
    )
    if args.backend == "exact":
        rows = _exact_eval(args, beir)
    else:
        if args.chunk_tokens or args.chunk_overlap is not None or args.chunk_pooling or args.dim:
            raise ConfigError(
                "--chunk-* and --dim set how exact search (--backend exact) embeds; an index or a "
                "package is chunked and sized when it is built (siamese run / app build "
                "--chunk-tokens, --dim)"
            )
        rows = evaluate_backend(_backend(args, beir), beir, args.profiles, label=args.backend)
        print(format_table(rows))
    if args.json:
        write_json(rows, args.json)
    return 0


def _exact_eval(args, beir) -> list[dict]:
    from siamese.evaluation import Chunking, compare
    from training.evaluate import guard_sets

    positives = None
    if args.train_data:
        positives = positives_of(load_pairs(args.train_data, skip_bad=args.skip_bad)[0])
    chunking = None
    if args.chunk_tokens or args.chunk_overlap is not None or args.chunk_pooling:
        chunking = Chunking(
            overlap=args.chunk_overlap, pooling=args.chunk_pooling or "best", tokens=args.chunk_tokens
        )
    rows, text = compare(
        resolve_models(args.models),
        beir,
        base=resolve_models(["base"])[0],
        guards=guard_sets([*(GUARDS if args.guards else ()), *args.guard]),
        bm25=args.bm25,
        sts_rows=read_sts_csv(args.sts) if args.sts else None,
        max_length=args.max_length,
        positives=positives,
        hybrid=args.hybrid,
        chunking=chunking,
        dim=args.dim,
    )
    print(text)
    return rows


def cmd_run(args) -> int:
    from siamese.run.options import RunOptions
    from siamese.run.pipeline import run

    result = run(RunOptions.from_args(args, config_overrides(args)))

    if result["rows"]:
        print(format_table(result["rows"]))
    print(f"\nwall time {result['timings']['total']:.0f} s; report: {result['report']}")
    print("\nTo serve this model with Vespa:\n" + result["deploy"])
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser(
        "eval", help="nDCG@10 / Recall@100 / MRR@10 (+ STS), exact or through a search backend"
    )
    _add_eval_args(p)
    p.add_argument("--backend", choices=("exact", "embedded", "vespa"), default="exact")
    p.add_argument("--url", help="with --backend vespa: the query endpoint")
    p.add_argument("--index", help="with --backend embedded: the index directory")
    p.add_argument("--profiles", nargs="+", default=list(profiles.CORE), choices=profiles.NAMES)
    p.add_argument(
        "--benchmark",
        metavar="nanobeir[:SET,SET]",
        help="evaluate on NanoBEIR (13 sets of 50 queries, from the hub's dataset files, cached; or the "
        "sets named, e.g. nanobeir:SciFact,NFCorpus) instead of --data, with the same rows",
    )
    add_device_arg(p)
    p.set_defaults(func=cmd_eval)


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        nargs="*",
        default=None,
        help="model directories to compare (default: the base model); 'base' names the default base",
    )
    p.add_argument("--data", default=None, help="BEIR folder (default: bundled SciFact)")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--sts",
        nargs="?",
        const=str(STSB_TEST),
        default=None,
        help="also report Spearman on an STS CSV (default file: bundled STS-B test)",
    )
    p.add_argument("--no-bm25", dest="bm25", action="store_false")
    p.add_argument("--limit-queries", type=positive_int)
    p.add_argument(
        "--max-length", type=positive_int, help="override every model's max length (a fair comparison)"
    )
    p.add_argument("--json", help="write the rows as JSON here")
    p.add_argument("--skip-bad", action="store_true", help="skip malformed input lines and report them")
    p.add_argument(
        "--guards",
        action="store_true",
        help="also evaluate on the bundled out-of-domain guard sets (CISI, MedQuAD), report half",
    )
    p.add_argument(
        "--guard",
        action="append",
        default=[],
        metavar="BEIR_DIR",
        help="a guard set of your own (repeatable): a BEIR folder with qrels/test.tsv",
    )
    p.add_argument(
        "--train-data",
        help="the training pairs (.jsonl, BEIR folder, .csv) whose positives split the "
        "queries into seen and unseen (default: what the model directory recorded)",
    )
    p.add_argument(
        "--hybrid", action="store_true", help="also each model fused with BM25 (reciprocal rank fusion)"
    )
    p.add_argument(
        "--chunk-tokens",
        type=positive_int,
        help="embed documents as chunks of this many tokens (default with --chunk-overlap or "
        "--chunk-pooling: the model's window) instead of truncating them",
    )
    p.add_argument(
        "--chunk-overlap",
        type=int,
        help="tokens neighbouring chunks share (default: 32, at most a quarter of the chunk)",
    )
    p.add_argument(
        "--chunk-pooling",
        choices=CHUNK_POOLINGS,
        help="a document's score: its best chunk (default) or the mean of its best two",
    )
    p.add_argument(
        "--dim",
        type=positive_int,
        help="score each model on the first DIM dimensions of its embedding (a Matryoshka prefix)",
    )


def cmd_ui(args) -> int:
    from siamese.ui.serve import serve

    return serve(args.run, args.port, args.host, args.vespa)


def _add_ui(sub) -> None:
    p = sub.add_parser("ui", help="a local search page: a run's systems side by side on your own queries")
    p.add_argument(
        "run", nargs="?", default="runs/latest", help="a `siamese run` output folder (default: runs/latest)"
    )
    p.add_argument("--port", type=positive_int, default=8400)
    p.add_argument(
        "--host",
        type=host_address,
        default="127.0.0.1",
        help="the address to serve on (default 127.0.0.1: this machine alone; another is warned of)",
    )
    p.add_argument(
        "--vespa",
        metavar="URL",
        help="the columns from a live Vespa's query API (e.g. http://localhost:8080)",
    )
    p.set_defaults(func=cmd_ui)


def _add_run(sub) -> None:
    from siamese.run.options import RunOptions

    p = sub.add_parser("run", help="the whole job: train, export, package, index, evaluate, report")
    RunOptions.add_run_args(p)
    add_config_args(p)
    add_device_arg(cli.arg_group(p, "output"))
    p.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siamese", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    training_cli.add_commands(sub)
    for add in (_add_eval, _add_run, _add_ui):
        add(sub)
    vespa_cli.add_commands(sub)
    exporter_cli.add_commands(sub)
    return parser


def main(argv=None) -> int:
    return cli.run(build_parser(), argv)
