"""`siamese run`: pairs → fine-tuned model → ONNX → Vespa application package → searchable index → report.

Each stage writes its artifact atomically under the output directory and is skipped when that artifact
is already there, so a run that was interrupted picks up where it stopped and loses nothing::

    OUT/train/model   the fine-tuned model directory      (training)
    OUT/export        model.onnx, tokenizer.json, manifest (exporter)
    OUT/index         the embedded backend's index         (or, after the package, a feed into Vespa with --vespa)
    OUT/app           the Vespa application package        (vespa_app.package, checked by Vespa's code; its
                      hybrid-linear BM25 weight chosen on the index)
    OUT/report.md, plot.png, results.json
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common.errors import ConfigError
from common.data import Beir, limit_queries, load_beir, load_corpus, read_qrels, read_queries
from common.lock import locks

from .backend import evaluate_backend
from .run_options import RunOptions
from .serving import BM25_WEIGHT


LONG_SHARE = 0.2  # "auto" chunks when more than this share of documents would be truncated


LATE_PROFILES = ("colbert", "colbert-maxsim", "hybrid-colbert")  # served with --colbert beside the core ones


def chunking_choice(o: RunOptions, corpus, export_dir: Path):
    """(chunker or None, what was chosen and why). "auto" chunks at the model's window when more than
    ``LONG_SHARE`` of the documents exceed it: short texts keep one vector each."""
    from common.chunking import Chunker, default_overlap
    from exporter.manifest import Manifest

    if o.chunk_tokens is None:
        return None, "off: documents truncated to the model's window"
    manifest = Manifest.load(export_dir)
    tokens = manifest.max_tokens if o.chunk_tokens == "auto" else int(o.chunk_tokens)
    overlap = default_overlap(tokens) if o.chunk_overlap is None else o.chunk_overlap
    chunker = Chunker.for_model(export_dir, tokens, overlap, prefix=manifest.prefixes["document"])
    if o.chunk_tokens != "auto":
        return chunker, f"on: chunks of {tokens} tokens sharing {overlap} (asked for)"
    long = sum(not chunker.fits(d.title + " " + d.text) for d in corpus) / max(len(corpus), 1)
    if long <= LONG_SHARE:
        return None, f"auto → off: {long:.0%} of documents exceed {tokens} tokens (≤ {LONG_SHARE:.0%})"
    return chunker, (f"auto → on: {long:.0%} of documents exceed the {tokens}-token window (> {LONG_SHARE:.0%}); "
                     f"chunks of {tokens} tokens sharing {overlap}")


def check_options(o: RunOptions, base: str) -> None:
    """Every option that can be judged before training, judged before it (minutes on real data): the chunking
    and --dim against the base model's window and width, the merge weight, the reference models."""
    from training.model_dir import EncoderConfig, check_model_dir, model_kind

    from .package import AppOptions

    if o.train.get("late_interaction"):
        raise ConfigError("siamese run trains, packages and indexes a single-vector model; a late-interaction model "
                          "is served beside it: `siamese train --late-interaction --out COLBERT_RUN`, then "
                          "`siamese run --colbert COLBERT_RUN`")
    if o.colbert and model_kind(check_model_dir(o.colbert)) != "late":
        raise ConfigError(f"--colbert {o.colbert}: not a late-interaction model (train one with "
                          "`siamese train --late-interaction`)")
    base_dir = check_model_dir(base)
    window = o.train.get("max_length") or EncoderConfig.load(base_dir).max_length
    width = json.loads((base_dir / "config.json").read_text()).get("hidden_size")
    if isinstance(o.chunk_tokens, int):
        if o.chunk_tokens > window:
            raise ConfigError(f"--chunk-tokens {o.chunk_tokens} is above the model's window of {window} tokens")
        AppOptions(chunk_tokens=o.chunk_tokens, chunk_overlap=o.chunk_overlap).check()
    elif o.chunk_overlap is not None and o.chunk_tokens is None:
        raise ConfigError("--chunk-overlap needs --chunk-tokens (N or auto): without it documents are truncated")
    if o.dim is not None and width and not 8 <= o.dim <= width:
        raise ConfigError(f"--dim {o.dim} must be between 8 and the model's {width} dimensions")
    if o.merge is not None and o.train.get("tower", "shared") != "shared":  # without --tower, --merge trains shared
        raise ConfigError(f"--merge averages one model's weights with its base; --tower {o.train['tower']} trains two "
                          "towers: drop one of the two")
    if isinstance(o.merge, float) and not 0.0 <= o.merge <= 1.0:
        raise ConfigError(f"--merge {o.merge} must be in [0, 1] or auto")
    if o.merge == "auto" and not o.guards:
        raise ConfigError("--merge auto chooses α on the guards' selection half: keep the guards (drop "
                          "--no-guards) or give --guard DIR")
    for reference in o.references:
        check_model_dir(reference)


