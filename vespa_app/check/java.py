"""Vespa's own Java code from Maven Central, run here: ``verify/`` (a Maven module) is compiled once and each
command (the config model, the embedders, the container's feed and query path, the document path parser, the
chunkers) reads JSON and answers in JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from common.atomic import scratch_dir
from common.errors import UserError

VERIFY_DIR = Path(__file__).parent / "verify"
MAIN_CLASS = "ai.siamese.verify.Verify"


class PackageError(UserError, ValueError):
    """The package is broken; the message is Vespa's own where Vespa found it."""


class VerifierError(UserError, RuntimeError):
    """Vespa's own code could not be built or run here (Maven, the network, the JDK)."""


def java_missing() -> str | None:
    missing = [tool for tool in ("java", "mvn") if not shutil.which(tool)]
    return f"{' and '.join(missing)} not found on PATH" if missing else None


def _build_dir() -> Path:
    """One build per version of the verifier's sources, so
    checkouts of different versions never share classes."""
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
        cmd = [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(VERIFY_DIR / "pom.xml"),
            f"-Dverify.build.dir={build}",
            "compile",
            "dependency:build-classpath",
            f"-Dmdep.outputFile={cp_file}.tmp",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise VerifierError(
                "building Vespa's verifier with Maven failed (is Maven Central reachable?):\n"
                + (result.stdout + result.stderr)[-3000:]
            )
        Path(f"{cp_file}.tmp").rename(cp_file)
    return f"{build / 'classes'}{os.pathsep}{cp_file.read_text().strip()}"


def _die_with_parent() -> None:
    """In the child: killed when the Python process that started
    it dies (kill -9 included), not left running."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _java(args: list[str], hosted: bool = False, timeout: int = 300) -> subprocess.CompletedProcess:
    # ONNX Runtime's and the tokenizer's native libraries are unpacked into java.io.tmpdir and their folders
    # left behind (hundreds of them in /tmp after a day of checks): give each run its own, removed after (or,
    # after a kill -9, by the next run).
    tmp = scratch_dir(tempfile.gettempdir(), "siamese-java-")
    try:
        cmd = ["java", "-Xmx2g", "-Djava.util.logging.config.file=/dev/null", f"-Djava.io.tmpdir={tmp}"]
        if hosted:
            cmd.append("-Dhosted=true")
        return subprocess.run(
            cmd + ["-cp", classpath(), MAIN_CLASS, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _rejection(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("REJECTED:")]
    return lines[-1][len("REJECTED: ") :] if lines else result.stderr[-2000:]


def vespa_model_check(package, hosted: bool = False) -> dict:
    """Vespa's config model on the package: {'accepted',
    'warnings', 'vespa_version'}; PackageError if rejected."""
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
        result = _java(
            [command, *([str(Path(package).resolve())] if package else []), str(in_file), str(out_file)]
        )
        if result.returncode != 0:
            if package:
                raise PackageError(f"{what} failed on {package}: {_rejection(result)}")
            raise VerifierError(f"{what} did not run: {result.stderr[-2000:]}")
        return json.loads(out_file.read_text())


def vespa_embed(package, texts: list[str]) -> dict:
    """Vectors from Vespa's HuggingFaceEmbedder, built from the
    package's config: {'document', 'query', ...}."""
    vectors = _java_json("embed", package, texts, "Vespa's embedder")
    vectors["document"] = np.asarray(vectors["document"], dtype=np.float32)
    vectors["query"] = np.asarray(vectors["query"], dtype=np.float32)
    return vectors


def vespa_colbert(package, texts: list[str]) -> dict:
    """Token vectors from Vespa's ColBertEmbedder, built from the package's colbert component:
    {'query': [ {label: vector} per text ], 'document': ..., 'document_bits': ..., 'config': ...}."""
    return _java_json("colbert", package, texts, "Vespa's colbert-embedder")


def vespa_container(package, payload: dict) -> dict:
    """Documents through the package's indexing statements and requests through Vespa's query stack,
    in-process (the verifier's ``container`` command; see ``check.container``)."""
    return _java_json("container", package, payload, "Vespa's container code")


def vespa_document_ids(paths: list[str]) -> list[dict]:
    """For each /document/v1 request path, the document id Vespa's own handler parses from it
    (``{"id": "id:doc:doc::..."}``) or why it refuses it (``{"error": ...}``)."""
    return _java_json("paths", None, paths, "Vespa's document path parser")


def vespa_chunks(texts: list[str], chunker: str = "fixed-length", arguments: tuple = ()) -> list[list[str]]:
    """What the indexing language's ``chunk fixed-length N`` / ``chunk sentence`` cuts each text into
    (Vespa's own chunkers, ``ai.vespa.language.chunker``)."""
    payload = {"chunker": chunker, "arguments": [str(a) for a in arguments], "texts": texts}
    return _java_json("chunks", None, payload, "Vespa's chunker")["chunks"]
