"""`siamese app build EXPORT_DIR OUT_DIR`: the Vespa application package, generated from manifest.json alone.

The package reads top to bottom like a Vespa sample app::

    services.xml     container (search, document-api, hugging-face-embedder) + content
    hosts.xml        only for a multi-node self-hosted cluster
    schemas/doc.sd   id/title/text (BM25) + embedding (HNSW, filled by the embedder) + the rank profiles
                     of ``profiles.py``; a query embeds with input.query(q)=embed(embedder, @query).
                     Chunked (--chunk-tokens): a chunks array (BM25) embedded into tensor(chunk{}, x[D])
    models/package.json   what the package serves, recorded once (``package.record.AppPackage``: the only
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
from pathlib import Path

from vespa.package import ApplicationPackage, ServicesConfiguration

from common.atomic import atomic_dir, check_output
from common.errors import ConfigError
from common.lock import locks
from exporter.manifest import Manifest
from vespa_app.package.options import AppOptions
from vespa_app.package.record import package_record
from vespa_app.package.schema import document_fields, schema
from vespa_app.package.services import hosts_xml, services
from vespa_app.serving import COLBERT_DIR, COLBERT_EMBEDDER, DOCUMENT_EMBEDDER, EMBEDDER, QUERY_TOWER_DIR


def build_application(
    manifest: Manifest | None,
    options: AppOptions | None = None,
    colbert: Manifest | None = None,
    query: Manifest | None = None,
) -> ApplicationPackage:
    """``manifest``: the single-vector export, None when a late-interaction export (``colbert``) is served
    alone; ``query``: its query tower's manifest, for a two-tower export."""
    options = options or AppOptions()
    options.check()
    services_config = ServicesConfiguration(
        options.name, services_config=services(manifest, options, colbert, query)
    )
    return ApplicationPackage(
        name=options.name, schema=[schema(manifest, options, colbert)], services_config=services_config
    )


