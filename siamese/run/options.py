"""What `siamese run` does, as data: ``RunOptions``, whose fields with help are the command's flags, and the
judgement of them before any work (``check_options``, ``chunking_choice``, ``train_settings``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from common.bundled import GUARDS, SCIFACT, STSB_TEST
from common.chunking import Chunker, default_overlap
from common.cli import (
    add_groups,
    add_option_args,
    alpha_value,
    arg_group,
    bm25_weight_value,
    chunk_tokens_value,
    given_options,
    option,
    positive_int,
)
from common.errors import ConfigError
from exporter.manifest import Manifest
from training.model_dir import EncoderConfig, check_model_dir, model_kind
from vespa_app.hnsw import HnswSettings, for_corpus
from vespa_app.package.options import AppOptions
from vespa_app.serving import BM25_WEIGHT_GRID


@dataclass
class RunOptions:
    """What `siamese run` does, as data: each field with help is a flag (``add_run_args``, ``from_args``)."""

    out: str = option("runs/latest", "where the run's stages and report go", group="output")
    data: str | None = option(
        str(SCIFACT),
        "a BEIR folder: train on its train split, evaluate on test (default: the bundled SciFact)",
        group="data",
    )
    pairs: str | None = option(None, "your training pairs (.jsonl / .csv / BEIR folder)", group="data")
    corpus: str | None = option(None, "your corpus .jsonl to index", group="data")
    queries: str | None = option(None, "your evaluation queries .jsonl", group="data")
    qrels: str | None = option(None, "your evaluation judgements .tsv", group="data")
    train_split: str = "train"
    eval_split: str = "test"
    base: str | None = option(
        None, "base model: a local directory or a hub id (default: all-MiniLM-L6-v2)", group="base and recipe"
    )
    references: list = option(
        list,
        "an off-the-shelf model (directory or hub id) to evaluate beside ours, zero-shot "
        "and + BM25, at its own window (repeatable); report.md says whether fine-tuning beat it",
        flag="--reference",
        action="append",
        metavar="MODEL",
        group="evaluation",
    )
    colbert: str | None = option(
        None,
        "a late-interaction model (siamese train --late-interaction) served beside the "
        "fine-tuned one: exported, packaged with the MaxSim profiles, indexed with token "
        "vectors, evaluated",
        metavar="COLBERT_MODEL",
        group="serving and package",
    )
    full: bool = option(False, "the longer training recipe", action="store_true", group="base and recipe")
    recipe: str | None = option(
        None,
        "auto (default): the base model, the query tower (its length chosen along training) and the query "
        "tower merged back are scored on held-out training queries; a trained one is served only where it "
        "beats the base beyond noise and falls on no guard beyond noise (training/recipe.py) | fixed: the "
        "default recipe (or --full's) as it is",
        choices=("fixed", "auto"),
        group="base and recipe",
    )
    candidates: str | tuple | None = option(
        None,
        "--recipe auto's candidates, by name (base, query, query-merged, shared, shared-merged), 'cheap' or "
        "'all' (default: all where a GPU trains, the cheap ones on a CPU; the base is always one)",
        metavar="NAMES",
        group="base and recipe",
    )
    train: dict = field(default_factory=dict)  # TrainConfig values over the recipe's (its own flags)
    quantize: str | None = option(None, "serve an int8 graph", choices=("int8",), group="export")
    sts: str | None = str(STSB_TEST)  # --no-sts: None
    limit_queries: int | None = option(
        None, "evaluate on the first N queries", type=positive_int, group="evaluation"
    )
    guards: list = field(
        default_factory=lambda: list(GUARDS)
    )  # bundled guard names or BEIR folders (--guard)
    merge: float | str | None = option(
        None,
        "serve the fine-tuned model merged with its base (see `siamese merge`)",
        metavar="ALPHA|auto",
        type=alpha_value,
        group="base and recipe",
    )
    chunk_tokens: int | str | None = option(
        None,
        "embed documents as chunks of N tokens (package, index and "
        "evaluation), or 'auto': at the model's window when many documents "
        "exceed it; default: truncate",
        metavar="N|auto",
        type=chunk_tokens_value,
        group="serving and package",
    )
    chunk_overlap: int | None = option(
        None,
        "tokens neighbouring chunks share (default: 32, at most a quarter of the chunk)",
        type=int,
        group="serving and package",
    )
    dim: int | None = option(
        None,
        "serve the first DIM dimensions (package and index; train with --matryoshka so "
        "that they embed well on their own)",
        type=positive_int,
        group="serving and package",
    )
    bm25_weight: float | str = option(
        "auto",
        "hybrid-linear: normalised closeness + W · normalised BM25; auto "
        "(default): the W of "
        f"{', '.join(f'{w:g}' for w in BM25_WEIGHT_GRID)} that ranks the training "
        "queries best",
        metavar="W|auto",
        type=bm25_weight_value,
        group="serving and package",
    )
    max_links: int | None = option(
        None,
        "HNSW max-links-per-node (default: chosen for the corpus size, vespa_app/hnsw.py)",
        metavar="N",
        type=positive_int,
        group="serving and package",
    )
    explore: int | None = option(
        None,
        "HNSW neighbors-to-explore-at-insert (default: chosen for the corpus size)",
        metavar="N",
        type=positive_int,
        group="serving and package",
    )
    explore_additional: int | None = option(
        None,
        "HNSW exploration beyond targetHits a query asks for (hnsw.exploreAdditionalHits; the embedded "
        "backend's efSearch is targetHits + N; default: chosen for the corpus size)",
        metavar="N",
        type=int,
        group="serving and package",
    )
    vespa: str | None = option(
        None,
        "evaluate on Vespa: 'docker', a config server URL (:19071) or a query URL",
        group="serving and package",
    )
    skip_bad: bool = option(
        False, "drop malformed input lines, and say how many and why", action="store_true", group="data"
    )
    report_to: str | None = option(
        None,
        "where the training curve goes besides the model card: tensorboard "
        "(OUT/train/tensorboard; default where TensorBoard is installed) or none",
        choices=("tensorboard", "none"),
        group="output",
    )
    force: bool = option(
        False,
        "rebuild the stages in --out that were made from other data or settings (without it "
        "they are refused, each difference named)",
        action="store_true",
        group="output",
    )

    def hnsw_for(self, vectors: int) -> HnswSettings:
        """The HNSW settings for a corpus of ``vectors`` (chunks where documents are chunked), the flags given
        in place of the choice."""
        return for_corpus(vectors, self.max_links, self.explore, self.explore_additional)

    @classmethod
    def add_run_args(cls, parser) -> None:
        add_groups(parser)
        add_option_args(cls, parser)
        evaluation = arg_group(parser, "evaluation")
        evaluation.add_argument("--no-sts", action="store_true", help="skip the STS-B check")
        evaluation.add_argument(
            "--no-guards", action="store_true", help="skip the bundled out-of-domain guards (CISI, MedQuAD)"
        )
        evaluation.add_argument(
            "--guard",
            action="append",
            default=[],
            metavar="BEIR_DIR",
            help="a guard set of your own (repeatable): a BEIR folder with qrels/test.tsv",
        )

    @classmethod
    def from_args(cls, args, train: dict) -> RunOptions:
        options = cls(**given_options(cls, args), train=train)
        if options.pairs or options.corpus:
            options.data = None  # the user's own files, not a BEIR folder
        options.sts = None if args.no_sts else options.sts
        options.guards = ([] if args.no_guards else options.guards) + args.guard
        return options


LONG_SHARE = 0.2  # "auto" chunks when more than this share of documents would be truncated


def chunking_choice(options: RunOptions, corpus, export_dir: Path):
    """(chunker or None, what was chosen and why). "auto" chunks at the model's window when more than
    ``LONG_SHARE`` of the documents exceed it: short texts keep one vector each."""
    if options.chunk_tokens is None:
        return None, "off: documents truncated to the model's window"
    manifest = Manifest.load(export_dir)
    tokens = manifest.max_tokens if options.chunk_tokens == "auto" else int(options.chunk_tokens)
    overlap = default_overlap(tokens) if options.chunk_overlap is None else options.chunk_overlap
    chunker = Chunker.for_model(export_dir, tokens, overlap, prefix=manifest.prefixes["document"])
    if options.chunk_tokens != "auto":
        return chunker, f"on: chunks of {tokens} tokens sharing {overlap} (asked for)"
    long = sum(not chunker.fits(d.title + " " + d.text) for d in corpus) / max(len(corpus), 1)
    if long <= LONG_SHARE:
        return None, f"auto → off: {long:.0%} of documents exceed {tokens} tokens (≤ {LONG_SHARE:.0%})"
    return chunker, (
        f"auto → on: {long:.0%} of documents exceed the {tokens}-token window (> {LONG_SHARE:.0%}); "
        f"chunks of {tokens} tokens sharing {overlap}"
    )


def check_options(options: RunOptions, base: str) -> None:
    """Every option that can be judged before training, judged before it (minutes on real data): the chunking
    and --dim against the base model's window and width, the merge weight, the reference models."""
    options.hnsw_for(0)  # refuses HNSW settings it cannot build with, before training
    if options.train.get("late_interaction"):
        raise ConfigError(
            "siamese run trains, packages and indexes a single-vector model; a late-interaction model "
            "is served beside it: `siamese train --late-interaction --out COLBERT_RUN`, then "
            "`siamese run --colbert COLBERT_RUN`"
        )
    if (options.queries or options.qrels) and not (options.queries and options.qrels and options.corpus):
        flags = {"--queries": options.queries, "--qrels": options.qrels, "--corpus": options.corpus}
        given, missing = ([f for f, v in flags.items() if bool(v) is want] for want in (True, False))
        raise ConfigError(
            f"{' and '.join(given)} without {' and '.join(missing)}: evaluation needs the queries, "
            "their judgements (qrels) and the corpus they judge; give all three, or none to skip "
            "evaluation"
        )
    if options.train.get("eval_every"):
        raise ConfigError(
            "--eval-every evaluates during training on `siamese train --eval-data`; siamese run "
            "evaluates once, after training: drop --eval-every"
        )
    if options.colbert and model_kind(check_model_dir(options.colbert)) != "late":
        raise ConfigError(
            f"--colbert {options.colbert}: not a late-interaction model (train one with "
            "`siamese train --late-interaction`)"
        )
    base_dir = check_model_dir(base)
    window = options.train.get("max_length") or EncoderConfig.load(base_dir).max_length
    width = json.loads((base_dir / "config.json").read_text()).get("hidden_size")
    if isinstance(options.chunk_tokens, int):
        if options.chunk_tokens > window:
            raise ConfigError(
                f"--chunk-tokens {options.chunk_tokens} is above the model's window of {window} tokens"
            )
        AppOptions(chunk_tokens=options.chunk_tokens, chunk_overlap=options.chunk_overlap).check()
    elif options.chunk_overlap is not None and options.chunk_tokens is None:
        raise ConfigError(
            "--chunk-overlap needs --chunk-tokens (N or auto): without it documents are truncated"
        )
    if options.dim is not None and width and not 8 <= options.dim <= width:
        raise ConfigError(f"--dim {options.dim} must be between 8 and the model's {width} dimensions")
    if (
        options.merge is not None and options.train.get("tower", "shared") != "shared"
    ):  # without --tower, --merge trains shared
        raise ConfigError(
            f"--merge averages one model's weights with its base; --tower {options.train['tower']} trains "
            "two towers: drop one of the two"
        )
    if isinstance(options.merge, float) and not 0.0 <= options.merge <= 1.0:
        raise ConfigError(f"--merge {options.merge} must be in [0, 1] or auto")
    if options.merge == "auto" and not options.guards:
        raise ConfigError(
            "--merge auto chooses α on the guards' selection half: keep the guards (drop "
            "--no-guards) or give --guard DIR"
        )
    if options.recipe == "auto":
        clash = [
            flag
            for flag, given in (("--tower", "tower" in options.train), ("--merge", options.merge is not None))
            if given
        ]
        if clash:
            raise ConfigError(
                f"--recipe auto chooses the tower and whether to merge on your data: drop "
                f"{' and '.join(clash)}, or drop --recipe auto"
            )
    for reference in options.references:
        check_model_dir(reference)


def train_settings(options: RunOptions) -> dict:
    """The TrainConfig values the run gives over the recipe's: merging averages one model's weights with its
    base, so --merge trains a shared model where no --tower is given (and --recipe auto's settings are judged
    as shared weights take them, the candidate that takes every knob; each candidate sets its own tower)."""
    return (
        {"tower": "shared"} if options.merge is not None or options.recipe == "auto" else {}
    ) | options.train
