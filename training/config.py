"""A training run's configuration as plain data.

The defaults of ``TrainConfig`` *are* the default recipe (sized for a 2-core CPU: a few minutes); ``RECIPES``
names what another recipe changes. Command lines derive their flags from the fields below, so a new knob
is one line here. Nothing in this module imports torch: building a command line stays fast.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from common.cli import (
    add_option_args,
    given_options,
    non_negative_float,
    non_negative_int,
    option,
    positive_float,
    positive_int,
)
from common.errors import ConfigError, MissingInputError
from common.poolings import POOLINGS

from .model_dir import upgrade

SIZES = re.compile(r"(\s*[1-9]\d*\s*,)*\s*([1-9]\d*)?\s*")  # "384, 256,128": nested embedding sizes
TOWERS = ("shared", "query", "adapter", "separate")  # --tower (training/towers.py)
FROZEN_DOCUMENT = ("query", "adapter")  # towers whose documents keep the base model's vectors
WINDOW = re.compile(r"\d+-\d+")  # --mine-window FIRST-LAST
SIZES_HELP = "matryoshka must be positive sizes separated by commas, e.g. 384,256,128"


def matryoshka_dims(text: str) -> list[int]:
    """``--matryoshka`` sizes, largest first, each once; ConfigError for anything but positive integers."""
    if SIZES.fullmatch(text) is None:
        raise ConfigError(f"{SIZES_HELP}, not {text!r}")
    return sorted({int(d) for d in text.split(",") if d.strip()}, reverse=True)


@dataclass
class TrainConfig:
    base: str  # a local directory or a hub id, as the user named it
    out: str
    data: str = ""  # what the pairs came from (recorded, for the model card)
    # the hub commit the base resolved to (recorded at the start of training)
    base_revision: str | None = None
    pairs_fingerprint: str = ""  # the training pairs' hash (recorded: a --resume on other pairs is refused)
    epochs: int = option(2, "passes over the pairs", type=positive_int)
    max_steps: int = option(
        0, "stop after this many steps (0: as many as the epochs give)", type=non_negative_int
    )
    batch_size: int = option(
        32, "pairs per batch (each query's in-batch negatives: the others)", type=positive_int
    )
    lr: float = option(1e-4, "peak learning rate (AdamW)", type=positive_float)
    warmup_ratio: float = option(
        0.1, "share of the steps with a rising learning rate", type=non_negative_float
    )
    weight_decay: float = option(0.01, "", type=non_negative_float)
    max_grad_norm: float = option(1.0, "", type=positive_float)
    # Served at the base model's own window, so the base model it is compared with is the one a user would
    # deploy; trained at a CPU-sized window (texts are cut to it while training only).
    max_length: int | None = option(
        None,
        "max tokens per text as served and evaluated (default: the "
        "base model's own window; late interaction: --train-length)",
        type=positive_int,
    )
    train_length: int = option(
        128, "max tokens per text while training (at most --max-length)", type=positive_int
    )
    pooling: str | None = option(
        None, "pooling (default: the base model's)", type=str, choices=tuple(POOLINGS)
    )
    normalize: bool | None = option(None, "unit-length embeddings (default: the base model's)", type=bool)
    query_prefix: str | None = option(None, 'prepended to every query, e.g. "query: "', type=str)
    document_prefix: str | None = option(
        None,
        'prepended to every document, e.g. "passage: " (the manifest\'s and Vespa\'s prepend "document")',
        type=str,
        aliases=("--passage-prefix",),
    )
    loss: str = option(
        "infonce",
        "the loss, by name (training/losses/): infonce | symmetric-infonce (shared and "
        "separate towers; in-batch and hard negatives) | corpus-infonce (the query and adapter towers' "
        "default: every document of the corpus, by its frozen vector)",
        type=str,
    )
    temperature: float | None = option(
        None,
        "InfoNCE temperature τ (default: from the base model's "
        "similarity scale, training/temperature.py: 0.05 for MiniLM, 0.02 for bge)",
        type=positive_float,
    )
    base_margin: float | None = None  # the base's margin that set τ (recorded; training/temperature.py)
    # The share of the planned steps to train (and the schedule to fit in them): 1, or the length
    # `--recipe auto` chose along held-out queries (training/recipe.py). Set by code, not a flag.
    length: float = 1.0
    # The default anchor (MSE, λ 20) is what kept unseen queries, every guard and STS-B at the base model's
    # level while SciFact rose 6.4 points
    # (benchmarks/generalization.py, docs/evaluation.md); without it the model forgets.
    anchor: str = option(
        "mse",
        "anchor to the frozen base model on general text against forgetting: "
        "none | mse | kl (training/losses/)",
        type=str,
    )
    anchor_weight: float = option(20.0, "λ of the anchor term", type=non_negative_float)
    anchor_batch: int = option(64, "general texts a step for the anchor", type=positive_int)
    anchor_data: str | None = option(
        None,
        "general text for the anchor: a .txt (a text a line) or an STS .csv "
        "(default: bundled STS-B train sentences)",
        type=str,
    )
    symmetric: bool = option(False, "add the passage→query InfoNCE term", type=bool)
    hard_negatives: int = option(0, "mined negatives per pair (0: none; --miner: how)", type=non_negative_int)
    corpus_pairs: str = option(
        "", "pairs made from the corpus, mixed in: any of title,ict,crop (training/corpus_pairs.py)", type=str
    )
    corpus_pairs_ratio: float = option(1.0, "corpus pairs per labelled pair", type=non_negative_float)
    general_pairs: str | None = option(
        None,
        "labelled general-domain pairs mixed in (.jsonl, BEIR folder, or "
        "STS .csv such as common/datasets/stsb/stsb-en-train.csv)",
        type=str,
    )
    general_pairs_ratio: float = option(0.5, "general pairs per labelled pair", type=non_negative_float)
    matryoshka: str = option(
        "",
        "nested embedding sizes, e.g. 384,256,128,64: the loss summed over each "
        "prefix, so `siamese app build --dim D` can serve one (training/losses/)",
        type=str,
    )
    late_interaction: bool = option(
        False,
        "train a ColBERT-style model: a vector per token through a linear "
        "head, scored by MaxSim, inputs built as Vespa's colbert-embedder builds them "
        "(training/late_interaction.py); documents keep max_length tokens",
        type=bool,
    )
    colbert_dim: int = option(128, "late interaction: dimensions of each token vector", type=positive_int)
    # The teacher term is what kept unseen queries and the guards up (benchmarks/late_interaction.py,
    # docs/late-interaction.md): without it the new head learns SciFact's training documents and little else.
    colbert_teacher_weight: float = option(
        1.0,
        "late interaction: λ of a KL term holding each "
        "query's scores over the batch to the base single-vector model's "
        "(0: labels alone)",
        type=non_negative_float,
    )
    query_tokens: int = option(
        32, "late interaction: query length, padded with [MASK] (Vespa's max-query-tokens)", type=positive_int
    )
    chunk_positives: str = option(
        "",
        "positives longer than max_length become chunks, as a chunked package "
        "serves them: best (the chunk the base model finds nearest the query) | all (a pair "
        "per chunk) (training/chunk_positives.py)",
        type=str,
        choices=("best", "all"),
    )
    miner: str = option(
        "bm25",
        "how negatives are mined (training/negatives.py): bm25 (shared words) | dense "
        "(the base model's own ranking, ranks --mine-window, less those within --mine-margin of the "
        "positive)",
        type=str,
        choices=("bm25", "dense"),
    )
    mine_depth: int = option(10, "draw mined negatives from this many BM25 hits", type=positive_int)
    mine_window: str = option(
        "10-100", "dense miner: the ranks negatives are drawn from, FIRST-LAST", type=str
    )
    mine_margin: float = option(
        0.05,
        "dense miner: a negative scores at least this much below "
        "the pair's positive (cosine), else it is taken for an unlabelled positive",
        type=non_negative_float,
    )
    grad_cache_chunk: int = option(
        0, "gradient caching chunk size: batches larger than memory allows (0: off)", type=non_negative_int
    )
    checkpoint_every: int = option(0, "steps between checkpoints (0: none)", type=non_negative_int)
    keep_checkpoints: int = option(2, "", type=positive_int)
    eval_every: int = option(0, "steps between evaluations (needs --eval-data)", type=non_negative_int)
    seed: int = option(42, "", type=int)
    tower: str = option(
        "shared",
        "which towers train (training/towers.py): shared (one model for queries and "
        "documents) | query (documents keep the base model's vectors: a new model needs no re-feed) | "
        "adapter (the base plus a trained D×D map on queries) | separate (two models); query changes the "
        "anchor's defaults to λ 40 and 32 texts a step, adapter the learning rate to 1e-3; the default "
        "recipe trains shared where --late-interaction, --matryoshka, --grad-cache-chunk, "
        "--checkpoint-every or --eval-every is given",
        type=str,
        choices=TOWERS,
        group="base and recipe",
    )

    def check(self) -> None:
        """Fail before any work on values that cannot be right."""
        from .losses import ANCHORS, LOSSES

        rules = [
            (self.epochs >= 1, "epochs must be ≥ 1"),
            (self.max_steps >= 0, "max steps must be ≥ 0"),
            (self.batch_size >= 2, "batch size must be ≥ 2 (in-batch negatives need company)"),
            (self.lr > 0, "learning rate must be > 0"),
            (0 <= self.warmup_ratio < 1, "warmup ratio in [0, 1)"),
            (self.temperature is None or self.temperature > 0, "temperature τ must be > 0"),
            (self.max_length is None or self.max_length >= 8, "max length must be ≥ 8"),
            (self.train_length >= 8, "train length must be ≥ 8"),
            (
                self.pooling is None or self.pooling in POOLINGS,
                f"pooling must be one of {', '.join(POOLINGS)}",
            ),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, not {self.loss!r}"),
            (
                self.loss not in LOSSES or self.tower in LOSSES[self.loss].towers,
                f"--loss {self.loss} trains the "
                f"{' and '.join(LOSSES.get(self.loss, LOSSES['infonce']).towers)} "
                f"towers, not the {self.tower} tower (its losses: "
                f"{', '.join(n for n, r in LOSSES.items() if self.tower in r.towers)})",
            ),
            (self.anchor in ANCHORS, f"anchor must be one of {', '.join(ANCHORS)}, not {self.anchor!r}"),
            (self.hard_negatives >= 0, "hard negatives must be ≥ 0"),
            (self.chunk_positives in ("", "best", "all"), "chunk positives must be best, all or empty"),
            (SIZES.fullmatch(self.matryoshka) is not None, f"{SIZES_HELP}, not {self.matryoshka!r}"),
            (
                not self.late_interaction or self.anchor == "none",
                "late interaction has no single vector to anchor to the base model: use --anchor none",
            ),
            (not self.late_interaction or not self.matryoshka, "late interaction has no Matryoshka prefixes"),
            (
                not self.late_interaction or self.colbert_dim % 8 == 0,
                "colbert dim must be a multiple of 8 (Vespa packs its bits into int8 cells)",
            ),
            (
                set(self.corpus_kinds) <= {"title", "ict", "crop"},
                f"corpus pairs must be among title, ict, crop, not {self.corpus_pairs!r}",
            ),
            (self.grad_cache_chunk >= 0, "grad cache chunk must be ≥ 0"),
            (self.tower in TOWERS, f"tower must be shared, query, adapter or separate, not {self.tower!r}"),
            (
                self.tower == "shared"
                or not (
                    self.late_interaction
                    or self.matryoshka
                    or self.grad_cache_chunk
                    or self.checkpoint_every
                    or self.eval_every
                ),
                "--tower query, adapter and separate train without --late-interaction, --matryoshka, "
                "--grad-cache-chunk, --checkpoint-every and --eval-every",
            ),
            (self.checkpoint_every >= 0, "checkpoint every must be ≥ 0"),
            (self.miner in ("bm25", "dense"), f"miner must be bm25 or dense, not {self.miner!r}"),
            (
                WINDOW.fullmatch(self.mine_window) is not None and self.window[0] < self.window[1],
                "mine window must be FIRST-LAST ranks with FIRST < LAST, e.g. 10-100, not "
                f"{self.mine_window!r}",
            ),
        ]
        for ok, message in rules:
            if not ok:
                raise ConfigError(f"bad training setting: {message}")

    @property
    def encoding(self) -> dict:
        """How the run embeds, as ``Encoder.load`` overrides (None: the base model's own)."""
        return {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "query_prefix": self.query_prefix,
            "document_prefix": self.document_prefix,
        }

    @property
    def matryoshka_dims(self) -> list[int]:
        return matryoshka_dims(self.matryoshka)

    @property
    def window(self) -> tuple[int, int]:
        """``--mine-window`` as (first, last) ranks, counted from 0 as Python slices are."""
        first, last = (int(x) for x in self.mine_window.split("-"))
        return first, last

    @property
    def corpus_kinds(self) -> list[str]:
        return [k.strip() for k in self.corpus_pairs.split(",") if k.strip()]

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path) -> TrainConfig:
        path = Path(path)
        if not path.exists():
            raise MissingInputError(
                f"{path}: no training configuration here. Start a run with `siamese train`."
            )
        return cls.from_record(json.loads(path.read_text()))

    @classmethod
    def from_record(cls, saved: dict) -> TrainConfig:
        """The configuration a model directory recorded (``ModelRecord.train``), under today's field names."""
        saved = upgrade(dict(saved))
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


