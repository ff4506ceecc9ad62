"""schemas/doc.sd: the document's fields (id, title and text for BM25; chunks when chunked), the embedding
field the embedder fills at feed time (HNSW), the colbert field, and the rank profiles of ``profiles.py``."""

from __future__ import annotations

from vespa.package import (
    HNSW,
    Document,
    Field,
    FieldSet,
    Function,
    GlobalPhaseRanking,
    RankProfile,
    Schema,
    SecondPhaseRanking,
    Summary,
)

from exporter.manifest import Manifest
from vespa_app import profiles
from vespa_app.package.options import AppOptions
from vespa_app.profiles import Profile
from vespa_app.serving import BM25_WEIGHT, COLBERT_EMBEDDER, DOCUMENT_EMBEDDER, EMBEDDER, SCHEMA

# What the embedder embeds for a document: the same text as ``common.data.doc_text``; in a chunked package,
# each chunk the feed sends (``common.chunking``, title leading each), into one vector per chunk.
EMBED_INPUT = '(input title || "") . " " . (input text || "")'
EMBED_CHUNKS = "input chunks"


def distance_metric(manifest: Manifest) -> str:
    # prenormalized-angular is only right when both sides are unit vectors; the embedder normalises both.
    return "prenormalized-angular" if manifest.normalize else "angular"


def _rank_profile(
    p: Profile, d: int, colbert: Manifest | None = None, cells: str = "int8", bm25_weight: float = BM25_WEIGHT
) -> RankProfile:
    c = colbert.dimension if colbert else 0
    inputs = [(f"query({name})", kind.format(d=d, d8=d // 8, c=c)) for name, kind in p.inputs.items()]
    functions = {
        n: e.replace(profiles.MAXSIM, profiles.maxsim_expression(cells)) for n, e in p.functions.items()
    }
    phase = {}
    if p.second_phase:
        phase["second_phase"] = SecondPhaseRanking(
            p.second_phase.expression, rerank_count=p.second_phase.rerank_count
        )
    if p.global_phase:
        phase["global_phase"] = GlobalPhaseRanking(
            p.global_expression(bm25_weight), rerank_count=p.global_phase.rerank_count
        )
    return RankProfile(
        p.name,
        inherits=", ".join(p.inherits) or None,
        inputs=inputs or None,
        functions=[Function(n, e) for n, e in functions.items()] or None,
        first_phase=p.first_phase,
        match_features=list(p.match_features),
        summary_features=list(p.summary_features) or None,
        **phase,
    )


def embedding_type(cell_type: str, size: int, chunked: bool) -> str:
    """The embedding field's tensor type: a vector, or one per chunk."""
    return f"tensor<{cell_type}>({'chunk{}, ' if chunked else ''}x[{size}])"


def _embedding_field(
    name: str, cell_type: str, size: int, metric: str, options: AppOptions, embedder: str = EMBEDDER
) -> Field:
    """A synthetic field (outside the document) that Vespa's embedder fills at feed time from title and text,
    or, chunked, with one vector per chunk (HNSW over all of
    them; a document is as close as its best chunk)."""
    hnsw = options.hnsw_settings()
    return Field(
        name,
        embedding_type(cell_type, size, options.chunked),
        is_document_field=False,
        indexing=[
            EMBED_CHUNKS if options.chunked else EMBED_INPUT,
            f"embed {embedder}",
            "attribute",
            "index",
        ],
        ann=HNSW(
            distance_metric=metric,
            max_links_per_node=hnsw.max_links,
            neighbors_to_explore_at_insert=hnsw.explore_at_insert,
        ),
    )


def colbert_type(cells: str, dim: int) -> str:
    """The colbert field's tensor type: a vector per token, its
    sign bits packed 8 to an int8 cell, or bfloat16."""
    return f"tensor<{cells}>(dt{{}}, x[{dim // 8 if cells == 'int8' else dim}])"


def _colbert_field(manifest: Manifest, cells: str) -> Field:
    """A vector per document token from the colbert-embedder: int8 packs each vector's sign bits (Vespa's
    embedder binarizes for an int8 target), bfloat16 keeps them at half precision. An attribute for MaxSim in
    the rank profiles; not indexed (no HNSW over tokens)."""
    return Field(
        "colbert",
        colbert_type(cells, manifest.dimension),
        is_document_field=False,
        indexing=[EMBED_INPUT, f"embed {COLBERT_EMBEDDER}", "attribute"],
    )


def document_fields(
    manifest: Manifest | None, options: AppOptions, colbert: Manifest | None = None
) -> Schema:
    """The schema without its rank profiles: what a fed document holds. ``m``: the single-vector export (None:
    a late-interaction export served alone); a two-tower one's documents embed with its document tower."""
    d = (
        (options.dim or manifest.dimension) if manifest else 0
    )  # a smaller tensor than the model's output: Vespa keeps its first d values
    body = "chunks" if options.chunked else "text"
    document = Document(
        fields=[
            Field("id", "string", indexing=["summary", "attribute"]),
            Field("title", "string", indexing=["index", "summary"], index="enable-bm25"),
            # chunked: the whole text is kept for display; BM25 and the embedder read the chunks
            Field(
                "text",
                "string",
                indexing=["summary"] if options.chunked else ["index", "summary"],
                index=None if options.chunked else "enable-bm25",
            ),
            # Each hit's summary holds only its best chunk: the
            # element the profile's best_chunk feature names.
            *(
                [
                    Field(
                        "chunks",
                        "array<string>",
                        indexing=["index", "summary"],
                        index="enable-bm25",
                        summary=Summary(select_elements_by=profiles.BEST_CHUNK_FN),
                    )
                ]
                if options.chunked
                else []
            ),
        ]
    )
    schema = Schema(SCHEMA, document, fieldsets=[FieldSet("default", ["title", body])])
    embedder = DOCUMENT_EMBEDDER if manifest and manifest.query_tower else EMBEDDER
    if manifest:
        schema.add_fields(
            _embedding_field("embedding", options.cell_type, d, distance_metric(manifest), options, embedder)
        )
    if manifest and options.binarized:
        # Packed sign bits (D/8 int8 cells, hamming distance) for a cheap first pass over a large corpus;
        # the float field above, kept for re-ranking, can be made `paged` to leave memory.
        schema.add_fields(_embedding_field("embedding_binary", "int8", d // 8, "hamming", options, embedder))
    if colbert:
        schema.add_fields(_colbert_field(colbert, options.colbert_cells))
    return schema


def schema(manifest: Manifest | None, options: AppOptions, colbert: Manifest | None = None) -> Schema:
    s = document_fields(manifest, options, colbert)
    d = (options.dim or manifest.dimension) if manifest else 0
    # Vespa's embedder takes the target tensor type from the rank profile's inputs, so a query input is
    # declared only where it is used: a BM25 query embeds nothing.
    for profile in profiles.in_package(
        options.binarized, options.chunked, colbert=colbert is not None, single=manifest is not None
    ):
        s.add_rank_profile(_rank_profile(profile, d, colbert, options.colbert_cells, options.bm25_weight))
    return s
