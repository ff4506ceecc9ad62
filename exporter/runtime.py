"""Embedding with an exported model the way Vespa's hugging-face-embedder does it.

One text per call, special tokens added, no padding, truncation as tokenizer.json says, the prefix
concatenated verbatim (Vespa 8.679+ adds no space), pooling over the attention mask, optional
normalisation. The embedded search backend uses this to embed queries, so it embeds as Vespa would.
Serving queries needs only onnxruntime and tokenizers: this module imports neither torch nor transformers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from common.batching import length_sorted_batches
from common.device import chosen_type
from common.errors import ConfigError
from common.late import TOKENIZER_MAX, LateConfig, input_ids, skip_ids
from common.vectors import normalize

from .manifest import Manifest


def pool(tokens: np.ndarray, mask: np.ndarray, strategy: str) -> np.ndarray:
    """(B, T, D) token vectors → (B, D), as Vespa's PoolingStrategy; 'none' means the graph already pooled."""
    if strategy == "none":
        return tokens
    if strategy == "cls":
        return tokens[:, 0]
    m = mask[..., None].astype(tokens.dtype)
    return (tokens * m).sum(1) / np.clip(m.sum(1), 1e-9, None)


def session(model_path, threads: int = 0) -> ort.InferenceSession:
    """The graph in ONNX Runtime: on CUDA where the command chose a CUDA device and this ONNX Runtime has its
    provider (onnxruntime-gpu), else on the CPU."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    gpu = chosen_type() == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
    return ort.InferenceSession(
        str(model_path), options, providers=["CUDAExecutionProvider"] * gpu + ["CPUExecutionProvider"]
    )


class OnnxEmbedder:
    def __init__(
        self,
        export_dir,
        model_file: str = "model.onnx",
        threads: int = 0,
        one_text_per_call: bool | None = None,
        dim: int | None = None,
        query_tower: bool = True,
    ):
        """``dim``: serve the first ``dim`` dimensions (a Matryoshka prefix), normalised after the cut as
        Vespa's embedder does for a smaller target tensor. ``query_tower=False``: a two-tower export's queries
        go through its document tower too (with the query prefix): the base model, where that tower is it."""
        export_dir = Path(export_dir)
        self.manifest = Manifest.load(export_dir)
        self.dim = dim or self.manifest.dimension
        if not 1 <= self.dim <= self.manifest.dimension:
            raise ConfigError(f"dimension {dim} must be between 1 and the model's {self.manifest.dimension}")
        self.session = session(export_dir / model_file, threads)
        # Dynamic int8 takes its activation scales over the whole batch, padding included, so for the served
        # int8 graph only one text per call reproduces what Vespa computes.
        if one_text_per_call is None:
            one_text_per_call = bool(self.manifest.quantization) and model_file == "model.onnx"
        self.one_text_per_call = one_text_per_call
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.manifest.max_tokens)
        # a two-tower export: queries go through its query tower (manifest.query_tower)
        self.query_side = (
            OnnxEmbedder(export_dir / self.manifest.query_tower, threads=threads, dim=dim)
            if self.manifest.query_tower and query_tower
            else None
        )

    def _run(self, ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        out = self.session.run([self.manifest.output], {k: feeds[k] for k in self.inputs})[0]
        emb = pool(out, mask, self.manifest.pooling)[:, : self.dim]
        return normalize(emb) if self.manifest.normalize else emb

    def embed_one(self, text: str, kind: str = "query") -> np.ndarray:
        """Exactly Vespa's path: one text, no padding."""
        if kind == "query" and self.query_side:
            return self.query_side.embed_one(text, kind)
        enc = self.tokenizer.encode(self.manifest.prefix(kind) + text)
        as_batch = [np.asarray([v], dtype=np.int64) for v in (enc.ids, enc.attention_mask, enc.type_ids)]
        return self._run(*as_batch)[0].astype(np.float32)

    def embed(self, texts: list[str], kind: str = "passage", batch_size: int = 32, progress: bool = False):
        """Padded batches: the same vectors as ``embed_one`` (to float rounding), much faster; one text per
        call where the graph needs it."""
        if kind == "query" and self.query_side:
            return self.query_side.embed(texts, kind, batch_size, progress)
        if self.one_text_per_call:
            batch_size = 1
        prefix = self.manifest.prefix(kind)
        encodings = self.tokenizer.encode_batch([prefix + t for t in texts])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        lengths = [len(e.ids) for e in encodings]
        for idx in length_sorted_batches(lengths, batch_size, progress and f"embed {kind}s (onnx)"):
            width = max(len(encodings[i].ids) for i in idx)
            arrays = np.zeros((3, len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encodings[i]
                n = len(e.ids)
                arrays[0, row, :n], arrays[1, row, :n], arrays[2, row, :n] = (
                    e.ids,
                    e.attention_mask,
                    e.type_ids,
                )
            out[idx] = self._run(arrays[0], arrays[1], arrays[2])
        return out


class OnnxTokenEmbedder:
    """A late-interaction export embedded as Vespa's colbert-embedder does: one text per call, the inputs of
    ``common.late.input_ids``, only input_ids and attention_mask fed, and each token's vector (already unit
    length: the graph normalises) kept — all of a query's, a document's attending ones."""

    def __init__(self, export_dir, model_file: str = "model.onnx", threads: int = 0):
        export_dir = Path(export_dir)
        self.manifest = Manifest.load(export_dir)
        if self.manifest.kind != "colbert":
            raise ConfigError(
                f"{export_dir}: a {self.manifest.kind} export, not a late-interaction (colbert) one"
            )
        self.late = LateConfig(**self.manifest.colbert)
        self.dim = self.late.dim
        self.session = session(export_dir / model_file, threads)
        self.tokenizer = Tokenizer.from_file(str(export_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(TOKENIZER_MAX)
        self.skip = skip_ids(self._tokens)

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def embed_one(self, text: str, kind: str = "query") -> np.ndarray:
        """Exactly Vespa's path: one text, no padding; (n_tokens, dim) float32."""
        return self.embed([text], kind, batch_size=1)[0]

    def embed(
        self, texts: list[str], kind: str = "passage", batch_size: int = 32, progress: bool = False
    ) -> list[np.ndarray]:
        """Padded batches (a document's padding is cut away after): the same vectors as ``embed_one``."""
        prefix = self.manifest.prefix(kind)
        rows = [input_ids(self._tokens(prefix + t), kind, self.late, self.skip) for t in texts]
        out: list[np.ndarray] = [None] * len(texts)
        for idx in length_sorted_batches(
            [len(r[0]) for r in rows], batch_size, progress and f"embed {kind}s (onnx)"
        ):
            width = max(len(rows[i][0]) for i in idx)
            ids = np.full((len(idx), width), self.late.pad_token_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : len(rows[i][0])] = rows[i][0]
                mask[row, : rows[i][1]] = 1
            vectors = self.session.run([self.manifest.output], {"input_ids": ids, "attention_mask": mask})[0]
            for row, i in enumerate(idx):
                out[i] = vectors[row, : len(rows[i][0])].astype(np.float32)
        return out
