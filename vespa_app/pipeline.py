"""`siamese run`: pairs → fine-tuned model → ONNX → Vespa application package → searchable index → report.

Each stage writes its artifact atomically under the output directory and is skipped when that artifact
is already there, so a run that was interrupted picks up where it stopped and loses nothing.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from training.cli import DEFAULT_DATA, DEFAULT_STS
from training.data import Beir, read_beir, read_corpus, read_qrels, read_queries, read_sts_csv
from training.encoder import Encoder, default_base_model
from training.evaluate import dense_run, exact_search, limit_queries, model_label, sts_score, to_run
from training.metrics import score_run

from .backend import evaluate_backend


@dataclass
class RunOptions:
    out: str = "runs/latest"
    data: str | None = str(DEFAULT_DATA)  # a BEIR folder: train on `train_split`, evaluate on `eval_split`
    pairs: str | None = None  # or the user's own files
    corpus: str | None = None
    queries: str | None = None
    qrels: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    base: str | None = None
    full: bool = False
    quantize: str | None = None
    sts: str | None = str(DEFAULT_STS)
    limit_queries: int | None = None
    vespa: str | None = None  # URL of a running Vespa (query endpoint), a config server URL, or "docker"
    epochs: int | None = None
    max_steps: int | None = None
    skip_bad: bool = False


def _say(message: str) -> None:
    print(f"\n== {message}", file=sys.stderr, flush=True)


def _eval_data(o: RunOptions) -> Beir | None:
    if o.pairs or o.corpus:
        if not (o.corpus and o.queries and o.qrels):
            return None
        corpus = read_corpus(o.corpus, skip_bad=o.skip_bad)
        queries = read_queries(o.queries, skip_bad=o.skip_bad)
        qrels = read_qrels(o.qrels, corpus.keys(), queries.keys(), skip_bad=o.skip_bad)
        return limit_queries(Beir(corpus, {q: queries[q] for q in qrels}, qrels), o.limit_queries)
    return limit_queries(read_beir(o.data, o.eval_split, skip_bad=o.skip_bad), o.limit_queries)


def run(o: RunOptions) -> dict:
    from exporter.onnx_export import export
    from exporter.parity import parity_texts
    from exporter.runtime import OnnxEmbedder
    from training.cli import load_training_data
    from training.loop import TrainConfig, train
    from training.recipes import RECIPES

    from .check import check_package, java_missing
    from .embedded import EmbeddedIndex
    from .package import AppOptions, write_package
    from .report import plot, write_report

    run_started = time.time()
    out = Path(o.out)
    out.mkdir(parents=True, exist_ok=True)
    timings, extra = {}, {}
    base = str(o.base or default_base_model())
    recipe = dict(RECIPES["full" if o.full else "default"])
    recipe.update({k: v for k, v in (("epochs", o.epochs), ("max_steps", o.max_steps)) if v is not None})
    cfg = TrainConfig(base=base, out=str(out / "train"), **recipe)
    cfg.check()
    beir = _eval_data(o)
    corpus = list(beir.corpus.values()) if beir else list(read_corpus(o.corpus, skip_bad=o.skip_bad).values())

    started = time.time()
    model_dir = out / "train" / "model"
    if model_dir.exists():
        _say(f"train: {model_dir} exists, reusing it")
    else:
        _say("train")
        pairs, pool = load_training_data(o.pairs or o.data, o.train_split, o.skip_bad)
        resume = (out / "train" / "train_config.json").exists()
        train(cfg, pairs, pool or [d.passage for d in corpus], resume=resume)
    timings["train"] = time.time() - started

    started = time.time()
    export_dir = out / "export"
    if export_dir.exists():
        _say(f"export: {export_dir} exists, reusing it")
    else:
        _say("export to ONNX, with parity checks")
        export(model_dir, export_dir, quantize=o.quantize, quality_data=o.data if o.quantize else None,
               quality_split=o.eval_split)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    extra["parity"] = manifest["parity"]
    timings["export + parity"] = time.time() - started

    started = time.time()
    app_dir = out / "app"
    if not app_dir.exists():
        _say("Vespa application package")
        write_package(export_dir, app_dir, AppOptions())
    missing = java_missing()
    if not missing:
        _say("checking the package with Vespa's own config model and HuggingFaceEmbedder")
    report = check_package(app_dir, None if missing else parity_texts(25, 25))
    extra["vespa_check"] = f"skipped: {missing}" if missing else report.vespa
    extra["vespa_embedder"] = report.embedding and {k: report.embedding[k] for k in
                                                    ("texts", "document_min_cosine", "query_min_cosine")}
    print(report.summary(), file=sys.stderr)
    timings["package + Vespa check"] = time.time() - started

    rows, index = [], None
    started = time.time()
    if o.vespa:
        rows += _evaluate_on_vespa(o, app_dir, corpus, beir, out, timings, extra)
    elif (out / "index").exists():
        _say(f"index: {out / 'index'} exists, reopening it")
        index = EmbeddedIndex.open(out / "index")
    else:
        _say(f"embedded index: embedding {len(corpus)} documents with the exported model")
        index = EmbeddedIndex.build(out / "index", export_dir, corpus)
    timings["index"] = time.time() - started

    if beir:
        started = time.time()
        _say(f"evaluate on {len(beir.queries)} queries")
        max_length = json.loads((model_dir / "siamese.json").read_text())["max_length"]
        base_encoder = Encoder.load(base, max_length=max_length)
        base_row = {"name": f"base ({model_label(base)})",
                    **score_run(dense_run(base_encoder, beir.corpus, beir.queries), beir.qrels)}
        # the fine-tuned model's exact search uses the served ONNX graph (parity-checked against PyTorch) and,
        # on the embedded backend, the document vectors the index already holds
        embedder = index.embedder if index else OnnxEmbedder(export_dir)
        doc_ids = [d.id for d in (index.docs if index else corpus)]
        docs = index.embeddings if index else embedder.embed([d.passage for d in corpus], "passage", progress=True)
        qids = list(beir.queries)
        vectors = embedder.embed([beir.queries[q] for q in qids], "query")
        tuned_row = {"name": "fine-tuned (exact)",
                     **score_run(to_run(qids, doc_ids, *exact_search(vectors, docs, 100)), beir.qrels)}
        if o.sts:
            sts_rows = read_sts_csv(o.sts)
            base_row["sts_spearman"] = sts_score(base_encoder, sts_rows)
            tuned_row["sts_spearman"] = sts_score(Encoder.load(model_dir), sts_rows)
        if not o.vespa:
            served = evaluate_backend(index, beir, label="served")
            rows += [served[0], base_row, tuned_row] + served[1:]
        else:
            rows += [base_row, tuned_row]
        timings["evaluate"] = time.time() - started

    deploy = deploy_commands(app_dir, o.corpus or o.data)
    timings["total"] = time.time() - run_started
    train_metrics = json.loads((model_dir / "train_metrics.json").read_text())
    if rows:
        plot(rows, train_metrics["log"], out / "plot.png")
    report_path = write_report(out, rows, timings, json.loads((model_dir / "train_config.json").read_text()),
                               extra | {"backend": "vespa" if o.vespa else "embedded"}, deploy)
    (out / "results.json").write_text(json.dumps({"rows": rows, "timings": timings, "extra": extra}, indent=2))
    return {"rows": rows, "timings": timings, "report": str(report_path), "deploy": deploy, "extra": extra}


def _evaluate_on_vespa(o, app_dir, corpus, beir, out, timings, extra):
    from .vespa_client import VespaBackend, deploy_docker, deploy_to_config_server

    started = time.time()
    if o.vespa == "docker":
        url = deploy_docker(app_dir)
    elif o.vespa.rstrip("/").endswith(":19071"):
        url = deploy_to_config_server(app_dir, o.vespa)
    else:
        url = o.vespa
    backend = VespaBackend(url)
    result = backend.feed(corpus, ledger=out / "feed-ledger.jsonl", failed_file=out / "feed-failed.jsonl")
    extra["feed"] = result.summary()
    timings["deploy + feed"] = time.time() - started
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} documents failed to feed; see {out / 'feed-failed.jsonl'}")
    if not beir:
        return []
    started = time.time()
    rows = evaluate_backend(backend, beir, label="vespa")
    timings["evaluate on Vespa"] = time.time() - started
    return rows


def deploy_commands(app_dir: Path, corpus) -> str:
    app = app_dir.resolve()
    corpus = Path(corpus).resolve()
    return "\n".join([
        "# local Vespa with Docker (pyvespa starts the container):",
        f"siamese deploy {app} --target docker",
        f"siamese feed http://localhost:8080 {corpus}",
        'siamese query http://localhost:8080 "your question" --profile hybrid',
        "# or with the Vespa CLI:",
        f"vespa deploy --wait 300 {app}",
    ])


def options_dict(o: RunOptions) -> dict:
    return asdict(o)
