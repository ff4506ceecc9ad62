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
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.errors import UserError
from common.vectors import cosine
from exporter.manifest import Manifest, ManifestError

from .app_package import AppPackage, PackageRecordError

if TYPE_CHECKING:
    from .container_check import ContainerReport

VERIFY_DIR = Path(__file__).parent / "verify"
MAIN_CLASS = "ai.siamese.verify.Verify"
SMOKE_TEXTS = ["What does the model make of a short query?", "naïve café, 東京 — and punctuation!?"]


class PackageError(UserError, ValueError):
    """The package is broken; the message is Vespa's own where Vespa found it."""


class VerifierError(UserError, RuntimeError):
    """Vespa's own code could not be built or run here (Maven, the network, the JDK)."""


@dataclass
class CheckReport:
    structural: list[str] = field(default_factory=list)  # what Python checked
    vespa: str = "skipped"  # accepted | rejected | skipped
    vespa_reason: str = ""
    warnings: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    embedding: dict | None = None
    colbert: dict | None = None  # per token: Vespa's ColBertEmbedder vs our ONNX Runtime
    container: "ContainerReport | None" = None
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"structure: ok ({', '.join(self.structural)})"]
        if self.vespa == "accepted":
            lines.append("Vespa config model: accepted")
        else:
            lines.append(f"Vespa config model: {self.vespa}" + (f" — {self.vespa_reason}" if self.vespa_reason else ""))
        lines += [f"  note: {n}" for n in self.not_checked]
        if self.embedding:
            e = self.embedding
            lines.append(f"Vespa HuggingFaceEmbedder vs ONNX Runtime ({e['texts']} texts): min cosine "
                         f"document {e['document_min_cosine']:.6f}, query {e['query_min_cosine']:.6f}")
        if self.colbert:
            c = self.colbert
            lines.append(f"Vespa ColBertEmbedder vs ONNX Runtime ({c['texts']} texts, {c['query_tokens']} query and "
                         f"{c['document_tokens']} document token vectors): min cosine per token query "
                         f"{c['query_min_cosine']:.6f}, document {c['document_min_cosine']:.6f}; packed bits "
                         f"equal for {100 * c['bits_equal']:.3f} % of document tokens "
                         f"({100 * c['bits_equal_beyond_noise']:.3f} % with signs of values near 0 aside)")
        if self.container:
            lines += self.container.lines()
        return "\n".join(lines)


# ---------------------------------------------------------------- structural checks (Python)

def structural_check(package) -> list[str]:
    """Well-formed XML, every referenced file present, and the package's record (``models/package.json``)
    matching its manifests and its schema: the embedding field it declares, the pooling of the embedder."""
    package = Path(package)
    done = []
    for name in ("services.xml", "hosts.xml", *[str(p.relative_to(package)) for p in package.glob("search/**/*.xml")]):
        path = package / name
        if not path.exists():
            if name == "services.xml":
                raise PackageError(f"{package}: no services.xml; this is not an application package "
                                   "(build one with `siamese app build EXPORT_DIR OUT_DIR`)")
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
    embedder = services.find(f".//component[@id='{record.embedders.get('document')}']")  # the one documents meet
    colbert = services.find(".//component[@type='colbert-embedder']")
    if embedder is None and colbert is None:
        raise PackageError(f"{package}/services.xml: no hugging-face-embedder (nor colbert-embedder) component")
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
    if record.model_dim != manifest.dimension or not record.dim <= manifest.dimension or declared not in schema:
        raise PackageError(f"{package}/schemas/doc.sd: the embedding field does not match the model's "
                           f"{manifest.dimension} dimensions as the package records them ({declared}, "
                           + (f"a prefix of {record.dim} built on purpose)" if record.dim < manifest.dimension else
                              "the whole vector): Vespa would silently keep only the first values; build with --dim "
                              "to serve a prefix on purpose)"))
    pooling = (embedder.findtext("pooling-strategy") or "mean").strip()
    if pooling != manifest.pooling:
        raise PackageError(f"{package}/services.xml: pooling-strategy {pooling!r} but the model was exported "
                           f"for {manifest.pooling!r}")
    done.append("dimension and pooling match the manifest")
    changed = record.changed_files()
    if changed:
        done.append(f"edited since it was built: {', '.join(changed)} (Vespa's code below judges them)")
    if colbert is not None:
        done.append(_colbert_structure(package, colbert, record, schema))
    return done