def feed_key(manifest: Manifest | None, options: AppOptions, colbert: Manifest | None = None) -> str:
    """What decides the documents a feed leaves in Vespa, as one hash: the schema's fields and indexing
    statements (not its rank profiles), how each embedder embeds a document (``Manifest.document_side``) and
    the chunking. A package deployed over one with the same key needs no document re-fed: a new query tower, a
    new fusion weight. Recorded in models/package.json; the feed ledger keys on it."""
    import hashlib

    parts = [
        document_fields(manifest, options, colbert).schema_to_text,
        manifest.document_side() if manifest else None,
        colbert.document_side() if colbert else None,
        options.chunk_tokens,
        options.chunk_overlap if options.chunked else None,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _query_manifest(export_dir: Path, manifest: Manifest) -> Manifest | None:
    """A two-tower export's query tower, refused where it could not search the document tower's vectors."""
    if not manifest.query_tower:
        return None
    q = Manifest.load(export_dir / manifest.query_tower)
    if (q.dimension, q.normalize) != (manifest.dimension, manifest.normalize):
        raise ConfigError(
            f"{export_dir}: the query tower embeds {q.dimension} dimensions (normalised: {q.normalize}), "
            f"the document tower {manifest.dimension} (normalised: {manifest.normalize}): one HNSW field "
            "cannot serve both"
        )
    return q


def _colbert_manifest(colbert_dir: Path, options: AppOptions) -> Manifest:
    manifest = Manifest.load(colbert_dir)
    manifest.verify_files(colbert_dir)
    if manifest.kind != "colbert":
        raise ConfigError(
            f"--colbert {colbert_dir}: a {manifest.kind}-vector export; give one of a model trained with "
            "`siamese train --late-interaction`"
        )
    if manifest.prefixes["query"] or manifest.prefixes["document"]:
        raise ConfigError(
            f"--colbert {colbert_dir}: the model was trained with prefixes {manifest.prefixes}, which "
            "Vespa's "
            "colbert-embedder does not prepend (its [Q]/[D] markers do that work): retrain without them"
        )
    if options.chunked:
        raise ConfigError(
            "a late-interaction export with --chunk-tokens: a chunked colbert field is not supported "
            f"yet; build the package without chunks (its documents keep their first "
            f"{manifest.colbert['document_tokens']} tokens)"
        )
    return manifest


def _record(manifest: Manifest | None, options: AppOptions, colbert: Manifest | None, query: Manifest | None):
    """What the package serves (``package.record.AppPackage``), from what built it."""
    kind = (
        "colbert" if manifest is None else "both" if colbert else "chunked" if options.chunked else "single"
    )
    embedders = {"query": EMBEDDER, "document": DOCUMENT_EMBEDDER if query else EMBEDDER} if manifest else {}
    if colbert:
        embedders["colbert"] = COLBERT_EMBEDDER
    return package_record(
        kind,
        dim=(options.dim or manifest.dimension) if manifest else None,
        model_dim=manifest.dimension if manifest else None,
        chunking={"tokens": options.chunk_tokens, "overlap": options.chunk_overlap}
        if options.chunked
        else None,
        cell_type=options.cell_type,
        binarized=options.binarized,
        colbert={"cells": options.colbert_cells, "dim": colbert.dimension} if colbert else None,
        embedders=embedders,
        bm25_weight=options.bm25_weight,
        bm25_weight_choice=options.bm25_weight_choice,
        feed_key=feed_key(manifest, options, colbert),
        hnsw=options.hnsw_settings().record() if manifest else None,
    )


@locks("siamese app build", lambda a: a["out_dir"])
def write_package(
    export_dir, out_dir, options: AppOptions | None = None, force: bool = False, check=None, colbert_dir=None
) -> Path:
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
        raise ConfigError(
            f"{export_dir} is a late-interaction export: give the single-vector export first, "
            f"`siamese app build SINGLE_EXPORT OUT --colbert {export_dir}`"
        )
    if alone and (options.binarized or options.dim or options.cell_type != "float"):
        raise ConfigError(
            "--binarized, --dim and --bfloat16 shape the single-vector embedding, which a package of "
            "a late-interaction export alone does not have (--colbert-cells shapes its token vectors)"
        )
    if alone:
        colbert_dir, colbert, manifest = export_dir, _colbert_manifest(export_dir, options), None
    else:
        colbert = _colbert_manifest(Path(colbert_dir), options) if colbert_dir else None
    if manifest and options.chunked and options.chunk_tokens > manifest.max_tokens:
        raise ConfigError(
            f"--chunk-tokens {options.chunk_tokens} is above the model's window of "
            f"{manifest.max_tokens} tokens: Vespa's embedder would truncate every chunk"
        )
    if manifest and options.dim is not None and not 8 <= options.dim <= manifest.dimension:
        raise ConfigError(
            f"--dim {options.dim} must be between 8 and the model's {manifest.dimension} dimensions"
        )
    if options.dim and options.binarized and options.dim % 8:
        raise ConfigError(
            f"--dim {options.dim} with --binarized must be a multiple of 8 (bits pack into int8)"
        )
    query = _query_manifest(export_dir, manifest) if manifest else None
    app = build_application(manifest, options, colbert, query)

    def write(tmp: Path):
        app.to_files(str(tmp))
        (tmp / "models").mkdir(exist_ok=True)
        if manifest:
            for name in ("model.onnx", "tokenizer.json", "manifest.json"):
                shutil.copyfile(export_dir / name, tmp / "models" / name)
        if query:  # the package's models/ mirrors the export: models/query/ is the query tower
            shutil.copytree(
                export_dir / manifest.query_tower,
                tmp / QUERY_TOWER_DIR,
                ignore=shutil.ignore_patterns("model-fp32.onnx"),
            )
        if colbert:
            (tmp / COLBERT_DIR).mkdir(parents=True)
            for name in ("model.onnx", "tokenizer.json", "manifest.json"):
                shutil.copyfile(Path(colbert_dir) / name, tmp / COLBERT_DIR / name)
        if options.nodes > 1 and not options.cloud:
            (tmp / "hosts.xml").write_text(hosts_xml(options))
        _record(manifest, options, colbert, query).write(tmp)
        if check:
            check(tmp)

    return atomic_dir(out_dir, write, "package", replace=force, inputs=inputs)
