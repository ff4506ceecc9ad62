"""`siamese app build EXPORT_DIR OUT_DIR`: the Vespa application package, generated from manifest.json alone.

The package reads top to bottom like a Vespa sample app::

    services.xml     container (search, document-api, hugging-face-embedder) + content
    hosts.xml        only for a multi-node self-hosted cluster
    schemas/doc.sd   id/title/text (BM25) + embedding (HNSW, filled by the embedder) + the rank profiles
                     of ``profiles.py``; a query embeds with input.query(q)=embed(embedder, @query).
                     Chunked (--chunk-tokens): a chunks array (BM25) embedded into tensor(chunk{}, x[D])
    models/package.json   what the package serves, recorded once (``app_package.AppPackage``: the only
                          reader): kind, dimensions, chunking, cells, embedders, BM25 weight, feed key
    models/model.onnx, models/tokenizer.json, models/manifest.json
    models/query/         a two-tower export's query tower (the embedder every query names)
    models/colbert/       packages built with --colbert: the late-interaction export (its colbert-embedder
                          fills the colbert field, a vector per token, and query(qt) for the MaxSim profiles).
                          `siamese app build COLBERT_EXPORT OUT` serves it alone: no embedding field, no
                          hugging-face-embedder, and the profiles bm25 and bm25-colbert.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from vespa.configuration import services as vt
from vespa.package import (HNSW, ApplicationPackage, Document, Field, FieldSet, Function, GlobalPhaseRanking,
                           RankProfile, Schema, SecondPhaseRanking, ServicesConfiguration, Summary)

from common.atomic import atomic_dir, check_output
from common.errors import ConfigError
from common.late import TOKENIZER_MAX
from common.lock import locks
from exporter.manifest import Manifest

from . import profiles
from .profiles import Profile
from .app_package import package_record
from .serving import (BM25_WEIGHT, COLBERT_DIR, COLBERT_EMBEDDER, DOCUMENT_EMBEDDER, EMBEDDER,
                      HNSW_EXPLORE_AT_INSERT, HNSW_MAX_LINKS, QUERY_TOWER_DIR, SCHEMA)

# What the embedder embeds for a document: the same text as ``common.data.doc_text``; in a chunked package,
# each chunk the feed sends (``common.chunking``, title leading each), into one vector per chunk.
EMBED_INPUT = '(input title || "") . " " . (input text || "")'
EMBED_CHUNKS = "input chunks"


@dataclass
class AppOptions:
    name: str = "siamese"
    nodes: int = 1  # content nodes
    redundancy: int = 1
    max_links_per_node: int = HNSW_MAX_LINKS
    neighbors_to_explore_at_insert: int = HNSW_EXPLORE_AT_INSERT
    cell_type: str = "float"  # or bfloat16: half the memory, ranking barely moves
    binarized: bool = False  # add a packed-bits field with hamming HNSW and full-precision re-rank
    cloud: bool = False  # a Vespa Cloud variant: nodes with resources, min-redundancy, no hosts.xml
    chunk_tokens: int | None = None  # chunked: a vector per chunk of this many tokens (tensor(chunk{}, x[D]))
    chunk_overlap: int | None = None  # None: common.chunking.default_overlap of the chunk size
    dim: int | None = None  # serve the first dim dimensions (a Matryoshka prefix; Vespa cuts, then normalises)
    colbert_cells: str = "int8"  # with a late-interaction export: int8 (packed sign bits, 32× smaller) or bfloat16
    bm25_weight: float = BM25_WEIGHT  # hybrid-linear: w · normalised BM25 beside normalised closeness
    bm25_weight_choice: dict | None = None  # how it was chosen (recorded in models/package.json)

    def __post_init__(self):
        if self.chunk_overlap is None:
            from common.chunking import default_overlap

            self.chunk_overlap = default_overlap(self.chunk_tokens) if self.chunk_tokens else 0

    @property
    def chunked(self) -> bool:
        return self.chunk_tokens is not None

    def check(self) -> None:
        if self.nodes < 1 or self.redundancy < 1 or self.redundancy > self.nodes:
            raise ConfigError(f"need 1 ≤ redundancy ≤ nodes, got redundancy {self.redundancy} and {self.nodes} nodes")
        if self.max_links_per_node < 2 or self.neighbors_to_explore_at_insert < self.max_links_per_node:
            raise ConfigError("HNSW needs max-links-per-node ≥ 2 and neighbors-to-explore-at-insert ≥ max links")
        if self.cell_type not in ("float", "bfloat16"):
            raise ConfigError(f"cell type must be float or bfloat16, not {self.cell_type!r}")
        if self.colbert_cells not in ("int8", "bfloat16"):
            raise ConfigError(f"colbert cells must be int8 or bfloat16, not {self.colbert_cells!r}")
        if not 0.0 <= self.bm25_weight <= 100.0:
            raise ConfigError(f"--bm25-weight must be between 0 and 100, not {self.bm25_weight}")
        if self.chunked and self.binarized:
            raise ConfigError("--binarized with --chunk-tokens is not offered: the binary profile re-ranks one packed "
                              "vector per document, and Vespa refuses it over chunks (its second phase would yield "
                              "a tensor per chunk). Choose one of the two.")
        if self.chunked and not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ConfigError(f"chunk overlap {self.chunk_overlap} must be at least 0 and under half of "
                              f"{self.chunk_tokens} chunk tokens")


def distance_metric(manifest: Manifest) -> str:
    # prenormalized-angular is only right when both sides are unit vectors; the embedder normalises both.
    return "prenormalized-angular" if manifest.normalize else "angular"


def _rank_profile(p: Profile, d: int, colbert: Manifest | None = None, cells: str = "int8",
                  bm25_weight: float = BM25_WEIGHT) -> RankProfile:
    c = colbert.dimension if colbert else 0
    inputs = [(f"query({name})", kind.format(d=d, d8=d // 8, c=c)) for name, kind in p.inputs.items()]
    functions = {n: e.replace(profiles.MAXSIM, profiles.maxsim_expression(cells)) for n, e in p.functions.items()}
    phase = {}
    if p.second_phase:
        phase["second_phase"] = SecondPhaseRanking(p.second_phase.expression, rerank_count=p.second_phase.rerank_count)
    if p.global_phase:
        phase["global_phase"] = GlobalPhaseRanking(p.global_expression(bm25_weight),
                                                   rerank_count=p.global_phase.rerank_count)
    return RankProfile(p.name, inherits=", ".join(p.inherits) or None, inputs=inputs or None,
                       functions=[Function(n, e) for n, e in functions.items()] or None,
                       first_phase=p.first_phase, match_features=list(p.match_features),
                       summary_features=list(p.summary_features) or None, **phase)


def embedding_type(cell_type: str, size: int, chunked: bool) -> str:
    """The embedding field's tensor type: a vector, or one per chunk."""
    return f"tensor<{cell_type}>({'chunk{}, ' if chunked else ''}x[{size}])"