def _say(message: str) -> None:
    print(f"\n== {message}", file=sys.stderr, flush=True)


class _Stages:
    """Times each stage and collects what the report shows beside the figures."""

    def __init__(self):
        self.timings, self.extra = {}, {}

    def timed(self, name: str, fn, *args, **kwargs):
        started = time.time()
        result = fn(*args, **kwargs)
        self.timings[name] = time.time() - started
        return result


def _eval_data(o: RunOptions) -> Beir | None:
    if o.pairs or o.corpus:
        if not (o.corpus and o.queries and o.qrels):
            return None
        corpus = load_corpus(o.corpus, skip_bad=o.skip_bad)
        queries = read_queries(o.queries, skip_bad=o.skip_bad)
        qrels = read_qrels(o.qrels, corpus.keys(), queries.keys(), skip_bad=o.skip_bad)
        return limit_queries(Beir(corpus, {q: queries[q] for q in qrels}, qrels), o.limit_queries)
    return limit_queries(load_beir(o.data, o.eval_split, skip_bad=o.skip_bad), o.limit_queries)


def train_settings(o: RunOptions) -> dict:
    """The TrainConfig values the run gives over the recipe's: merging averages one model's weights with its
    base, so --merge trains a shared model where no --tower is given."""
    return ({"tower": "shared"} if o.merge is not None else {}) | o.train


def _train(o: RunOptions, out: Path, corpus) -> Path:
    from training.config import recipe_config
    from training.loop import train
    from training.model_dir import default_base_model
    from training.pairs import load_training_data

    model_dir = out / "train" / "model"
    cfg = recipe_config(str(o.base or default_base_model()), str(out / "train"), o.full, data=str(o.pairs or o.data),
                        **train_settings(o))
    if model_dir.exists():
        _say(f"train: {model_dir} exists, reusing it")
        return model_dir
    _say("train")
    pairs, pool = load_training_data(o.pairs or o.data, o.train_split, o.skip_bad)
    resume = (out / "train" / "train_config.json").exists()
    return train(cfg, pairs, pool or corpus, resume=resume)


def _merge(o: RunOptions, base: str, tuned: Path, merged: Path, extra: dict) -> Path:
    from training.merge import MERGE_FILE, merge

    if merged.exists():
        _say(f"merge: {merged} exists, reusing it")
    else:
        _say(f"merge with the base model (α {o.merge}; auto: chosen on the guards' selection half)")
        merge(base, tuned, merged, o.merge, o.guards, say=lambda line: print(line, file=sys.stderr))
    record = json.loads((merged / MERGE_FILE).read_text())
    extra["merge"] = {"alpha": record["alpha"], "method": record["choice"]["method"]}
    return merged


def _export(o: RunOptions, model_dir: Path, export_dir: Path):
    from exporter.manifest import Manifest
    from exporter.onnx_export import export

    if export_dir.exists():
        _say(f"export: {export_dir} exists, reusing it")
    else:
        _say("export to ONNX, with parity checks")
        export(model_dir, export_dir, quantize=o.quantize, quality_data=o.data if o.quantize else None,
               quality_split=o.eval_split)
    return Manifest.load(export_dir)


