"""`siamese run`: pairs → fine-tuned model → ONNX → Vespa application package → searchable index → report.

Each stage writes its artifact atomically under the output directory and records what it was made from
(``made_from.py``). A run over an existing output reuses a stage only where it was made from the same inputs
and settings (else it is refused, each difference named, or rebuilt with ``--force``), so a run that was
interrupted picks up where it stopped and loses nothing::

    OUT/train/model   the fine-tuned model directory       (training)
    OUT/export        model.onnx, tokenizer.json, manifest  (exporter)
    OUT/index         the embedded backend's index          (or, after the package, a feed into Vespa)
    OUT/app           the Vespa application package         (checked by Vespa's code; its hybrid-linear
                                                             BM25 weight chosen on the index)
    OUT/report.md, plot.png, results.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from common.bundled import GUARDS
from common.data import (
    Beir,
    corpus_fingerprint,
    limit_queries,
    load_beir,
    load_corpus,
    read_qrels,
    read_queries,
)
from common.lock import locks
from common.metrics import seen_queries
from exporter.manifest import Manifest
from exporter.onnx_export import export
from siamese.evaluation import PER_QUERY
from siamese.run.made_from import MadeFrom, file_fingerprint, made_by_run
from siamese.run.options import RunOptions, check_options, chunking_choice, train_settings
from siamese.run.report import plot, write_report
from siamese.run.rows import TUNED, UNTRAINED, model_rows
from siamese.run.serve import serve
from siamese.run.stages import Stages, say
from training.config import TrainConfig, recipe_config
from training.evaluate import guard_sets
from training.held_out import too_few
from training.loop import RECORDED, pairs_fingerprint, train
from training.merge import merge
from training.model_card import write_card
from training.model_dir import (
    TRAIN_CONFIG_FILE,
    ModelRecord,
    check_model_dir,
    default_base_model,
)
from training.pairs import load_training_data
from training.recipe import candidate_configs, parse_candidates, select_recipe
from training.recipe import resolve as resolve_recipe
from training.train_log import check_report_to, report_training
from vespa_app import profiles
from vespa_app.backend import evaluate_backend

LATE_PROFILES = ("colbert", "colbert-maxsim", "hybrid-colbert")  # served with --colbert beside the core ones


def _eval_data(options: RunOptions) -> Beir | None:
    if options.pairs or options.corpus:
        if not (options.corpus and options.queries and options.qrels):
            return None
        corpus = load_corpus(options.corpus, skip_bad=options.skip_bad)
        queries = read_queries(options.queries, skip_bad=options.skip_bad)
        qrels = read_qrels(options.qrels, corpus.keys(), queries.keys(), skip_bad=options.skip_bad)
        return limit_queries(Beir(corpus, {q: queries[q] for q in qrels}, qrels), options.limit_queries)
    return limit_queries(
        load_beir(options.data, options.eval_split, skip_bad=options.skip_bad), options.limit_queries
    )


def _train(options: RunOptions, out: Path, corpus, training, record: MadeFrom) -> Path:
    model_dir = out / "train" / "model"
    base = str(options.base or default_base_model())
    data = str(options.pairs or options.data)
    cfg = recipe_config(base, str(out / "train"), options.full, data=data, **train_settings(options))
    pairs, pool = training
    settings = {k: v for k, v in asdict(cfg).items() if k not in (*RECORDED, "base", "data")}
    files = {k: file_fingerprint(settings[k]) for k in ("anchor_data", "general_pairs") if settings[k]}
    inputs = (
        settings
        | {f"{k} contents": v for k, v in files.items()}
        | {
            "base model": file_fingerprint(check_model_dir(cfg.base)),
            "training pairs": pairs_fingerprint(pairs),
            "corpus": corpus_fingerprint(pool or corpus),
            "recipe": options.recipe,
        }
    )
    if options.recipe == "auto":
        inputs["guards"] = [file_fingerprint(GUARDS.get(g, g)) for g in options.guards]
        inputs["candidates"] = list(options.candidates)
    if record.reuse("train", model_dir, inputs, work=(out / "train",)):
        say(f"train: {model_dir} was made from the same data and settings, reusing it")
        return model_dir
    say("train")
    if options.recipe == "auto":
        configs = candidate_configs(base, options.full, data, train_settings(options))
        model_dir, _ = select_recipe(
            configs, pairs, pool or corpus, out / "train", options.guards, base, options.candidates, say=say
        )
    else:
        resume = (out / "train" / TRAIN_CONFIG_FILE).exists()  # started from the same, and interrupted
        model_dir = train(cfg, pairs, pool or corpus, resume=resume)
    record.done("train", model_dir)
    if report_training(model_dir, options.report_to):
        say(f"training curve for TensorBoard: tensorboard --logdir {out / 'train' / 'tensorboard'}")
    return model_dir


def _merge(options: RunOptions, base: str, tuned: Path, merged: Path, record: MadeFrom) -> Path:
    inputs = {
        "model": made_by_run(tuned),
        "base model": file_fingerprint(check_model_dir(base)),
        "alpha": options.merge,
        "guards": [file_fingerprint(GUARDS.get(g, g)) for g in options.guards]
        if options.merge == "auto"
        else None,
    }
    if record.reuse("merge", merged, inputs):
        say(f"merge: {merged} was made from the same models and α, reusing it")
    else:
        say(f"merge with the base model (α {options.merge}; auto: chosen on the guards' selection half)")
        merge(
            base, tuned, merged, options.merge, options.guards, say=lambda line: print(line, file=sys.stderr)
        )
        record.done("merge", merged)
    return merged


def _export(options: RunOptions, model_dir: Path, export_dir: Path, record: MadeFrom, stage: str = "export"):
    made = (
        made_by_run(model_dir) if model_dir.is_relative_to(Path(options.out)) else file_fingerprint(model_dir)
    )
    inputs = {
        "model": made,
        "quantize": options.quantize,
        "quantization check data": file_fingerprint(options.data) if options.quantize else None,
        "quantization check split": options.eval_split if options.quantize else None,
    }
    if record.reuse(stage, export_dir, inputs):
        say(f"{stage}: {export_dir} was made from the same model and settings, reusing it")
    else:
        say("export to ONNX, with parity checks")
        export(
            model_dir,
            export_dir,
            quantize=options.quantize,
            quality_data=options.data if options.quantize else None,
            quality_split=options.eval_split,
        )
        record.done(stage, export_dir)
    return Manifest.load(export_dir)


@locks("siamese run", lambda a: a["options"].out)
def run(options: RunOptions) -> dict:
    run_started = time.time()
    out = Path(options.out)
    stages = Stages()
    base = str(options.base or default_base_model())
    # the settings judged before any work; a tower they force is the user's choice, not auto's
    tower = recipe_config(base, str(out / "train"), options.full, **train_settings(options)).tower
    fixed_by = (
        "--tower was given"
        if "tower" in options.train
        else "--merge was given"
        if options.merge is not None
        else f"your settings train {tower} weights (--full, --late-interaction, --matryoshka and the like)"
        if tower != "query"
        else None
    )
    asked = options.recipe
    options.recipe, why = resolve_recipe(options.recipe, fixed_by)  # resolved once, before any work
    training = load_training_data(options.pairs or options.data, options.train_split, options.skip_bad)
    if options.recipe == "auto" and not asked and (reason := too_few(training[0])):
        options.recipe, why = "fixed", f"{reason}: nothing is compared with the base model"
    options.candidates = parse_candidates(options.candidates) if options.recipe == "auto" else ()
    stages.record.recipe = {"recipe": options.recipe, "why": why}
    stages.record.backend = "vespa" if options.vespa else "embedded"
    check_options(options, base)
    options.report_to = check_report_to(options.report_to)
    beir = _eval_data(options)
    corpus = (
        list(beir.corpus.values())
        if beir
        else list(load_corpus(options.corpus, skip_bad=options.skip_bad).values())
    )
    stages.follow(out)  # progress.json, for the search page while the run writes the folder
    try:
        return _stages(options, out, base, beir, corpus, training, stages, run_started)
    finally:
        stages.finish()


def _stages(options: RunOptions, out: Path, base: str, beir, corpus, training, stages: Stages, run_started):
    """Every stage in turn, each reused where it was made from what this run asks."""
    record = MadeFrom(out, force=options.force)
    stages.record.base = base
    made, manifest, colbert_dir = _model(options, out, base, corpus, training, stages, record)
    model_dir = made.folder
    chunker, stages.record.chunking = chunking_choice(options, corpus, out / "export")
    say(f"chunking {stages.record.chunking}")
    dim = options.dim or manifest.dimension
    index, backend = serve(options, out, model_dir, colbert_dir, corpus, chunker, dim, stages, record)
    if beir:
        rows = _evaluate(options, base, made, out / "export", beir, index, backend, chunker, stages)
    else:
        rows, stages.record.evaluation_skipped = [], "no --queries and --qrels were given to evaluate on"
        say(f"evaluation skipped: {stages.record.evaluation_skipped}")
    deploy = deploy_commands(out / "app", options.corpus or options.data, out)
    stages.timings["total"] = time.time() - run_started
    return _write_results(out, made, rows, deploy, stages)


def _model(options: RunOptions, out: Path, base: str, corpus, training, stages: Stages, record: MadeFrom):
    """Train (and merge), then export (and --colbert's model): the served model's record (read once: the
    report and the card take it), the export's manifest and the late-interaction export (or None)."""

    model_dir = stages.timed("train", _train, options, out, corpus, training, record)
    made = ModelRecord.read(model_dir)
    stages.record.towers = made.towers  # two towers: the report says which trained and which stayed the base
    if options.recipe == "auto":
        stages.record.recipe |= {"chosen": made.recipe["chosen"], "choice": made.recipe["why"]}
    if options.merge is not None:
        model_dir = stages.timed("merge", _merge, options, base, model_dir, out / "merged", record)
        made = ModelRecord.read(model_dir)
        stages.record.merge = {"alpha": made.merge["alpha"], "method": made.merge["choice"]["method"]}
    manifest = stages.timed("export + parity", _export, options, model_dir, out / "export", record)
    stages.record.parity = manifest.parity
    colbert_dir = None
    if options.colbert:
        colbert_dir = out / "export-colbert"
        stages.timed(
            "export late interaction",
            _export,
            options,
            check_model_dir(options.colbert),
            colbert_dir,
            record,
            "export late interaction",
        )
    return made, manifest, colbert_dir


def _evaluate(
    options: RunOptions,
    base: str,
    made: ModelRecord,
    export_dir: Path,
    beir: Beir,
    index,
    backend,
    chunker,
    stages: Stages,
) -> list[dict]:
    """The served profiles through the backend, then exact search for every model, on all/seen/unseen queries
    and the guard sets."""

    guards = guard_sets(options.guards)
    seen = seen_queries(beir.qrels, beir.corpus, made.positives)
    say(
        f"evaluate on {len(beir.queries)} queries ({len(seen)} seen in training, "
        f"{len(beir.queries) - len(seen)} unseen) and the guard sets {', '.join(guards) or '(none)'}"
    )
    served_profiles = profiles.CORE + (LATE_PROFILES if options.colbert else ())
    served = stages.timed(
        "evaluate served",
        evaluate_backend,
        backend,
        beir,
        served_profiles,
        label="vespa" if options.vespa else "served",
        seen=seen,
    )
    stages.record.served_recall = {r["profile"]: r["served_recall"] for r in served if "served_recall" in r}
    models = stages.timed(
        "evaluate models and guards",
        model_rows,
        options,
        base,
        made.folder,
        export_dir,
        beir,
        guards,
        index,
        seen,
        chunker,
        UNTRAINED if made.recipe and made.recipe["chosen"] == "base" else TUNED,
    )
    stages.record.evaluation = {
        "queries": len(beir.queries),
        "seen": len(seen),
        "unseen": len(beir.queries) - len(seen),
        "guards": {g: len(b.queries) for g, b in guards.items()},
    }
    rows = [*served, *models]
    write_per_query(Path(options.out), rows, beir, seen, guards)
    return rows


def write_per_query(out: Path, rows: list[dict], beir: Beir, seen: set[str], guards: dict) -> Path:
    """``OUT/per_query.json``: every evaluated query (its text, seen or not, its judged documents) and each
    system's nDCG@10 on it, taken out of the rows (the report shows their means): what the search page's
    comparison reads."""

    def queries(b: Beir, seen_ids) -> dict:
        return {
            q: {
                "text": b.queries[q],
                "seen": q in seen_ids if seen_ids is not None else None,
                "relevant": sorted(d for d, g in b.qrels[q].items() if g > 0),
            }
            for q in b.qrels
        }

    sets = {"main": queries(beir, seen)} | {g: queries(b, None) for g, b in guards.items()}
    systems = {name: {} for name in sets}
    for row in rows:
        for name, scores in row.pop(PER_QUERY, {}).items():
            systems[name][row["name"]] = {q: round(s, 4) for q, s in scores.items()}
    record = {name: {"queries": sets[name], "systems": systems[name]} for name in sets}
    record["kinds"] = {r["name"]: r["kind"] for r in rows}
    path = out / "per_query.json"
    path.write_text(json.dumps(record))
    return path


def _write_results(out: Path, made: ModelRecord, rows: list[dict], deploy: str, stages: Stages) -> dict:
    """report.md, plot.png, results.json, and the model card with the run's figures."""

    if rows:
        plot(rows, (made.metrics or {}).get("log", {}), out / "plot.png")
    train_config = TrainConfig.from_record(made.train) if made.train else None
    report_path = write_report(
        out, rows, stages.timings, train_config, stages.record, deploy, recipe=made.recipe
    )
    if rows:
        note = f"From `siamese run` ({stages.record.evaluation}); served as {stages.record.chunking}."
        made.write_evaluation(rows, note)
        write_card(made.folder, made)
    (out / "results.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "served_recall": stages.record.served_recall,
                "timings": stages.timings,
                "record": asdict(stages.record),
            },
            indent=2,
        )
    )
    return {
        "rows": rows,
        "timings": stages.timings,
        "report": str(report_path),
        "deploy": deploy,
        "record": asdict(stages.record),
    }


def deploy_commands(app_dir: Path, corpus, out: Path) -> str:
    """What to run to serve this package, runnable as printed: quoted paths, the package named to the feed (so
    a chunked package's chunks are sent and a re-deploy with
    another schema re-feeds), the ledger kept in OUT."""
    from shlex import quote

    app, corpus, out = (quote(str(Path(p).resolve())) for p in (app_dir, corpus, out))
    return "\n".join(
        [
            "# local Vespa with Docker (pyvespa starts the container):",
            f"siamese deploy {app} --target docker",
            f"siamese feed http://localhost:8080 {corpus} --package {app} --ledger {out}/feed-ledger.jsonl "
            f"--failed {out}/feed-failed.jsonl",
            'siamese query http://localhost:8080 "your question" --profile hybrid',
            "# or with the Vespa CLI:",
            f"vespa deploy --wait 300 {app}",
        ]
    )