def _embedding_field(name: str, cell_type: str, size: int, metric: str, o: AppOptions, embedder: str = EMBEDDER) -> Field:
    """A synthetic field (outside the document) that Vespa's embedder fills at feed time from title and text,
    or, chunked, with one vector per chunk (HNSW over all of them; a document is as close as its best chunk)."""
    return Field(name, embedding_type(cell_type, size, o.chunked), is_document_field=False,
                 indexing=[EMBED_CHUNKS if o.chunked else EMBED_INPUT, f"embed {embedder}", "attribute", "index"],
                 ann=HNSW(distance_metric=metric, max_links_per_node=o.max_links_per_node,
                          neighbors_to_explore_at_insert=o.neighbors_to_explore_at_insert))


def colbert_type(cells: str, dim: int) -> str:
    """The colbert field's tensor type: a vector per token, its sign bits packed 8 to an int8 cell, or bfloat16."""
    return f"tensor<{cells}>(dt{{}}, x[{dim // 8 if cells == 'int8' else dim}])"


def _colbert_field(m: Manifest, cells: str) -> Field:
    """A vector per document token from the colbert-embedder: int8 packs each vector's sign bits (Vespa's
    embedder binarizes for an int8 target), bfloat16 keeps them at half precision. An attribute for MaxSim in
    the rank profiles; not indexed (no HNSW over tokens)."""
    return Field("colbert", colbert_type(cells, m.dimension), is_document_field=False,
                 indexing=[EMBED_INPUT, f"embed {COLBERT_EMBEDDER}", "attribute"])