def _embedding_declaration(record: AppPackage) -> str:
    """The embedding field's declaration as the builder writes it for this record."""
    from .package import embedding_type

    return f"field embedding type {embedding_type(record.cell_type, record.dim, record.chunked)}"


def _model_files_present(package: Path, component) -> None:
    for tag in ("transformer-model", "tokenizer-model"):
        el = component.find(tag)
        ref = el.get("path") if el is not None else None
        if not ref or not (package / ref).exists():
            raise PackageError(f"{package}/services.xml: {component.get('type')} <{tag}> points to {ref!r}, which "
                               "is not in the package. Rebuild the package with `siamese app build`.")


def _colbert_structure(package: Path, component, record: AppPackage, schema: str) -> str:
    """The colbert-embedder's files are in the package, its manifest is a late-interaction one, and the
    colbert field is as wide as the model's token vectors (packed 8 to an int8 cell, or one bfloat16 each)."""
    _model_files_present(package, component)
    from .serving import COLBERT_DIR

    try:
        m = Manifest.load(package / COLBERT_DIR)
    except ManifestError as e:
        raise PackageError(str(e)) from None
    from .package import colbert_type

    declared = f"field colbert type {colbert_type((record.colbert or {}).get('cells'), m.dimension)}"
    if m.kind != "colbert" or (record.colbert or {}).get("dim") != m.dimension or declared not in schema:
        raise PackageError(f"{package}/schemas/doc.sd: the colbert field does not hold the {m.dimension}-dimensional "
                           f"token vectors of {COLBERT_DIR} (kind {m.kind}) as the package records them ({declared})")
    return "colbert field matches its manifest"


# ---------------------------------------------------------------- Vespa's own code (Java)

def java_missing() -> str | None:
    missing = [tool for tool in ("java", "mvn") if not shutil.which(tool)]
    return f"{' and '.join(missing)} not found on PATH" if missing else None


def _build_dir() -> Path:
    """One build per version of the verifier's sources, so checkouts of different versions never share classes."""
    import hashlib

    digest = hashlib.sha256()
    for path in [VERIFY_DIR / "pom.xml", *sorted(VERIFY_DIR.rglob("*.java"))]:
        digest.update(path.read_bytes())
    root = Path(os.environ.get("SIAMESE_VERIFY_BUILD", Path.home() / ".cache" / "siamese-vespa"))
    return root / f"verify-{digest.hexdigest()[:12]}"


