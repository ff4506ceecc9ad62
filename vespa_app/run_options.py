"""What `siamese run` does, as data: ``RunOptions``, whose fields with help are the command's flags."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from common.bundled import GUARDS, SCIFACT, STSB_TEST
from common.cli import alpha_value, bm25_weight_value, chunk_tokens_value, positive_int

from .serving import BM25_WEIGHT_GRID


def flag(default=None, help: str = "", **argparse_kw):
    """A RunOptions field that `siamese run` takes as ``--field-name`` (``argparse_kw``: type, action, flag...)."""
    factory = {"default_factory": default} if callable(default) else {"default": default}
    return field(**factory, metadata={"help": help, **argparse_kw})


@dataclass
class RunOptions:
    """What `siamese run` does, as data: each field with help is a flag (``add_run_args``, ``from_args``)."""
    out: str = flag("runs/latest", "where the run's stages and report go")
    data: str | None = flag(str(SCIFACT), "a BEIR folder: train on its train split, evaluate on test (default: "
                            "the bundled SciFact)")
    pairs: str | None = flag(None, "your training pairs (.jsonl / .csv / BEIR folder)")
    corpus: str | None = flag(None, "your corpus .jsonl to index")
    queries: str | None = flag(None, "your evaluation queries .jsonl")
    qrels: str | None = flag(None, "your evaluation judgements .tsv")
    train_split: str = "train"
    eval_split: str = "test"
    base: str | None = flag(None, "base model: a local directory or a hub id (default: all-MiniLM-L6-v2)")
    references: list = flag(list, "an off-the-shelf model (directory or hub id) to evaluate beside ours, zero-shot "
                            "and + BM25, at its own window (repeatable); report.md says whether fine-tuning beat it",
                            flag="--reference", action="append", metavar="MODEL")
    colbert: str | None = flag(None, "a late-interaction model (siamese train --late-interaction) served beside the "
                               "fine-tuned one: exported, packaged with the MaxSim profiles, indexed with token "
                               "vectors, evaluated", metavar="COLBERT_MODEL")
    full: bool = flag(False, "the longer training recipe", action="store_true")
    train: dict = field(default_factory=dict)  # TrainConfig values over the recipe's (its own flags)
    quantize: str | None = flag(None, "serve an int8 graph", choices=("int8",))
    sts: str | None = str(STSB_TEST)  # --no-sts: None
    limit_queries: int | None = flag(None, "evaluate on the first N queries", type=positive_int)
    guards: list = field(default_factory=lambda: list(GUARDS))  # bundled guard names or BEIR folders (--guard)
    merge: float | str | None = flag(None, "serve the fine-tuned model merged with its base (see `siamese merge`)",
                                     metavar="ALPHA|auto", type=alpha_value)
    chunk_tokens: int | str | None = flag(None, "embed documents as chunks of N tokens (package, index and "
                                          "evaluation), or 'auto': at the model's window when many documents "
                                          "exceed it; default: truncate", metavar="N|auto", type=chunk_tokens_value)
    chunk_overlap: int | None = flag(None, "tokens neighbouring chunks share (default: 32, at most a quarter of the "
                                     "chunk)", type=int)
    dim: int | None = flag(None, "serve the first DIM dimensions (package and index; train with --matryoshka so "
                           "that they embed well on their own)", type=positive_int)
    bm25_weight: float | str = flag("auto", "hybrid-linear: normalised closeness + W · normalised BM25; auto "
                                    "(default): the W of "
                                    f"{', '.join(f'{w:g}' for w in BM25_WEIGHT_GRID)} that ranks the training "
                                    "queries best", metavar="W|auto", type=bm25_weight_value)
    vespa: str | None = flag(None, "evaluate on Vespa: 'docker', a config server URL (:19071) or a query URL")
    skip_bad: bool = flag(False, "drop malformed input lines, and say how many and why", action="store_true")

    @classmethod
    def add_run_args(cls, parser) -> None:
        for f in fields(cls):
            if "help" in f.metadata:
                kw = {k: v for k, v in f.metadata.items() if k != "flag"}
                parser.add_argument(f.metadata.get("flag", "--" + f.name.replace("_", "-")), dest=f.name,
                                    default=None, **kw)
        parser.add_argument("--no-sts", action="store_true", help="skip the STS-B check")
        parser.add_argument("--no-guards", action="store_true", help="skip the bundled out-of-domain guards (CISI, "
                                                                     "MedQuAD)")
        parser.add_argument("--guard", action="append", default=[], metavar="BEIR_DIR",
                            help="a guard set of your own (repeatable): a BEIR folder with qrels/test.tsv")

    @classmethod
    def from_args(cls, args, train: dict) -> "RunOptions":
        given = {f.name: getattr(args, f.name) for f in fields(cls)
                 if "help" in f.metadata and getattr(args, f.name, None) is not None}
        o = cls(**given, train=train)
        if o.pairs or o.corpus:
            o.data = None  # the user's own files, not a BEIR folder
        o.sts = None if args.no_sts else o.sts
        o.guards = ([] if args.no_guards else o.guards) + args.guard
        return o