def _fields(m: Manifest | None, o: AppOptions, colbert: Manifest | None = None) -> Schema:
    """The schema without its rank profiles: what a fed document holds. ``m``: the single-vector export (None: a
    late-interaction export served alone); a two-tower one's documents embed with its document tower."""
    d = (o.dim or m.dimension) if m else 0  # a smaller tensor than the model's output: Vespa keeps its first d values
    body = "chunks" if o.chunked else "text"
    document = Document(fields=[
        Field("id", "string", indexing=["summary", "attribute"]),
        Field("title", "string", indexing=["index", "summary"], index="enable-bm25"),
        # chunked: the whole text is kept for display; BM25 and the embedder read the chunks
        Field("text", "string", indexing=["summary"] if o.chunked else ["index", "summary"],
              index=None if o.chunked else "enable-bm25"),
        # Each hit's summary holds only its best chunk: the element the profile's best_chunk feature names.
        *([Field("chunks", "array<string>", indexing=["index", "summary"], index="enable-bm25",
                 summary=Summary(select_elements_by=profiles.BEST_CHUNK_FN))] if o.chunked else []),
    ])
    schema = Schema(SCHEMA, document, fieldsets=[FieldSet("default", ["title", body])])
    embedder = DOCUMENT_EMBEDDER if m and m.query_tower else EMBEDDER
    if m:
        schema.add_fields(_embedding_field("embedding", o.cell_type, d, distance_metric(m), o, embedder))
    if m and o.binarized:
        # Packed sign bits (D/8 int8 cells, hamming distance) for a cheap first pass over a large corpus;
        # the float field above, kept for re-ranking, can be made `paged` to leave memory.
        schema.add_fields(_embedding_field("embedding_binary", "int8", d // 8, "hamming", o, embedder))
    if colbert:
        schema.add_fields(_colbert_field(colbert, o.colbert_cells))
    return schema


def _schema(m: Manifest | None, o: AppOptions, colbert: Manifest | None = None) -> Schema:
    schema = _fields(m, o, colbert)
    d = (o.dim or m.dimension) if m else 0
    # Vespa's embedder takes the target tensor type from the rank profile's inputs, so a query input is
    # declared only where it is used: a BM25 query embeds nothing.
    for profile in profiles.in_package(o.binarized, o.chunked, colbert=colbert is not None, single=m is not None):
        schema.add_rank_profile(_rank_profile(profile, d, colbert, o.colbert_cells, o.bm25_weight))
    return schema


class _Verbatim(str):
    """Element text that pyvespa must not strip: it strips text content, but Vespa concatenates the prefix
    verbatim, so "query: " would silently become "query:"."""

    def strip(self, *args):
        return self


def _embedder(m: Manifest, component: str = EMBEDDER, folder: str = "models"):
    settings = [vt.transformer_model(path=f"{folder}/model.onnx"), vt.tokenizer_model(path=f"{folder}/tokenizer.json"),
                vt.max_tokens(str(m.max_tokens)), vt.pooling_strategy(m.pooling),
                vt.normalize("true" if m.normalize else "false")]
    if m.output != "last_hidden_state":
        settings.append(vt.transformer_output(m.output))
    if m.prefixes["query"] or m.prefixes["document"]:
        prefixes = []
        if m.prefixes["query"]:
            prefixes.append(vt.query(_Verbatim(m.prefixes["query"])))
        if m.prefixes["document"]:
            prefixes.append(vt.document(_Verbatim(m.prefixes["document"])))
        settings.append(vt.prepend(*prefixes))
    return vt.component(*settings, id=component, type="hugging-face-embedder")


def _colbert_embedder(m: Manifest):
    """Vespa's colbert-embedder, told every token id and length the model was trained with (common.late), so
    another Vespa version's defaults cannot change what it embeds."""
    from vespa.configuration.vt import vt as tag

    c = m.colbert
    return vt.component(
        vt.transformer_model(path=f"{COLBERT_DIR}/model.onnx"), vt.tokenizer_model(path=f"{COLBERT_DIR}/tokenizer.json"),
        vt.transformer_output(m.output), vt.max_tokens(str(TOKENIZER_MAX)),
        vt.max_query_tokens(str(c["query_tokens"])), vt.max_document_tokens(str(c["document_tokens"])),
        vt.transformer_start_sequence_token(str(c["start_token_id"])),
        vt.transformer_end_sequence_token(str(c["end_token_id"])), vt.transformer_mask_token(str(c["mask_token_id"])),
        vt.transformer_pad_token(str(c["pad_token_id"])), vt.query_token_id(str(c["query_token_id"])),
        vt.document_token_id(str(c["document_token_id"])), tag("attend-to-expansion-tokens", "true"),
        id=COLBERT_EMBEDDER, type="colbert-embedder")


def _services(m: Manifest | None, o: AppOptions, colbert: Manifest | None = None, query: Manifest | None = None):
    """``query``: a two-tower export's query tower, the embedder queries name; ``m`` then embeds documents."""
    single = ([_embedder(query, EMBEDDER, QUERY_TOWER_DIR), _embedder(m, DOCUMENT_EMBEDDER)] if query
              else [_embedder(m)] if m else [])
    embedders = single + ([_colbert_embedder(colbert)] if colbert else [])
    container_parts = [*embedders, vt.document_api(), vt.search()]
    content_parts = [vt.documents(vt.document(type=SCHEMA, mode="index"))]
    if o.cloud:
        container_parts.append(vt.nodes(vt.resources(vcpu="4", memory="16Gb", disk="125Gb"), count="2"))
        content_parts = [vt.min_redundancy(str(o.redundancy))] + content_parts
        content_parts.append(vt.nodes(vt.resources(vcpu="4", memory="16Gb", disk="125Gb"), count=str(o.nodes)))
    else:
        content_parts = [vt.redundancy(str(o.redundancy))] + content_parts
        if o.nodes > 1:
            container_parts.append(vt.nodes(vt.node(hostalias="container0")))
            content_parts.append(vt.nodes(*[vt.node(hostalias=f"content{i}", distribution_key=str(i))
                                            for i in range(o.nodes)]))
    clusters = [vt.container(*container_parts, id="default", version="1.0"),
                vt.content(*content_parts, id="content", version="1.0")]
    if o.nodes > 1 and not o.cloud:
        clusters.insert(0, vt.admin(vt.configservers(vt.configserver(hostalias="admin0")),
                                    vt.slobroks(vt.slobrok(hostalias="admin0")),
                                    vt.adminserver(hostalias="admin0"), version="2.0"))
    return vt.services(*clusters, version="1.0")


def _hosts_xml(o: AppOptions) -> str:
    aliases = ["admin0", "container0"] + [f"content{i}" for i in range(o.nodes)]
    hosts = "\n".join(f'  <host name="{a}.example.com">\n    <alias>{a}</alias>\n  </host>' for a in aliases)
    return ('<?xml version="1.0" encoding="utf-8" ?>\n<!-- Replace the host names with your machines. -->\n'
            f"<hosts>\n{hosts}\n</hosts>\n")


def build_application(manifest: Manifest | None, options: AppOptions | None = None,
                      colbert: Manifest | None = None, query: Manifest | None = None) -> ApplicationPackage:
    """``manifest``: the single-vector export, None when a late-interaction export (``colbert``) is served alone;
    ``query``: its query tower's manifest, for a two-tower export."""
    o = options or AppOptions()
    o.check()
    services = _services(manifest, o, colbert, query)
    return ApplicationPackage(name=o.name, schema=[_schema(manifest, o, colbert)],
                              services_config=ServicesConfiguration(o.name, services_config=services))


def feed_key(m: Manifest | None, o: AppOptions, colbert: Manifest | None = None) -> str:
    """What decides the documents a feed leaves in Vespa, as one hash: the schema's fields and indexing statements
    (not its rank profiles), how each embedder embeds a document (``Manifest.document_side``) and the chunking.
    A package deployed over one with the same key needs no document re-fed: a new query tower, a new fusion
    weight. Recorded in models/package.json; the feed ledger keys on it."""
    import hashlib

    parts = [_fields(m, o, colbert).schema_to_text, m.document_side() if m else None,
             colbert.document_side() if colbert else None, o.chunk_tokens, o.chunk_overlap if o.chunked else None]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _query_manifest(export_dir: Path, m: Manifest) -> Manifest | None:
    """A two-tower export's query tower, refused where it could not search the document tower's vectors."""
    if not m.query_tower:
        return None
    q = Manifest.load(export_dir / m.query_tower)
    if (q.dimension, q.normalize) != (m.dimension, m.normalize):
        raise ConfigError(f"{export_dir}: the query tower embeds {q.dimension} dimensions (normalised: {q.normalize}), "
                          f"the document tower {m.dimension} (normalised: {m.normalize}): one HNSW field cannot serve both")
    return q


def _colbert_manifest(colbert_dir: Path, o: AppOptions) -> Manifest:
    m = Manifest.load(colbert_dir)
    m.verify_files(colbert_dir)
    if m.kind != "colbert":
        raise ConfigError(f"--colbert {colbert_dir}: a {m.kind}-vector export; give one of a model trained with "
                          "`siamese train --late-interaction`")
    if m.prefixes["query"] or m.prefixes["document"]:
        raise ConfigError(f"--colbert {colbert_dir}: the model was trained with prefixes {m.prefixes}, which Vespa's "
                          "colbert-embedder does not prepend (its [Q]/[D] markers do that work): retrain without them")
    if o.chunked:
        raise ConfigError("a late-interaction export with --chunk-tokens: a chunked colbert field is not supported "
                          f"yet; build the package without chunks (its documents keep their first "
                          f"{m.colbert['document_tokens']} tokens)")
    return m


def _record(m: Manifest | None, o: AppOptions, colbert: Manifest | None, query: Manifest | None):
    """What the package serves (``app_package.AppPackage``), from what built it."""
    kind = "colbert" if m is None else "both" if colbert else "chunked" if o.chunked else "single"
    embedders = {"query": EMBEDDER, "document": DOCUMENT_EMBEDDER if query else EMBEDDER} if m else {}
    if colbert:
        embedders["colbert"] = COLBERT_EMBEDDER
    return package_record(
        kind, dim=(o.dim or m.dimension) if m else None, model_dim=m.dimension if m else None,
        chunking={"tokens": o.chunk_tokens, "overlap": o.chunk_overlap} if o.chunked else None,
        cell_type=o.cell_type, binarized=o.binarized,
        colbert={"cells": o.colbert_cells, "dim": colbert.dimension} if colbert else None, embedders=embedders,
        bm25_weight=o.bm25_weight, bm25_weight_choice=o.bm25_weight_choice, feed_key=feed_key(m, o, colbert))


@locks("siamese app build", lambda a: a["out_dir"])
def write_package(export_dir, out_dir, options: AppOptions | None = None, force: bool = False, check=None,
                  colbert_dir=None) -> Path:
    """Write the package (models included) to ``out_dir`` atomically and return its path. ``check(dir)``
    runs on the finished package before it is moved into place: a package that fails it is not left.
    ``colbert_dir``: a late-interaction export served beside the single-vector one (the MaxSim profiles)."""
    export_dir, out_dir = Path(export_dir), Path(out_dir)
    inputs = [export_dir] + ([Path(colbert_dir)] if colbert_dir else [])
    check_output(out_dir, "package", force, inputs=inputs)
    manifest = Manifest.load(export_dir)
    manifest.verify_files(export_dir)
    options = options or AppOptions()
    alone = manifest.kind == "colbert"  # a late-interaction export served alone: BM25, then MaxSim
    if alone and colbert_dir:
        raise ConfigError(f"{export_dir} is a late-interaction export: give the single-vector export first, "
                          f"`siamese app build SINGLE_EXPORT OUT --colbert {export_dir}`")
    if alone and (options.binarized or options.dim or options.cell_type != "float"):
        raise ConfigError("--binarized, --dim and --bfloat16 shape the single-vector embedding, which a package of "
                          "a late-interaction export alone does not have (--colbert-cells shapes its token vectors)")
    if alone:
        colbert_dir, colbert, manifest = export_dir, _colbert_manifest(export_dir, options), None
    else:
        colbert = _colbert_manifest(Path(colbert_dir), options) if colbert_dir else None
    if manifest and options.chunked and options.chunk_tokens > manifest.max_tokens:
        raise ConfigError(f"--chunk-tokens {options.chunk_tokens} is above the model's window of "
                          f"{manifest.max_tokens} tokens: Vespa's embedder would truncate every chunk")
    if manifest and options.dim is not None and not 8 <= options.dim <= manifest.dimension:
        raise ConfigError(f"--dim {options.dim} must be between 8 and the model's {manifest.dimension} dimensions")
    if options.dim and options.binarized and options.dim % 8:
        raise ConfigError(f"--dim {options.dim} with --binarized must be a multiple of 8 (bits pack into int8)")
    query = _query_manifest(export_dir, manifest) if manifest else None
    app = build_application(manifest, options, colbert, query)

    def write(tmp: Path):
        app.to_files(str(tmp))
        (tmp / "models").mkdir(exist_ok=True)
        if manifest:
            for name in ("model.onnx", "tokenizer.json", "manifest.json"):
                shutil.copyfile(export_dir / name, tmp / "models" / name)
        if query:  # the package's models/ mirrors the export: models/query/ is the query tower
            shutil.copytree(export_dir / manifest.query_tower, tmp / QUERY_TOWER_DIR,
                            ignore=shutil.ignore_patterns("model-fp32.onnx"))
        if colbert:
            (tmp / COLBERT_DIR).mkdir(parents=True)
            for name in ("model.onnx", "tokenizer.json", "manifest.json"):
                shutil.copyfile(Path(colbert_dir) / name, tmp / COLBERT_DIR / name)
        if options.nodes > 1 and not options.cloud:
            (tmp / "hosts.xml").write_text(_hosts_xml(options))
        _record(manifest, options, colbert, query).write(tmp)
        if check:
            check(tmp)

    return atomic_dir(out_dir, write, "package", replace=force, inputs=inputs)