def classpath() -> str:
    """Compile the verifier once (Maven downloads Vespa's jars on first use) and return its classpath."""
    build = _build_dir()
    cp_file = build / "classpath.txt"
    if not cp_file.exists():
        build.mkdir(parents=True, exist_ok=True)
        cmd = ["mvn", "-B", "-q", "-f", str(VERIFY_DIR / "pom.xml"), f"-Dverify.build.dir={build}",
               "compile", "dependency:build-classpath", f"-Dmdep.outputFile={cp_file}.tmp"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise VerifierError("building Vespa's verifier with Maven failed (is Maven Central reachable?):\n"
                               + (result.stdout + result.stderr)[-3000:])
        Path(f"{cp_file}.tmp").rename(cp_file)
    return f"{build / 'classes'}{os.pathsep}{cp_file.read_text().strip()}"


def _java(args: list[str], hosted: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    # ONNX Runtime's and the tokenizer's native libraries are unpacked into java.io.tmpdir and their folders
    # left behind (hundreds of them in /tmp after a day of checks): give each run its own, removed after.
    with tempfile.TemporaryDirectory(prefix="siamese-java-") as tmp:
        cmd = ["java", "-Xmx2g", "-Djava.util.logging.config.file=/dev/null", f"-Djava.io.tmpdir={tmp}"]
        if hosted:
            cmd.append("-Dhosted=true")
        return subprocess.run(cmd + ["-cp", classpath(), MAIN_CLASS, *args], capture_output=True, text=True,
                              timeout=timeout)


def _rejection(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("REJECTED:")]
    return lines[-1][len("REJECTED: "):] if lines else result.stderr[-2000:]


def vespa_model_check(package, hosted: bool = False) -> dict:
    """Vespa's config model on the package: {'accepted', 'warnings', 'vespa_version'}; PackageError if rejected."""
    result = _java(["model", str(Path(package).resolve())], hosted)
    if result.returncode != 0:
        raise PackageError(f"Vespa rejected {package}: {_rejection(result)}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _java_json(command: str, package, payload, what: str):
    """Run a verifier command that reads ``payload`` as JSON and writes its answer as JSON (``package``: None
    for the commands that need none)."""
    with tempfile.TemporaryDirectory() as tmp:
        in_file, out_file = Path(tmp, "in.json"), Path(tmp, "out.json")
        in_file.write_text(json.dumps(payload))
        result = _java([command, *([str(Path(package).resolve())] if package else []), str(in_file), str(out_file)])
        if result.returncode != 0:
            if package:
                raise PackageError(f"{what} failed on {package}: {_rejection(result)}")
            raise VerifierError(f"{what} did not run: {result.stderr[-2000:]}")
        return json.loads(out_file.read_text())


def vespa_embed(package, texts: list[str]) -> dict:
    """Vectors from Vespa's HuggingFaceEmbedder, built from the package's config: {'document', 'query', ...}."""
    vectors = _java_json("embed", package, texts, "Vespa's embedder")
    vectors["document"] = np.asarray(vectors["document"], dtype=np.float32)
    vectors["query"] = np.asarray(vectors["query"], dtype=np.float32)
    return vectors


MIN_TOKEN_COSINE = 0.9999
MIN_BITS_EQUAL = 0.999  # share of document tokens whose packed bits equal ours, beyond float noise


def colbert_texts() -> list[str]:
    """Short and long queries, documents beyond max document tokens, punctuation only, non-ASCII."""
    from exporter.parity import parity_texts

    texts = parity_texts(n_short=10, n_long=10)
    return SMOKE_TEXTS + texts + [("word " * 40).strip(), "a"]


def vespa_colbert(package, texts: list[str]) -> dict:
    """Token vectors from Vespa's ColBertEmbedder, built from the package's colbert component:
    {'query': [ {label: vector} per text ], 'document': ..., 'document_bits': ..., 'config': ...}."""
    return _java_json("colbert", package, texts, "Vespa's colbert-embedder")


def check_colbert(package, texts: list[str] | None = None) -> dict:
    """Vespa's ColBertEmbedder against our ONNX Runtime path (held to PyTorch at export), token by token: the
    same number of vectors per text, cosine per token, and the packed sign bits of document tokens."""
    from exporter.runtime import OnnxTokenEmbedder

    from .colbert_bits import SIGN_NOISE, sign_agreement, token_matrix
    from .serving import COLBERT_DIR

    texts = texts or colbert_texts()
    vespa = vespa_colbert(package, texts)
    ours = OnnxTokenEmbedder(Path(package) / COLBERT_DIR)
    problems, cosines, bits = [], {"query": [], "document": []}, []
    for i, text in enumerate(texts):
        for kind, key in (("query", "query"), ("passage", "document")):
            theirs, mine = token_matrix(vespa[key][i]), ours.embed_one(text, kind)
            if theirs.shape != mine.shape:
                problems.append(f"{key} {text[:40]!r}: Vespa emits {theirs.shape[0]} token vectors, we {mine.shape[0]}")
                continue
            cosines[key].append(cosine(theirs, mine))
            if key == "document":
                bits.append(np.stack(sign_agreement(token_matrix(vespa["document_bits"][i]), mine)))
    if problems:
        raise PackageError(f"{package}: Vespa's colbert-embedder and ours build other inputs:\n  " + "\n  ".join(problems[:5]))
    q, d = np.concatenate(cosines["query"]), np.concatenate(cosines["document"])
    equal, beyond_noise = np.concatenate(bits, axis=1).mean(1)
    report = {"texts": len(texts), "query_tokens": int(len(q)), "document_tokens": int(len(d)),
              "query_min_cosine": float(q.min()), "document_min_cosine": float(d.min()),
              "bits_equal": float(equal), "bits_equal_beyond_noise": float(beyond_noise), "config": vespa["config"]}
    wrong = [f"{what} min cosine {v:.6f} < {MIN_TOKEN_COSINE}" for what, v in
             (("query", q.min()), ("document", d.min())) if v < MIN_TOKEN_COSINE]
    if beyond_noise < MIN_BITS_EQUAL:
        wrong.append(f"packed bits equal for {100 * beyond_noise:.3f} % of document tokens (signs of values within "
                      f"{SIGN_NOISE} of 0 aside) < {100 * MIN_BITS_EQUAL} %")
    if wrong:
        raise PackageError(f"{package}: Vespa's colbert-embedder does not embed like our model: " + "; ".join(wrong))
    return report


def vespa_container(package, payload: dict) -> dict:
    """Documents through the package's indexing statements and requests through Vespa's query stack, in-process
    (the verifier's ``container`` command; see ``container_check``)."""
    return _java_json("container", package, payload, "Vespa's container code")


@contextmanager
def _vespa_named(package):
    """The package under a folder name Vespa takes as an application name: Vespa's code names the application
    after the package's folder and refuses names outside [a-zA-Z0-9_-], so a package in ``apps/my app`` is
    checked as a copy named ``siamese`` (hard links where the file system allows: Vespa resolves symbolic ones)."""
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


def check_package(package, texts: list[str] | None = None, hosted: bool = False, vectors_out=None,
                  docs=None) -> CheckReport:
    """Python's structural checks, then Vespa's config model, embedder and container code (feed and query path)
    on ``docs`` (default: the bundled SciFact corpus). PackageError names the first thing Vespa's code refused
    or every disagreement between Vespa's code and ours."""
    with _vespa_named(package) as named:
        return _check_package(named, texts, hosted, vectors_out, docs)


def _check_package(package, texts, hosted, vectors_out, docs) -> CheckReport:
    report = CheckReport(structural=structural_check(package))
    missing = java_missing()
    if missing:
        report.vespa_reason = (f"{missing}; only Python's structural checks ran. Install a JDK (17+) and Maven to "
                               "let Vespa's own config model and embedder check the package.")
        return report
    started = time.time()
    result = vespa_model_check(package, hosted)
    report.vespa = "accepted"
    report.warnings = result.get("warnings", [])
    if any("ranksetup" in w for w in report.warnings):
        report.not_checked.append("rank expressions are type-checked by Vespa's C++ vespa-verify-ranksetup, which "
                                  "is not available here; Vespa checks them when the content nodes start")
    report.not_checked += [w for w in report.warnings if "Unable to lookup IP address" in w][:1]
    # The config model does not open model files (the config server's file distribution does, at deploy):
    # building Vespa's embedder from the package, always, is what proves the model loads.
    from exporter.runtime import OnnxEmbedder

    from .serving import COLBERT_DIR

    texts = texts or SMOKE_TEXTS
    ours = None
    if (Path(package) / "models" / "manifest.json").exists():  # not a late-interaction export alone
        vespa = vespa_embed(package, texts)
        ours = OnnxEmbedder(Path(package) / "models", dim=AppPackage.open(package).dim)
        doc = np.stack([ours.embed_one(t, "passage") for t in texts])
        query = np.stack([ours.embed_one(t, "query") for t in texts])
        report.embedding = {"texts": len(texts), "type": vespa["type"], "config": vespa["config"],
                            "document_min_cosine": float(cosine(vespa["document"], doc).min()),
                            "query_min_cosine": float(cosine(vespa["query"], query).min())}

    if (Path(package) / COLBERT_DIR).exists():
        report.colbert = check_colbert(package)
    if vectors_out and ours:
        Path(vectors_out).write_text(json.dumps({"texts": texts, "document": vespa["document"].tolist(),
                                                 "query": vespa["query"].tolist()}))
    from .container_check import check_container

    if docs is None:
        from common.bundled import SCIFACT
        from common.data import load_corpus

        docs = list(load_corpus(SCIFACT).values())
    report.container = check_container(package, list(docs), lambda payload: vespa_container(package, payload), ours)
    report.seconds = round(time.time() - started, 1)
    if report.container.problems:
        raise PackageError(f"{package}: Vespa's container code and ours disagree:\n  "
                           + "\n  ".join(report.container.problems))
    return report


def vespa_document_ids(paths: list[str]) -> list[dict]:
    """For each /document/v1 request path, the document id Vespa's own handler parses from it
    (``{"id": "id:doc:doc::..."}``) or why it refuses it (``{"error": ...}``)."""
    return _java_json("paths", None, paths, "Vespa's document path parser")


def vespa_chunks(texts: list[str], chunker: str = "fixed-length", arguments: tuple = ()) -> list[list[str]]:
    """What the indexing language's ``chunk fixed-length N`` / ``chunk sentence`` cuts each text into
    (Vespa's own chunkers, ``ai.vespa.language.chunker``)."""
    payload = {"chunker": chunker, "arguments": [str(a) for a in arguments], "texts": texts}
    return _java_json("chunks", None, payload, "Vespa's chunker")["chunks"]