def _package(export_dir: Path, app_dir: Path, corpus, extra: dict, chunker, dim: int, colbert_dir=None,
             fusion: tuple[float, dict | None] = (BM25_WEIGHT, None)) -> None:
    from exporter.parity import parity_texts

    from .check import check_package, java_missing
    from .package import AppOptions, write_package

    missing = java_missing()
    texts = None if missing else parity_texts(25, 25)
    reports = []

    def check(package):
        reports.append(check_package(package, texts, docs=corpus))

    checker = "Python's structural checks" if missing else "Vespa's own config model and HuggingFaceEmbedder"
    if app_dir.exists():
        _check_package_shape(app_dir, chunker, dim, fusion[0])
        _say(f"package: {app_dir} exists, reusing it; checking it with {checker}")
        check(app_dir)
    else:
        _say(f"Vespa application package, checked with {checker}")
        write_package(export_dir, app_dir, AppOptions(chunk_tokens=chunker.max_tokens if chunker else None,
                                                      chunk_overlap=chunker.overlap if chunker else 0, dim=dim,
                                                      bm25_weight=fusion[0], bm25_weight_choice=fusion[1]),
                      check=check, colbert_dir=colbert_dir)
    report = reports[0]
    extra["vespa_check"] = f"skipped: {missing}" if missing else report.vespa
    if report.container:
        extra["vespa_container"] = report.container.lines()
    extra["vespa_embedder"] = report.embedding and {k: report.embedding[k] for k in
                                                    ("texts", "document_min_cosine", "query_min_cosine")}
    print(report.summary(), file=sys.stderr)


def _check_package_shape(app_dir: Path, chunker, dim: int, bm25_weight: float | None = None) -> None:
    """An existing package is reused only if it embeds as this run asks (and, once chosen, fuses so)."""
    from .app_package import AppPackage

    package = AppPackage.open(app_dir)
    has, wants = package.shape(), _shape(chunker, dim)
    if bm25_weight is not None:
        has["bm25 weight"], wants["bm25 weight"] = package.bm25_weight, bm25_weight
    if has != wants:
        raise ConfigError(f"{app_dir} was built with {has}, this run asks for {wants}: delete it, or run with "
                          "the same chunk, --dim and --bm25-weight options")


def _shape(chunker, dim: int) -> dict:
    """What a package or an index records of how it embeds documents: chunking and embedding size."""
    return {"chunking": {"tokens": chunker.max_tokens, "overlap": chunker.overlap} if chunker else None, "dim": dim}


def _index(export_dir: Path, index_dir: Path, corpus, chunker, dim: int, colbert_dir=None, model_dir=None):
    from exporter.manifest import Manifest

    from .embedded import BadIndexError, EmbeddedIndex

    if index_dir.exists():
        _say(f"index: {index_dir} exists, reopening it")
        index = EmbeddedIndex.open(index_dir)
        index.check_corpus(corpus)
        has = {"chunking": index.meta.get("chunking"), "dim": index.meta["dimension"]}
        if has != _shape(chunker, dim):
            raise BadIndexError(f"{index_dir} was built with {has}, this run asks for {_shape(chunker, dim)}: "
                                "delete it, or run with the same chunk and --dim options")
        return index
    from .run_rows import frozen_documents

    frozen = frozen_documents(model_dir, Manifest.load(export_dir), dim) if model_dir else None
    _say(f"embedded index: {len(corpus)} documents"
         + (f" as chunks of {chunker.max_tokens} tokens" if chunker else "") + f", {dim} dimensions; vectors "
         + ("of the frozen document tower (the base model's, computed once)" if frozen else "by the exported model"))
    return EmbeddedIndex.build(index_dir, export_dir, corpus, chunker=chunker, dim=dim, colbert_dir=colbert_dir,
                               documents=frozen)


def _bm25_weight(o: RunOptions, index, app_dir: Path) -> tuple[float, dict]:
    """hybrid-linear's BM25 weight: as given, or chosen on the embedded index by the training queries whose
    judged documents are in the corpus (``fusion_weight``); with --vespa, the existing package's; without
    judged training queries (or an index), the default."""
    from .app_package import AppPackage
    from .fusion_weight import choose_bm25_weight

    if o.bm25_weight != "auto":
        return float(o.bm25_weight), {"method": "given (--bm25-weight)"}
    if index is None and app_dir.exists():  # e.g. `siamese run`, then `siamese run --vespa` on the same --out
        return AppPackage.open(app_dir).bm25_weight, {"method": f"kept from the package {app_dir}"}
    train = _training_judgements(o, {d.id for d in index.docs}) if index is not None else None
    if not train:
        why = "no embedded index to choose on (--vespa)" if index is None else \
            "no training queries with judged documents in the corpus"
        return BM25_WEIGHT, {"method": f"default: {why}; give --bm25-weight to set it"}
    _say(f"hybrid-linear: choosing the BM25 weight on {len(train[1])} training queries")
    weight, record = choose_bm25_weight(index, *train)
    index.set_bm25_weight(weight)
    return weight, record