# What each recipe changes from the defaults above. The default trains a query tower over the base model's
# document vectors: on SciFact it beat one shared model on every column, unseen queries and guards included,
# in a third of the training time, and its corpus is embedded once (benchmarks/towers.py, docs/towers.md).
RECIPES = {
    "default": {"tower": "query"},
    "full": {"epochs": 8, "lr": 5e-5, "train_length": 256, "hard_negatives": 1},  # a GPU, or patience
}
# What only one shared model can do: asking for one of these without --tower trains a shared model.
SHARED_ONLY = ("late_interaction", "matryoshka", "grad_cache_chunk", "checkpoint_every", "eval_every")


# What a two-tower recipe changes from the above (benchmarks/towers.py, docs/towers.md): a query tower holds
# its queries to the base more firmly (λ 40; 32 general texts a step, which also make it a third of the shared
# recipe's time), and a linear map from the identity needs a larger step than an encoder.
TOWER_RECIPES = {
    "query": {"anchor_weight": 40.0, "anchor_batch": 32, "loss": "corpus-infonce"},
    "adapter": {"lr": 1e-3, "loss": "corpus-infonce"},
}


def recipe_config(base: str, out: str, full: bool = False, **overrides) -> TrainConfig:
    """The recipe's configuration with ``overrides`` (None values are ignored) on top, checked."""
    given = {k: v for k, v in overrides.items() if v is not None}
    recipe = RECIPES["full" if full else "default"]
    shared_only = any((recipe | given).get(k) for k in SHARED_ONLY)
    tower = given.get("tower") or ("shared" if shared_only else recipe.get("tower", "shared"))
    values = recipe | TOWER_RECIPES.get(tower, {}) | given | {"tower": tower}
    if tower in FROZEN_DOCUMENT and "hard_negatives" not in given:
        values.pop(
            "hard_negatives", None
        )  # the full recipe's: a frozen document tower has every document as negative
    if values.get("late_interaction") and "anchor" not in values:
        values["anchor"] = "none"  # the default anchor holds a single vector to the base model's
    cfg = TrainConfig(base=base, out=out, **values)
    cfg.check()
    check_given(cfg, set(given) - {"data"})
    return cfg


