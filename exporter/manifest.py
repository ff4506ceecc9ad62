"""``manifest.json``: the contract between the exporter and the Vespa application.

Everything Vespa's embedder needs to reproduce the model is here; the application package is generated
from it alone. ``Manifest.load`` checks it and names what is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import UserError
from common.late import LateConfig
from common.poolings import POOLINGS, VESPA_POOLINGS

MANIFEST = "manifest.json"
FORMAT = 1


class ManifestError(UserError, ValueError):
    pass


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


KINDS = ("single", "colbert")


def _colbert_problems(colbert, dimension) -> list[str]:
    names = list(LateConfig.__dataclass_fields__)
    if not isinstance(colbert, dict) or set(colbert) != set(names) or not all(map(_is_int, colbert.values())):
        return [f"kind colbert needs colbert settings {', '.join(names)}, each an integer"]
    if colbert["dim"] != dimension:
        return [f"colbert dim {colbert['dim']} differs from the dimension {dimension}"]
    return []


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a dimension


@dataclass
class Manifest:
    dimension: int
    pooling: (
        str  # Vespa's pooling-strategy (common.poolings.VESPA_POOLINGS); none: pooling baked into the graph
    )
    normalize: bool
    max_tokens: int
    prefixes: dict  # {"query": ..., "document": ...}, concatenated verbatim
    inputs: list  # ONNX input names, in order
    output: str  # ONNX output Vespa reads: last_hidden_state, or sentence_embedding when pooling is none
    model_pooling: str = "mean"  # what the trained model does (common.poolings.POOLINGS)
    opset: int = 17
    quantization: dict | None = None
    merge: dict | None = None  # for a merged model: base, tuned, α and how α was chosen
    files: dict = field(default_factory=dict)  # name → {"sha256", "bytes"}
    parity: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    source_model: str = ""
    format: int = FORMAT
    kind: str = "single"  # single: one vector per text (hugging-face-embedder); colbert: one per token
    colbert: dict | None = None  # kind colbert: common.late.LateConfig (markers, query/document tokens, dim)
    # A two-tower model (training/towers.py): this folder's export embeds documents, the one in query_tower (a
    # sub-folder with its own manifest, hashed in ``files``) embeds queries.
    query_tower: str | None = None

    def save(self, export_dir) -> None:
        (Path(export_dir) / MANIFEST).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, export_dir) -> Manifest:
        path = Path(export_dir) / MANIFEST
        if not path.exists():
            raise ManifestError(f"{path}: not found. Give the directory written by `siamese export`.")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ManifestError(
                f"{path}: malformed JSON ({e.msg}, line {e.lineno}). Re-run `siamese export`."
            ) from None
        known = cls.__dataclass_fields__
        missing = [
            k
            for k in ("dimension", "pooling", "normalize", "max_tokens", "prefixes", "inputs", "output")
            if k not in raw
        ]
        if missing:
            raise ManifestError(f"{path}: missing {', '.join(missing)}. Re-run `siamese export`.")
        m = cls(**{k: v for k, v in raw.items() if k in known})
        m.check(path)
        if m.query_tower is not None and not (Path(export_dir) / m.query_tower / MANIFEST).exists():
            raise ManifestError(
                f"{path}: names a query tower in {m.query_tower}/, which has no {MANIFEST}. "
                "Re-run `siamese export`."
            )
        return m

    def document_side(self) -> str:
        """What decides a document's vector, as one hash: the document graph and tokenizer, the document
        prefix, pooling, normalisation, window and size. Equal for two exports whose documents embed alike,
        whatever their query towers: a package deployed over the other needs no re-feed."""
        digest = hashlib.sha256(
            json.dumps(
                [self.files.get(n, {}).get("sha256") for n in ("model.onnx", "tokenizer.json")]
                + [
                    self.prefixes.get("document"),
                    self.pooling,
                    self.normalize,
                    self.max_tokens,
                    self.dimension,
                    self.output,
                    self.kind,
                ]
            ).encode()
        )
        return digest.hexdigest()

    def check(self, where="manifest") -> None:
        problems = []
        if not _is_int(self.dimension) or self.dimension < 1:
            problems.append(f"dimension must be a positive integer, not {self.dimension!r}")
        if self.pooling not in VESPA_POOLINGS:
            problems.append(f"pooling must be one of {', '.join(VESPA_POOLINGS)}, not {self.pooling!r}")
        if self.model_pooling not in POOLINGS:
            problems.append(f"model_pooling must be one of {', '.join(POOLINGS)}, not {self.model_pooling!r}")
        if (self.pooling == "none") != (self.output != "last_hidden_state"):
            problems.append(
                f"pooling {self.pooling!r} does not fit output {self.output!r} "
                "(pooling none goes with a pooled output such as sentence_embedding)"
            )
        if not isinstance(self.normalize, bool):
            problems.append(f"normalize must be true or false, not {self.normalize!r}")
        if not isinstance(self.output, str) or not self.output:
            problems.append(f"output must be the name of a model output, not {self.output!r}")
        if not _is_int(self.max_tokens) or not 1 <= self.max_tokens <= 8192:
            problems.append(f"max_tokens must be an integer in 1..8192, not {self.max_tokens!r}")
        if (
            not isinstance(self.prefixes, dict)
            or set(self.prefixes) != {"query", "document"}
            or not all(isinstance(v, str) for v in self.prefixes.values())
        ):
            problems.append("prefixes must hold exactly 'query' and 'document', each a string")
        if (
            not isinstance(self.inputs, list)
            or not all(isinstance(i, str) for i in self.inputs)
            or "input_ids" not in self.inputs
            or not set(self.inputs) <= {"input_ids", "attention_mask", "token_type_ids"}
        ):
            problems.append(
                f"inputs must be input_ids [, attention_mask [, token_type_ids]], not {self.inputs!r}"
            )
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "colbert":
            problems += _colbert_problems(self.colbert, self.dimension)
        if self.query_tower is not None and (
            self.kind != "single"
            or not isinstance(self.query_tower, str)
            or not self.query_tower
            or "/" in self.query_tower
            or self.query_tower.startswith(".")
        ):
            problems.append(
                f"query_tower must be a sub-folder's name of a single-vector export, not {self.query_tower!r}"
            )
        if problems:
            raise ManifestError(f"{where}: " + "; ".join(problems))

    def prefix(self, kind: str) -> str:
        """What Vespa prepends to a text of ``kind``: "query", or a
        document ("passage" in training's words)."""
        return self.prefixes["query" if kind == "query" else "document"]

    def verify_files(self, export_dir) -> None:
        """Every file the manifest lists is present with the recorded hash."""
        for name, info in self.files.items():
            path = Path(export_dir) / name
            if not path.exists():
                raise ManifestError(f"{path}: listed in the manifest but missing. Re-run `siamese export`.")
            if sha256(path) != info["sha256"]:
                raise ManifestError(
                    f"{path}: sha256 differs from the manifest; the file was changed after export."
                )
        if self.query_tower:
            Manifest.load(Path(export_dir) / self.query_tower).verify_files(
                Path(export_dir) / self.query_tower
            )