def _training_judgements(o: RunOptions, doc_ids: set) -> tuple[dict, dict] | None:
    """The training split's queries and their relevant documents among ``doc_ids`` (a BEIR --data folder)."""
    from .fusion_weight import judged

    if not o.data or not (Path(o.data) / "qrels" / f"{o.train_split}.tsv").exists():
        return None
    train = load_beir(o.data, o.train_split, skip_bad=o.skip_bad)
    qrels = judged(train.qrels, doc_ids)
    return (train.queries, qrels) if qrels else None


def _feed_vespa(o: RunOptions, app_dir: Path, corpus, out: Path, extra: dict):
    from .app_package import AppPackage
    from .vespa_client import VespaBackend, VespaError, deploy

    url = deploy(app_dir, o.vespa, running_ok=True)
    package = AppPackage.open(app_dir)
    backend = VespaBackend(url, chunked=package.chunked)
    result = backend.feed(corpus, ledger=out / "feed-ledger.jsonl", failed_file=out / "feed-failed.jsonl",
                          schema=package.feed_key, chunker=package.chunker())
    extra["feed"] = result.summary()
    if result.failed:
        raise VespaError(f"{len(result.failed)} documents failed to feed; see {out / 'feed-failed.jsonl'}")
    return backend


@locks("siamese run", lambda a: a["o"].out)
def run(o: RunOptions) -> dict:
    from training.config import recipe_config
    from training.model_dir import default_base_model

    run_started = time.time()
    out = Path(o.out)
    stages = _Stages()
    base = str(o.base or default_base_model())
    check_options(o, base)
    recipe_config(base, str(out / "train"), o.full, **train_settings(o))  # judged before any work
    beir = _eval_data(o)
    corpus = list(beir.corpus.values()) if beir else list(load_corpus(o.corpus, skip_bad=o.skip_bad).values())
    out.mkdir(parents=True, exist_ok=True)
    model_dir, manifest = _model(o, out, base, corpus, stages)
    chunker, stages.extra["chunking"] = chunking_choice(o, corpus, out / "export")
    _say(f"chunking {stages.extra['chunking']}")
    dim = o.dim or manifest.dimension
    index, backend = _serve(o, out, model_dir, corpus, chunker, dim, stages)
    rows = _evaluate(o, base, model_dir, out / "export", beir, index, backend, chunker, stages) if beir else []
    deploy = deploy_commands(out / "app", o.corpus or o.data, out)
    stages.timings["total"] = time.time() - run_started
    return _write_results(o, out, base, model_dir, rows, deploy, stages)


def _model(o: RunOptions, out: Path, base: str, corpus, stages: _Stages):
    """Train (and merge), then export: the model directory and the export's manifest."""
    from training.model_dir import TOWERS_FILE

    model_dir = stages.timed("train", _train, o, out, corpus)
    if (model_dir / TOWERS_FILE).exists():  # two towers: the report says which trained and which stayed the base
        stages.extra["towers"] = json.loads((model_dir / TOWERS_FILE).read_text())
    if o.merge is not None:
        model_dir = stages.timed("merge", _merge, o, base, model_dir, out / "merged", stages.extra)
    manifest = stages.timed("export + parity", _export, o, model_dir, out / "export")
    stages.extra["parity"] = manifest.parity
    return model_dir, manifest


def _serve(o: RunOptions, out: Path, model_dir: Path, corpus, chunker, dim: int, stages: _Stages):
    """The index (embedded backend), hybrid-linear's weight chosen on it, the package checked by Vespa's code,
    and with --vespa the deploy and feed: (the index or None, the backend to evaluate)."""
    export_dir, app_dir = out / "export", out / "app"
    colbert_dir = None
    if o.colbert:
        from training.model_dir import check_model_dir

        colbert_dir = out / "export-colbert"
        stages.timed("export late interaction", _export, o, check_model_dir(o.colbert), colbert_dir)
    index = backend = None
    if app_dir.exists():  # judged before the index is built: minutes on a real corpus
        _check_package_shape(app_dir, chunker, dim)
    if not o.vespa:  # before the package: hybrid-linear's weight is chosen on the index
        index = backend = stages.timed("index", _index, export_dir, out / "index", corpus, chunker, dim,
                                       colbert_dir, model_dir)
    fusion = stages.timed("choose hybrid weight", _bm25_weight, o, index, app_dir)
    stages.extra["hybrid-linear bm25 weight"] = {"weight": fusion[0], **fusion[1]}
    stages.timed("package + Vespa check", _package, export_dir, app_dir, corpus, stages.extra, chunker, dim,
                 colbert_dir, fusion)
    if o.vespa:
        backend = stages.timed("deploy + feed", _feed_vespa, o, app_dir, corpus, out, stages.extra)
    return index, backend


