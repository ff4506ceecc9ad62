"""`siamese run`'s serving stages: the embedded index, hybrid-linear's BM25 weight chosen on it, the
application package checked by Vespa's code, and with --vespa the deploy and feed."""

from __future__ import annotations

import sys
from pathlib import Path

from common.data import corpus_fingerprint, load_beir
from exporter.manifest import Manifest
from exporter.parity import parity_texts
from siamese.run.fusion_weight import choose_bm25_weight, judged
from siamese.run.made_from import MadeFrom, made_by_run
from siamese.run.options import RunOptions
from siamese.run.rows import frozen_documents
from siamese.run.stages import RunRecord, Stages, say
from vespa_app.check.structure import check_package, java_missing
from vespa_app.client.deploy import deploy
from vespa_app.client.http import VespaError
from vespa_app.client.query import VespaBackend
from vespa_app.embedded import EmbeddedIndex
from vespa_app.hnsw import HnswSettings
from vespa_app.package.build import write_package
from vespa_app.package.options import AppOptions
from vespa_app.package.record import AppPackage
from vespa_app.serving import BM25_WEIGHT


def _package(
    export_dir: Path,
    app_dir: Path,
    corpus,
    run: RunRecord,
    chunker,
    dim: int,
    colbert_dir,
    fusion: tuple[float, dict | None],
    record: MadeFrom,
    hnsw: HnswSettings,
) -> None:

    missing = java_missing()
    texts = None if missing else parity_texts(25, 25)
    reports = []

    def check(package):
        reports.append(check_package(package, texts, docs=corpus))

    checker = "Python's structural checks" if missing else "Vespa's own config model and HuggingFaceEmbedder"
    if record.reuse(
        "package",
        app_dir,
        _package_inputs(export_dir, chunker, dim, colbert_dir, hnsw) | {"bm25 weight": fusion[0]},
    ):
        say(
            f"package: {app_dir} was made from the same export and options, reusing it; "
            f"checking it with {checker}"
        )
        check(app_dir)
    else:
        say(f"Vespa application package, checked with {checker}")
        write_package(
            export_dir,
            app_dir,
            AppOptions(
                chunk_tokens=chunker.max_tokens if chunker else None,
                chunk_overlap=chunker.overlap if chunker else 0,
                dim=dim,
                bm25_weight=fusion[0],
                bm25_weight_choice=fusion[1],
                hnsw=hnsw,
            ),
            check=check,
            colbert_dir=colbert_dir,
        )
        record.done("package", app_dir)
    report = reports[0]
    run.vespa_check = f"skipped: {missing}" if missing else report.vespa
    if report.container:
        run.vespa_container = report.container.lines()
    run.vespa_embedder = report.embedding and {
        k: report.embedding[k] for k in ("texts", "document_min_cosine", "query_min_cosine")
    }
    print(report.summary(), file=sys.stderr)


def _package_inputs(export_dir: Path, chunker, dim: int, colbert_dir, hnsw: HnswSettings) -> dict:
    return {
        "export": made_by_run(export_dir),
        "chunking": chunker and chunker.spec(),
        "dim": dim,
        "late-interaction export": colbert_dir and made_by_run(colbert_dir),
        "hnsw": {k: v for k, v in hnsw.record().items() if k != "why"},
    }


def _index(
    export_dir: Path,
    index_dir: Path,
    corpus,
    chunker,
    dim: int,
    colbert_dir,
    model_dir,
    record: MadeFrom,
    hnsw: HnswSettings,
):

    inputs = _package_inputs(export_dir, chunker, dim, colbert_dir, hnsw) | {
        "corpus": corpus_fingerprint(corpus),
        "document vectors of": model_dir and made_by_run(model_dir),
    }
    if record.reuse("index", index_dir, inputs):
        say(f"index: {index_dir} was made from the same export, corpus and options, reopening it")
        index = EmbeddedIndex.open(index_dir)
        index.check_corpus(corpus)
        return index

    frozen = frozen_documents(model_dir, Manifest.load(export_dir), dim) if model_dir else None
    say(
        f"embedded index: {len(corpus)} documents"
        + (f" as chunks of {chunker.max_tokens} tokens" if chunker else "")
        + f", {dim} dimensions; vectors "
        + (
            "of the frozen document tower (the base model's, computed once)"
            if frozen
            else "by the exported model"
        )
    )
    index = EmbeddedIndex.build(
        index_dir,
        export_dir,
        corpus,
        chunker=chunker,
        dim=dim,
        colbert_dir=colbert_dir,
        documents=frozen,
        hnsw=hnsw,
    )
    record.done("index", index_dir)
    return index


