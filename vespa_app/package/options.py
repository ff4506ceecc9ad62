"""How `siamese app build` shapes a package, as data: ``AppOptions``, whose fields with help are its flags."""

from __future__ import annotations

from dataclasses import dataclass, replace

from common import cli
from common.chunking import default_overlap
from common.cli import app_name, bm25_weight_value, option, positive_int
from common.errors import ConfigError
from vespa_app.hnsw import CHOICES, HnswSettings, for_corpus
from vespa_app.serving import BM25_WEIGHT


@dataclass
class AppOptions:
    """How a package is shaped; each field with help is a flag of
    `siamese app build` (``common.cli.option``)."""

    name: str = option(
        "siamese",
        "the Vespa application name (default siamese; not taken from OUT_DIR's folder name)",
        type=app_name,
    )
    nodes: int = option(1, "content nodes (several: hosts.xml is written)", type=positive_int)
    redundancy: int = option(1, "copies of each document (at most --nodes)", type=positive_int)
    documents: int | None = option(
        None,
        "the corpus size (vectors: chunks where documents are chunked) the HNSW settings are chosen for "
        f"(default: up to {CHOICES[0][0]:,})",
        metavar="N",
        type=positive_int,
    )
    max_links_per_node: int | None = option(
        None,
        "HNSW max-links-per-node (default: chosen for --documents)",
        flag="--max-links",
        metavar="N",
        type=positive_int,
    )
    neighbors_to_explore_at_insert: int | None = option(
        None,
        "HNSW neighbors-to-explore-at-insert (default: chosen for --documents)",
        flag="--explore",
        metavar="N",
        type=positive_int,
    )
    explore_additional: int | None = option(
        None,
        "HNSW exploration beyond targetHits that queries ask for (hnsw.exploreAdditionalHits; default: "
        "chosen for --documents)",
        metavar="N",
        type=int,
    )
    hnsw: HnswSettings | None = None  # set by code (siamese run: chosen for its corpus); else from the flags
    # bfloat16: half the memory, ranking barely moves
    cell_type: str = option(
        "float",
        "bfloat16 embedding cells (half the memory)",
        flag="--bfloat16",
        action="store_const",
        const="bfloat16",
    )
    binarized: bool = option(
        False, "add a packed-bits field with hamming HNSW + re-rank", action="store_true"
    )
    cloud: bool = option(
        False,
        "the Vespa Cloud variant: nodes with resources, min-redundancy, no hosts.xml",
        action="store_true",
    )
    chunk_tokens: int | None = option(
        None,
        "chunked: a vector per chunk of this many tokens (at most the model's "
        "window); the feed sends the chunks (siamese feed --package)",
        type=positive_int,
    )
    chunk_overlap: int | None = option(
        None, "tokens neighbouring chunks share (default: 32, at most a quarter of the chunk)", type=int
    )
    dim: int | None = option(
        None,
        "serve the first DIM dimensions of the embedding (a model trained with "
        "--matryoshka); Vespa's embedder cuts, then normalises",
        type=positive_int,
    )
    colbert_cells: str = option(
        "int8",
        "with --colbert: packed sign bits (int8, 16 bytes a token at 128 dims) or "
        "bfloat16 (256 bytes a token)",
        choices=("int8", "bfloat16"),
    )
    bm25_weight: float = option(
        BM25_WEIGHT,
        "hybrid-linear: normalised closeness + W · normalised BM25 (default 1; "
        "siamese run chooses W on the training queries)",
        metavar="W",
        type=bm25_weight_value,
    )
    bm25_weight_choice: dict | None = None  # how it was chosen (recorded in models/package.json)

    @classmethod
    def add_args(cls, parser) -> None:
        cli.add_option_args(cls, parser)

    def __post_init__(self):
        if self.chunk_overlap is None:
            self.chunk_overlap = default_overlap(self.chunk_tokens) if self.chunk_tokens else 0

    @property
    def chunked(self) -> bool:
        return self.chunk_tokens is not None

    def hnsw_settings(self) -> HnswSettings:
        """As set by code, else chosen for ``documents`` with the flags given in place of the choice."""
        if self.hnsw:
            return self.hnsw
        chosen = for_corpus(
            self.documents or CHOICES[0][0],
            self.max_links_per_node,
            self.neighbors_to_explore_at_insert,
            self.explore_additional,
        )
        if self.documents:
            return chosen
        return replace(chosen, why=f"no --documents given: {chosen.why}")

    def check(self) -> None:
        if self.nodes < 1 or self.redundancy < 1 or self.redundancy > self.nodes:
            raise ConfigError(
                f"need 1 ≤ redundancy ≤ nodes, got redundancy {self.redundancy} and {self.nodes} nodes"
            )
        self.hnsw_settings()  # refuses settings HNSW cannot build with
        if self.cell_type not in ("float", "bfloat16"):
            raise ConfigError(f"cell type must be float or bfloat16, not {self.cell_type!r}")
        if self.colbert_cells not in ("int8", "bfloat16"):
            raise ConfigError(f"colbert cells must be int8 or bfloat16, not {self.colbert_cells!r}")
        if not 0.0 <= self.bm25_weight <= 100.0:
            raise ConfigError(f"--bm25-weight must be between 0 and 100, not {self.bm25_weight}")
        if self.chunked and self.binarized:
            raise ConfigError(
                "--binarized with --chunk-tokens is not offered: the binary profile re-ranks one packed "
                "vector per document, and Vespa refuses it over chunks (its second phase would yield "
                "a tensor per chunk). Choose one of the two."
            )
        if self.chunked and not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ConfigError(
                f"chunk overlap {self.chunk_overlap} must be at least 0 and under half of "
                f"{self.chunk_tokens} chunk tokens"
            )
