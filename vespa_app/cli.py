"""The Vespa stage's commands: `siamese search` (an embedded index), `query`, `deploy` and `feed` (a running
Vespa), and `siamese app build|check` (``app_cli``). None of them imports torch or the training package."""

from __future__ import annotations

import sys
from pathlib import Path

from common.cli import positive_int
from common.data import load_corpus
from common.errors import ConfigError
from vespa_app import app_cli, profiles
from vespa_app.client.feed import feed


def cmd_search(args) -> int:
    from vespa_app.client.query import print_hits
    from vespa_app.embedded import EmbeddedIndex

    if not args.text.strip():
        raise ConfigError("the query text is empty: give the words to search for")
    index = Path(args.index)
    if not (index / "meta.json").exists() and (index / "index" / "meta.json").exists():
        index = index / "index"  # a `siamese run` folder: its index
    print_hits(EmbeddedIndex.open(index).query(args.text, args.profile, args.hits))
    return 0


def cmd_query(args) -> int:
    from vespa_app.client.query import VespaBackend, print_hits
    from vespa_app.package.record import AppPackage

    package = AppPackage.open(args.package) if args.package else None
    backend = VespaBackend(
        args.url,
        chunked=bool(package) and package.chunked,
        explore_additional=package.hnsw_settings.explore_additional if package else 0,
    )
    print_hits(backend.query(args.text, args.profile, args.hits))
    return 0


def cmd_deploy(args) -> int:
    from vespa_app.client.deploy import deploy

    url = deploy(
        args.package,
        args.target,
        tenant=args.tenant,
        application=args.application,
        key=args.key,
        query_url=args.query_url,
    )
    print(f"deployed; the application answers at {url}")
    return 0


def cmd_feed(args) -> int:

    docs = list(load_corpus(args.data, skip_bad=args.skip_bad).values())
    target = args.target
    if Path(target).is_dir() and (Path(target) / "services.xml").exists():
        raise ConfigError(
            f"{target} is an application package; deploy it with `siamese deploy {target}` and "
            "feed the URL it prints"
        )
    schema = chunker = None
    if args.package:
        from vespa_app.package.record import AppPackage

        package = AppPackage.open(args.package)
        schema, chunker = package.feed_key, package.chunker()
    result = feed(
        target, docs, args.ledger, args.failed, schema=schema, chunker=chunker, concurrency=args.concurrency
    )
    print(result.summary())
    if result.failed:
        print(
            f"{len(result.failed)} document(s) failed for good; ids and reasons in {args.failed}. "
            "Re-run the same command to retry only those.",
            file=sys.stderr,
        )
        return 1
    return 0


def _add_search(sub) -> None:
    p = sub.add_parser("search", help="try queries on an embedded index")
    p.add_argument("index", help="an embedded index, or a `siamese run` folder (its index)")
    p.add_argument("text")
    p.add_argument("--profile", choices=profiles.NAMES, default="semantic")
    p.add_argument("--hits", type=positive_int, default=10)
    p.set_defaults(func=cmd_search)


def _add_query(sub) -> None:
    p = sub.add_parser("query", help="query a running Vespa through its query API")
    p.add_argument("url")
    p.add_argument("text")
    p.add_argument(
        "--profile",
        choices=profiles.NAMES,
        default="semantic",
        help="binary needs a package built with --binarized",
    )
    p.add_argument("--hits", type=positive_int, default=10)
    p.add_argument(
        "--package",
        help="the deployed package: a chunked one's hits come with their best chunk, and queries explore "
        "as its HNSW settings ask",
    )
    p.set_defaults(func=cmd_query)


def _add_deploy(sub) -> None:
    p = sub.add_parser("deploy", help="deploy an application package")
    p.add_argument("package")
    p.add_argument(
        "--target",
        default="docker",
        help="docker (default), a config server URL such as http://localhost:19071, or cloud",
    )
    p.add_argument(
        "--query-url", help="with a config server: where the container answers (default HOST:8080)"
    )
    p.add_argument("--tenant")
    p.add_argument("--application")
    p.add_argument("--key", help="Vespa Cloud API key file")
    p.set_defaults(func=cmd_deploy)


def _add_feed(sub) -> None:
    p = sub.add_parser("feed", help="feed a corpus (JSONL or BEIR folder) to a running Vespa")
    p.add_argument("target", help="the container URL, e.g. http://localhost:8080")
    p.add_argument("data")
    p.add_argument(
        "--ledger",
        default="feed-ledger.jsonl",
        help="ids acknowledged so far, per target; a re-run to the same target skips them",
    )
    p.add_argument(
        "--package",
        help="the deployed application package: a re-deploy with another schema "
        "then feeds everything again; a chunked package's chunks are sent (needed)",
    )
    p.add_argument("--failed", default="feed-failed.jsonl", help="ids that failed for good, with reasons")
    p.add_argument("--concurrency", type=positive_int, default=16)
    p.add_argument("--skip-bad", action="store_true")
    p.set_defaults(func=cmd_feed)


def add_commands(sub) -> None:
    for add in (_add_search, _add_query, _add_deploy, _add_feed):
        add(sub)
    app_cli.add_app_commands(sub)
