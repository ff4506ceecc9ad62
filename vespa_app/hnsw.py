"""HNSW settings chosen for a corpus, in the package, the query and the embedded backend alike.

Three numbers decide how much of exact search's top hits HNSW finds:

- ``max_links``: max-links-per-node in the schema (faiss's M): the graph's degree, and 8·M bytes a document;
- ``explore_at_insert``: neighbors-to-explore-at-insert (faiss's efConstruction): build time;
- ``explore_additional``: the query's ``hnsw.exploreAdditionalHits``. Vespa explores targetHits + this many
  candidates; the embedded backend sets faiss's efSearch to the same sum, so that what we measure here is
  what the deployed package does.

``for_corpus`` picks them by corpus size from ``CHOICES``, the cheapest settings that kept recall@10 at 0.95
or more and recall@100 at 0.98 or more on benchmarks/hnsw.py's curves (docs/scale.md, "Choosing HNSW
settings"): the fewest links first (memory, what a content node runs out of), then the least exploration
(latency: a millisecond or two where embedding the query takes ten). Every `siamese run` measures what it
serves against exact search (``served_recall`` in results.json), so a corpus the curves misjudge is named in
its report.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from common.errors import ConfigError

RECALL_GOAL = 0.95  # recall@10 against exact search that a served dense profile must reach
RECALL_100_GOAL = 0.98  # recall@100 the chosen settings reached on the curves (hybrid fuses the top 100)

# (up to this many documents, max_links, explore_at_insert, explore_additional), measured at each row's size
# by benchmarks/hnsw.py on 384-dimensional vectors (docs/hnsw.json); past the last size the last row, said in
# ``why``. Recall falls as a corpus grows, so a corpus between two sizes takes the larger one's row.
CHOICES = (
    (10_000, 16, 200, 300),
    (100_000, 32, 200, 900),
    (1_000_000, 32, 200, 3900),
)


@dataclass(frozen=True)
class HnswSettings:
    max_links: int = CHOICES[0][1]
    explore_at_insert: int = CHOICES[0][2]
    explore_additional: int = CHOICES[0][3]
    why: str = ""

    def __post_init__(self):
        if self.max_links < 2 or self.explore_at_insert < self.max_links or self.explore_additional < 0:
            raise ConfigError(
                f"HNSW needs max-links-per-node ≥ 2 (got {self.max_links}), neighbors-to-explore-at-insert ≥ "
                f"max links (got {self.explore_at_insert}) and explore-additional ≥ 0 "
                f"(got {self.explore_additional})"
            )

    def explored(self, target_hits: int) -> int:
        """Candidates a query explores: Vespa's targetHits + exploreAdditionalHits, faiss's efSearch."""
        return target_hits + self.explore_additional

    def record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict | None) -> HnswSettings:
        """A package's or an index's record; one written before the settings were recorded is what it was
        built with then (16 links, 200 at insert) and explores no additional hits, as its queries did."""
        return cls(**record) if record else cls(16, 200, 0, "recorded before HNSW settings were chosen")


def for_corpus(
    documents: int,
    max_links: int | None = None,
    explore_at_insert: int | None = None,
    explore_additional: int | None = None,
) -> HnswSettings:
    """The settings for a corpus of ``documents`` vectors (chunks, where a document has several); each one
    given replaces the chosen one, and ``why`` says which were chosen and which given."""
    row = next((r for r in CHOICES if documents <= r[0]), CHOICES[-1])
    chosen = (
        f"chosen for {documents:,} vectors: the row for up to {row[0]:,}, where recall@10 was "
        f"≥ {RECALL_GOAL} and recall@100 ≥ {RECALL_100_GOAL} on benchmarks/hnsw.py's curves"
    )
    if documents > CHOICES[-1][0]:
        chosen = f"the largest measured ({CHOICES[-1][0]:,}) for {documents:,} vectors: measure served recall"
    given = {
        name: value
        for name, value in (
            ("max_links", max_links),
            ("explore_at_insert", explore_at_insert),
            ("explore_additional", explore_additional),
        )
        if value is not None
    }
    settings = dict(zip(("max_links", "explore_at_insert", "explore_additional"), row[1:])) | given
    why = chosen + (f"; given: {', '.join(f'{k} {v}' for k, v in given.items())}" if given else "")
    return HnswSettings(**settings, why=why)
