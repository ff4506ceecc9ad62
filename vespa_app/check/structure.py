"""`siamese app check PACKAGE_DIR [--texts FILE]`: is this package one Vespa will accept, and does Vespa's
embedder embed like our model?

Vespa judges, with its own Java code from Maven Central (see ``verify/``): the config model validates the
package as a deploy would, and the HuggingFaceEmbedder embeds texts from the package's own configuration.
Python only does the cheap structural checks, and says plainly when Vespa's check could not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from common.bundled import SCIFACT
from common.data import load_corpus
from common.vectors import cosine
from exporter.manifest import Manifest, ManifestError
from exporter.parity import parity_texts
from exporter.runtime import OnnxEmbedder, OnnxTokenEmbedder
from vespa_app.check.bounds import MIN_BITS_EQUAL, MIN_TOKEN_COSINE
from vespa_app.check.colbert_bits import SIGN_NOISE, sign_agreement, token_matrix
from vespa_app.check.container import check_container
from vespa_app.check.java import (
    PackageError,
    java_missing,
    vespa_colbert,
    vespa_container,
    vespa_embed,
    vespa_model_check,
)
from vespa_app.check.report import CheckReport
from vespa_app.package.record import AppPackage, PackageRecordError
from vespa_app.package.schema import colbert_type, embedding_type
from vespa_app.serving import COLBERT_DIR

SMOKE_TEXTS = ["What does the model make of a short query?", "naïve café, 東京 — and punctuation!?"]


# ---------------------------------------------------------------- structural checks (Python)


def structural_check(package) -> list[str]:
    """Well-formed XML, every referenced file present, and the package's record (``models/package.json``)
    matching its manifests and its schema: the embedding field it declares, the pooling of the embedder."""
    package = Path(package)
    done = []
    for name in (
        "services.xml",
        "hosts.xml",
        *[str(p.relative_to(package)) for p in package.glob("search/**/*.xml")],
    ):
        path = package / name
        if not path.exists():
            if name == "services.xml":
                raise PackageError(
                    f"{package}: no services.xml; this is not an application package "
                    "(build one with `siamese app build EXPORT_DIR OUT_DIR`)"
                )
            continue
        try:
            ET.parse(path)
        except ET.ParseError as e:
            raise PackageError(f"{path}: malformed XML: {e}") from None
    done.append("XML well-formed")
    try:
        record = AppPackage.open(package)
    except PackageRecordError as e:
        raise PackageError(str(e)) from None
    services = ET.parse(package / "services.xml").getroot()
    embedder = services.find(
        f".//component[@id='{record.embedders.get('document')}']"
    )  # the one documents meet
    colbert = services.find(".//component[@type='colbert-embedder']")
    if embedder is None and colbert is None:
        raise PackageError(
            f"{package}/services.xml: no hugging-face-embedder (nor colbert-embedder) component"
        )
    schema = record.schema_file.read_text()
    if record.dim is None:  # a late-interaction export alone
        return done + [_colbert_structure(package, colbert, record, schema)]
    _model_files_present(package, embedder)
    done.append("model files present")
    try:
        manifest = Manifest.load(package / "models")
    except ManifestError as e:
        raise PackageError(str(e)) from None
    declared = _embedding_declaration(record)
    if (
        record.model_dim != manifest.dimension
        or not record.dim <= manifest.dimension
        or declared not in schema
    ):
        raise PackageError(
            f"{package}/schemas/doc.sd: the embedding field does not match the model's "
            f"{manifest.dimension} dimensions as the package records them ({declared}, "
            + (
                f"a prefix of {record.dim} built on purpose)"
                if record.dim < manifest.dimension
                else "the whole vector): Vespa would silently keep only the first values; build with --dim "
                "to serve a prefix on purpose)"
            )
        )
    pooling = (embedder.findtext("pooling-strategy") or "mean").strip()
    if pooling != manifest.pooling:
        raise PackageError(
            f"{package}/services.xml: pooling-strategy {pooling!r} but the model was exported "
            f"for {manifest.pooling!r}"
        )
    done.append("dimension and pooling match the manifest")
    changed = record.changed_files()
    if changed:
        done.append(f"edited since it was built: {', '.join(changed)} (Vespa's code below judges them)")
    if colbert is not None:
        done.append(_colbert_structure(package, colbert, record, schema))
    return done


def _embedding_declaration(record: AppPackage) -> str:
    """The embedding field's declaration as the builder writes it for this record."""
    return f"field embedding type {embedding_type(record.cell_type, record.dim, record.chunked)}"


