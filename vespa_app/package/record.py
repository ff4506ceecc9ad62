"""What an application package of ours serves, recorded once: ``models/package.json``.

The package builder (``package.write_package``) writes it; ``AppPackage.open`` is the only reader. Everything
that needs to know a package (the feed, the query client, the checks, ``siamese run``) asks this record, never
the ``.sd`` text we generated::

    {"format": 1, "kind": "single",          # single | chunked | colbert (alone) | both (single + colbert)
     "dim": 384, "model_dim": 384,           # the served tensor's size; the model's (a --dim prefix differs)
     "chunking": {"tokens": 256, "overlap": 32} | null,
     "cell_type": "float", "binarized": false,
     "colbert": {"cells": "int8", "dim": 128} | null,
     "embedders": {"query": "embedder", "document": "embedder"},   # document-embedder with two towers
     "bm25_weight": 0.1, "bm25_weight_choice": {...},             # hybrid-linear (run/fusion_weight.py)
     "hnsw": {"max_links": 16, "explore_at_insert": 200, "explore_additional": 0, "why": "..."},
     "feed_key": "...",                      # what decides the fed documents (package.feed_key)
     "schema_sha256": "...", "manifests": {"models/manifest.json": "<sha256>", ...}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.chunking import Chunker
from common.errors import ConfigError
from exporter.manifest import Manifest, sha256
from vespa_app.hnsw import HnswSettings
from vespa_app.serving import BM25_WEIGHT, SCHEMA

PACKAGE_FILE = "models/package.json"
FORMAT = 1
KINDS = ("single", "chunked", "colbert", "both")


class PackageRecordError(ConfigError):
    """A package without its record, or with one this version cannot read."""


@dataclass
class AppPackage:
    kind: str
    dim: int | None
    model_dim: int | None
    chunking: dict | None
    cell_type: str
    binarized: bool
    colbert: dict | None
    embedders: dict
    bm25_weight: float
    bm25_weight_choice: dict | None
    feed_key: str
    hnsw: dict | None = None  # vespa_app.hnsw.HnswSettings.record(); None in a record written before it
    schema_sha256: str = ""
    manifests: dict = field(default_factory=dict)
    format: int = FORMAT
    path: Path | None = field(default=None, compare=False)

    @property
    def two_towers(self) -> bool:
        return self.embedders.get("document") not in (None, self.embedders.get("query"))

    @property
    def chunked(self) -> bool:
        return self.chunking is not None

    @property
    def hnsw_settings(self) -> HnswSettings:
        """The schema's HNSW settings and the exploration its queries must ask for."""
        return HnswSettings.from_record(self.hnsw)

    @property
    def schema_file(self) -> Path:
        return self.path / "schemas" / f"{SCHEMA}.sd"

    def shape(self) -> dict:
        """How documents are embedded (``embedding_shape``)."""
        return embedding_shape(self.chunking, self.dim)

    def chunker(self):
        """The chunker the feed must cut documents with (None: documents go whole)."""
        if not self.chunking:
            return None

        models = self.path / "models"
        return Chunker.for_model(
            models,
            self.chunking["tokens"],
            self.chunking["overlap"],
            prefix=Manifest.load(models).prefixes["document"],
        )

    # ------------------------------------------------------------ writing and reading

    def write(self, package: Path) -> None:
        """Record the package at ``package`` (its schema and manifests already written there)."""
        package = Path(package)
        self.schema_sha256 = sha256(package / "schemas" / f"{SCHEMA}.sd")
        manifests = sorted(package.glob("models/**/manifest.json"))
        self.manifests = {str(p.relative_to(package)): sha256(p) for p in manifests}
        record = {k: v for k, v in asdict(self).items() if k != "path"}
        (package / PACKAGE_FILE).write_text(json.dumps(record, indent=2) + "\n")

    @classmethod
    def open(cls, package) -> AppPackage:
        """The package's record, refused with one line where it is missing or malformed."""
        package = Path(package)
        path = package / PACKAGE_FILE
        if not (package / "services.xml").exists():
            raise PackageRecordError(
                f"{package}: no services.xml; not an application package (build one with "
                "`siamese app build EXPORT_DIR OUT_DIR`)"
            )
        if not path.exists():
            raise PackageRecordError(
                f"{package}: no {PACKAGE_FILE} (a package built before it was recorded); rebuild "
                f"it with `siamese app build EXPORT_DIR {package}`"
            )
        try:
            record = json.loads(path.read_text())
            names = {f for f in cls.__dataclass_fields__ if f != "path"}
            older = set(record) == names - {"hnsw"}  # written before HNSW settings were recorded
            if (
                record.get("format") != FORMAT
                or not (set(record) == names or older)
                or record["kind"] not in KINDS
            ):
                raise ValueError(f"format {record.get('format')!r}, kind {record.get('kind')!r}")
            app = cls(**record, path=package)
        except (ValueError, TypeError, AttributeError) as e:
            raise PackageRecordError(
                f"{path}: not a package record this version reads ({e}); rebuild the package "
                "with `siamese app build`"
            ) from None
        return app

    def changed_files(self) -> list[str]:
        """The schema and manifests that are no longer the ones the record was written with (a hand edit):
        ``check.structural_check`` says so, and Vespa's own code judges the edit."""
        return [
            name
            for name, digest in {f"schemas/{SCHEMA}.sd": self.schema_sha256, **self.manifests}.items()
            if not (self.path / name).exists() or sha256(self.path / name) != digest
        ]


def package_record(
    kind: str,
    *,
    dim,
    model_dim,
    chunking,
    cell_type,
    binarized,
    colbert,
    embedders,
    bm25_weight=BM25_WEIGHT,
    bm25_weight_choice=None,
    feed_key: str,
    hnsw: dict | None = None,
) -> AppPackage:
    """The builder's record, checked as ``open`` checks it."""
    if kind not in KINDS:
        raise ConfigError(f"package kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return AppPackage(
        kind=kind,
        dim=dim,
        model_dim=model_dim,
        chunking=chunking,
        cell_type=cell_type,
        binarized=binarized,
        colbert=colbert,
        embedders=embedders,
        bm25_weight=bm25_weight,
        bm25_weight_choice=bm25_weight_choice,
        feed_key=feed_key,
        hnsw=hnsw,
    )


def embedding_shape(chunking: dict | None, dim: int) -> dict:
    """How documents are embedded, one spelling for a package (``AppPackage.shape``), an index
    (``EmbeddedIndex.shape``) and what a run asks for: one comparison tells them apart. ``chunking``:
    ``Chunker.spec()``, or None where documents are embedded whole."""
    return {"chunking": chunking, "dim": dim}