# When a knob takes effect. A knob the user gives where it would change nothing is refused, never dropped:
# (knob, does it act in this configuration, why not). Tested for every knob and tower (tests/test_knobs.py):
# each either changes what training makes or is refused here.
FROZEN_WHY = (
    "the {tower} tower scores each query against every document's frozen vector (the corpus is every "
    "query's negatives, and there is no passage-side term)"
)
KNOB_RULES = [
    *(
        (k, lambda c: c.late_interaction, "only late interaction has it (--late-interaction)")
        for k in ("colbert_dim", "query_tokens", "colbert_teacher_weight")
    ),
    *(
        (k, lambda c: c.anchor != "none", "there is no anchor (--anchor none)")
        for k in ("anchor_weight", "anchor_batch", "anchor_data")
    ),
    *(
        (k, lambda c: c.hard_negatives > 0, "no negatives are mined (--hard-negatives 0)")
        for k in ("miner", "mine_depth", "mine_window", "mine_margin")
    ),
    ("mine_depth", lambda c: c.miner == "bm25", "the dense miner draws from --mine-window"),
    *(
        (k, lambda c: c.miner == "dense", "only the dense miner has it (--miner dense)")
        for k in ("mine_window", "mine_margin")
    ),
    ("corpus_pairs_ratio", lambda c: bool(c.corpus_pairs), "no corpus pairs are made (no --corpus-pairs)"),
    (
        "general_pairs_ratio",
        lambda c: bool(c.general_pairs),
        "no general pairs are mixed in (no --general-pairs)",
    ),
    (
        "keep_checkpoints",
        lambda c: c.checkpoint_every > 0,
        "no checkpoints are written (--checkpoint-every 0)",
    ),
    *(
        (k, lambda c: c.tower not in FROZEN_DOCUMENT, FROZEN_WHY)
        for k in ("symmetric", "hard_negatives", "miner", "mine_depth", "mine_window", "mine_margin")
    ),
]


def check_given(cfg: TrainConfig, given: set[str]) -> None:
    """Refuse, in one line, every knob in ``given`` that this configuration would ignore (asking for a knob's
    default is never refused: it is what happens)."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    ignored = [
        f"--{knob.replace('_', '-')} ({why.format(tower=cfg.tower)})"
        for knob, acts, why in KNOB_RULES
        if knob in given and getattr(cfg, knob) != defaults[knob] and not acts(cfg)
    ]
    if ignored:
        raise ConfigError(
            f"these settings would change nothing in this training, so they are refused: "
            f"{'; '.join(dict.fromkeys(ignored))}. Drop them, or add what they need."
        )


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """One flag per ``TrainConfig`` option (``--batch-size``, ``--symmetric/--no-symmetric``, ...), its help
    naming the default recipe's value; unset flags are None, so the recipe's value stands."""

    def default(f) -> str:
        value = RECIPES["default"].get(f.name, f.default)
        return f"default recipe: {value if value is not None else BASES}"

    add_option_args(TrainConfig, parser, default, group="training")


BASES = "the base model's"


def config_overrides(args: argparse.Namespace) -> dict:
    """The options a parsed command line set."""
    return given_options(TrainConfig, args)