def _model_files_present(package: Path, component) -> None:
    for tag in ("transformer-model", "tokenizer-model"):
        el = component.find(tag)
        ref = el.get("path") if el is not None else None
        if not ref or not (package / ref).exists():
            raise PackageError(
                f"{package}/services.xml: {component.get('type')} <{tag}> points to {ref!r}, which "
                "is not in the package. Rebuild the package with `siamese app build`."
            )


def _colbert_structure(package: Path, component, record: AppPackage, schema: str) -> str:
    """The colbert-embedder's files are in the package, its manifest is a late-interaction one, and the
    colbert field is as wide as the model's token vectors (packed 8 to an int8 cell, or one bfloat16 each)."""
    _model_files_present(package, component)

    try:
        m = Manifest.load(package / COLBERT_DIR)
    except ManifestError as e:
        raise PackageError(str(e)) from None

    declared = f"field colbert type {colbert_type((record.colbert or {}).get('cells'), m.dimension)}"
    if m.kind != "colbert" or (record.colbert or {}).get("dim") != m.dimension or declared not in schema:
        raise PackageError(
            f"{package}/schemas/doc.sd: the colbert field does not hold the {m.dimension}-dimensional "
            f"token vectors of {COLBERT_DIR} (kind {m.kind}) as the package records them ({declared})"
        )
    return "colbert field matches its manifest"


def colbert_texts() -> list[str]:
    """Short and long queries, documents beyond max document tokens, punctuation only, non-ASCII."""
    texts = parity_texts(n_short=10, n_long=10)
    return SMOKE_TEXTS + texts + [("word " * 40).strip(), "a"]


def check_colbert(package, texts: list[str] | None = None) -> dict:
    """Vespa's ColBertEmbedder against our ONNX Runtime path (held to PyTorch at export), token by token: the
    same number of vectors per text, cosine per token, and the packed sign bits of document tokens."""
    texts = texts or colbert_texts()
    vespa = vespa_colbert(package, texts)
    ours = OnnxTokenEmbedder(Path(package) / COLBERT_DIR)
    problems, cosines, bits = [], {"query": [], "document": []}, []
    for i, text in enumerate(texts):
        for kind, key in (("query", "query"), ("passage", "document")):
            theirs, mine = token_matrix(vespa[key][i]), ours.embed_one(text, kind)
            if theirs.shape != mine.shape:
                problems.append(
                    f"{key} {text[:40]!r}: Vespa emits {theirs.shape[0]} token vectors, we {mine.shape[0]}"
                )
                continue
            cosines[key].append(cosine(theirs, mine))
            if key == "document":
                bits.append(np.stack(sign_agreement(token_matrix(vespa["document_bits"][i]), mine)))
    if problems:
        raise PackageError(
            f"{package}: Vespa's colbert-embedder and ours build other inputs:\n  "
            + "\n  ".join(problems[:5])
        )
    q, d = np.concatenate(cosines["query"]), np.concatenate(cosines["document"])
    equal, beyond_noise = np.concatenate(bits, axis=1).mean(1)
    report = {
        "texts": len(texts),
        "query_tokens": int(len(q)),
        "document_tokens": int(len(d)),
        "query_min_cosine": float(q.min()),
        "document_min_cosine": float(d.min()),
        "bits_equal": float(equal),
        "bits_equal_beyond_noise": float(beyond_noise),
        "config": vespa["config"],
    }
    wrong = [
        f"{what} min cosine {v:.6f} < {MIN_TOKEN_COSINE}"
        for what, v in (("query", q.min()), ("document", d.min()))
        if v < MIN_TOKEN_COSINE
    ]
    if beyond_noise < MIN_BITS_EQUAL:
        wrong.append(
            f"packed bits equal for {100 * beyond_noise:.3f} % of document tokens (signs of values within "
            f"{SIGN_NOISE} of 0 aside) < {100 * MIN_BITS_EQUAL} %"
        )
    if wrong:
        raise PackageError(
            f"{package}: Vespa's colbert-embedder does not embed like our model: " + "; ".join(wrong)
        )
    return report