def _bm25_weight(options: RunOptions, index, app_dir: Path) -> tuple[float, dict]:
    """hybrid-linear's BM25 weight: as given, or chosen on the embedded index by the training queries whose
    judged documents are in the corpus (``fusion_weight``); with --vespa, the existing package's; without
    judged training queries (or an index), the default."""

    if options.bm25_weight != "auto":
        return float(options.bm25_weight), {"method": "given (--bm25-weight)"}
    if index is None and app_dir.exists():  # e.g. `siamese run`, then `siamese run --vespa` on the same --out
        return AppPackage.open(app_dir).bm25_weight, {"method": f"kept from the package {app_dir}"}
    train = _training_judgements(options, {d.id for d in index.docs}) if index is not None else None
    if not train:
        why = (
            "no embedded index to choose on (--vespa)"
            if index is None
            else "no training queries with judged documents in the corpus"
        )
        return BM25_WEIGHT, {"method": f"default: {why}; give --bm25-weight to set it"}
    say(f"hybrid-linear: choosing the BM25 weight on {len(train[1])} training queries")
    weight, record = choose_bm25_weight(index, *train)
    index.set_bm25_weight(weight)
    return weight, record


def _training_judgements(options: RunOptions, doc_ids: set) -> tuple[dict, dict] | None:
    """The training split's queries and their relevant documents among ``doc_ids`` (a BEIR --data folder)."""

    if not options.data or not (Path(options.data) / "qrels" / f"{options.train_split}.tsv").exists():
        return None
    train = load_beir(options.data, options.train_split, skip_bad=options.skip_bad)
    qrels = judged(train.qrels, doc_ids)
    return (train.queries, qrels) if qrels else None


def _feed_vespa(options: RunOptions, app_dir: Path, corpus, out: Path, run: RunRecord):
    url = deploy(app_dir, options.vespa, running_ok=True)
    package = AppPackage.open(app_dir)
    backend = VespaBackend(
        url, chunked=package.chunked, explore_additional=package.hnsw_settings.explore_additional
    )
    result = backend.feed(
        corpus,
        ledger=out / "feed-ledger.jsonl",
        failed_file=out / "feed-failed.jsonl",
        schema=package.feed_key,
        chunker=package.chunker(),
    )
    run.feed = result.summary()
    if result.failed:
        raise VespaError(f"{len(result.failed)} documents failed to feed; see {out / 'feed-failed.jsonl'}")
    return backend


def _vectors(corpus, chunker, sample: int = 1000) -> int:
    """How many vectors HNSW will hold: one a document, or, chunked, its chunks (counted on an even sample
    of ``sample`` documents: the index cuts them all later)."""
    if not chunker:
        return len(corpus)
    some = corpus[:: max(1, len(corpus) // sample)]
    return round(len(corpus) * sum(len(chunker.passage_chunks(d.title, d.text)) for d in some) / len(some))


def serve(
    options: RunOptions,
    out: Path,
    model_dir: Path,
    colbert_dir: Path | None,
    corpus,
    chunker,
    dim: int,
    stages: Stages,
    record: MadeFrom,
):
    """The index (embedded backend), hybrid-linear's weight chosen on it, the package checked by Vespa's code,
    and with --vespa the deploy and feed: (the index or None, the backend to evaluate)."""
    export_dir, app_dir = out / "export", out / "app"
    index = backend = None
    hnsw = options.hnsw_for(_vectors(corpus, chunker))
    stages.record.hnsw = hnsw.record()
    say(
        f"HNSW: {hnsw.max_links} links a node, {hnsw.explore_at_insert} explored at insert, targetHits + "
        f"{hnsw.explore_additional} explored a query ({hnsw.why})"
    )
    # judged before the index is built (minutes on a real corpus); its BM25 weight is judged once chosen
    record.judge("package", app_dir, _package_inputs(export_dir, chunker, dim, colbert_dir, hnsw))
    if not options.vespa:  # before the package: hybrid-linear's weight is chosen on the index
        index = backend = stages.timed(
            "index",
            _index,
            export_dir,
            out / "index",
            corpus,
            chunker,
            dim,
            colbert_dir,
            model_dir,
            record,
            hnsw,
        )
    fusion = stages.timed("choose hybrid weight", _bm25_weight, options, index, app_dir)
    stages.record.bm25_weight = {"weight": fusion[0], **fusion[1]}
    stages.timed(
        "package + Vespa check",
        _package,
        export_dir,
        app_dir,
        corpus,
        stages.record,
        chunker,
        dim,
        colbert_dir,
        fusion,
        record,
        hnsw,
    )
    if options.vespa:
        backend = stages.timed("deploy + feed", _feed_vespa, options, app_dir, corpus, out, stages.record)
    return index, backend