def _evaluate(o: RunOptions, base: str, model_dir: Path, export_dir: Path, beir: Beir, index, backend, chunker,
              stages: _Stages) -> list[dict]:
    """The served profiles through the backend, then exact search for every model, on all/seen/unseen queries
    and the guard sets."""
    from common.metrics import read_positives, seen_queries
    from training.evaluate import guard_sets

    from . import profiles
    from .run_rows import model_rows

    guards = guard_sets(o.guards)
    seen = seen_queries(beir.qrels, beir.corpus, read_positives(model_dir))
    _say(f"evaluate on {len(beir.queries)} queries ({len(seen)} seen in training, "
         f"{len(beir.queries) - len(seen)} unseen) and the guard sets {', '.join(guards) or '(none)'}")
    served_profiles = profiles.CORE + (LATE_PROFILES if o.colbert else ())
    served = stages.timed("evaluate served", evaluate_backend, backend, beir, served_profiles,
                          label="vespa" if o.vespa else "served", seen=seen)
    models = stages.timed("evaluate models and guards", model_rows, o, base, model_dir, export_dir, beir,
                          guards, index, seen, chunker)
    stages.extra["evaluation"] = {"queries": len(beir.queries), "seen": len(seen),
                                  "unseen": len(beir.queries) - len(seen),
                                  "guards": {g: len(b.queries) for g, b in guards.items()}}
    return [*served, *models]


def _write_results(o: RunOptions, out: Path, base: str, model_dir: Path, rows: list[dict], deploy: str,
                   stages: _Stages) -> dict:
    """report.md, plot.png, results.json, and the model card with the run's figures."""
    from training.config import TrainConfig

    from .report import plot, write_report
    from .run_rows import TUNED, base_row_name

    train_metrics = json.loads((model_dir / "train_metrics.json").read_text())
    if rows:
        plot(rows, train_metrics["log"], out / "plot.png")
    references = [r["name"] for r in rows if r["name"].startswith("reference (") and "RRF" not in r["name"]]
    report_path = write_report(out, rows, stages.timings, TrainConfig.load(model_dir / "train_config.json"),
                               stages.extra | {"backend": "vespa" if o.vespa else "embedded"}, deploy,
                               compare=(base_row_name(base), TUNED) if rows else None, references=references)
    if rows:
        from training.model_card import write_card, write_evaluation

        write_evaluation(model_dir, rows, f"From `siamese run` ({stages.extra.get('evaluation', {})}); "
                                          f"served as {stages.extra['chunking']}.")
        write_card(model_dir)
    (out / "results.json").write_text(json.dumps({"rows": rows, "timings": stages.timings, "extra": stages.extra},
                                                 indent=2))
    return {"rows": rows, "timings": stages.timings, "report": str(report_path), "deploy": deploy,
            "extra": stages.extra}


def deploy_commands(app_dir: Path, corpus, out: Path) -> str:
    """What to run to serve this package, runnable as printed: quoted paths, the package named to the feed (so a
    chunked package's chunks are sent and a re-deploy with another schema re-feeds), the ledger kept in OUT."""
    from shlex import quote

    app, corpus, out = (quote(str(Path(p).resolve())) for p in (app_dir, corpus, out))
    return "\n".join([
        "# local Vespa with Docker (pyvespa starts the container):",
        f"siamese deploy {app} --target docker",
        f"siamese feed http://localhost:8080 {corpus} --package {app} --ledger {out}/feed-ledger.jsonl "
        f"--failed {out}/feed-failed.jsonl",
        'siamese query http://localhost:8080 "your question" --profile hybrid',
        "# or with the Vespa CLI:",
        f"vespa deploy --wait 300 {app}",
    ])