@contextmanager
def _vespa_named(package):
    """The package under a folder name Vespa takes as an application name: Vespa's code names the application
    after the package's folder and refuses names outside [a-zA-Z0-9_-], so a package in ``apps/my app`` is
    checked as a copy named ``siamese`` (hard links where the file
    system allows: Vespa resolves symbolic ones)."""
    package = Path(package)
    if re.fullmatch(r"[a-zA-Z0-9_-]{1,256}", package.resolve().name):
        yield package
        return

    def link_or_copy(source, target):
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    with tempfile.TemporaryDirectory(prefix="siamese-check-", dir=package.resolve().parent) as tmp:
        named = Path(tmp) / "siamese"
        shutil.copytree(package, named, copy_function=link_or_copy)
        yield named


def check_package(
    package, texts: list[str] | None = None, hosted: bool = False, vectors_out=None, docs=None
) -> CheckReport:
    """Python's structural checks, then Vespa's config model, embedder and container code (feed and query
    path) on ``docs`` (default: the bundled SciFact corpus). PackageError names the first thing Vespa's code
    refused or every disagreement between Vespa's code and ours."""
    with _vespa_named(package) as named:
        return _check_package(named, texts, hosted, vectors_out, docs)


def _check_package(package, texts, hosted, vectors_out, docs) -> CheckReport:
    report = CheckReport(structural=structural_check(package))
    missing = java_missing()
    if missing:
        report.vespa_reason = (
            f"{missing}; only Python's structural checks ran. Install a JDK (17+) and Maven to "
            "let Vespa's own config model and embedder check the package."
        )
        return report
    started = time.time()
    result = vespa_model_check(package, hosted)
    report.vespa = "accepted"
    report.warnings = result.get("warnings", [])
    if any("ranksetup" in w for w in report.warnings):
        report.not_checked.append(
            "rank expressions are type-checked by Vespa's C++ vespa-verify-ranksetup, which "
            "is not available here; Vespa checks them when the content nodes start"
        )
    report.not_checked += [w for w in report.warnings if "Unable to lookup IP address" in w][:1]
    # The config model does not open model files (the config server's file distribution does, at deploy):
    # building Vespa's embedder from the package, always, is what proves the model loads.

    texts = texts or SMOKE_TEXTS
    ours = None
    if (Path(package) / "models" / "manifest.json").exists():  # not a late-interaction export alone
        vespa = vespa_embed(package, texts)
        ours = OnnxEmbedder(Path(package) / "models", dim=AppPackage.open(package).dim)
        doc = np.stack([ours.embed_one(t, "passage") for t in texts])
        query = np.stack([ours.embed_one(t, "query") for t in texts])
        report.embedding = {
            "texts": len(texts),
            "type": vespa["type"],
            "config": vespa["config"],
            "document_min_cosine": float(cosine(vespa["document"], doc).min()),
            "query_min_cosine": float(cosine(vespa["query"], query).min()),
        }

    if (Path(package) / COLBERT_DIR).exists():
        report.colbert = check_colbert(package)
    if vectors_out and ours:
        Path(vectors_out).write_text(
            json.dumps(
                {"texts": texts, "document": vespa["document"].tolist(), "query": vespa["query"].tolist()}
            )
        )

    if docs is None:
        docs = list(load_corpus(SCIFACT).values())
    report.container = check_container(
        package, list(docs), lambda payload: vespa_container(package, payload), ours
    )
    report.seconds = round(time.time() - started, 1)
    if report.container.problems:
        raise PackageError(
            f"{package}: Vespa's container code and ours disagree:\n  "
            + "\n  ".join(report.container.problems)
        )
    return report
