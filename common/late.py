"""Late interaction without torch: the inputs Vespa's colbert-embedder builds, and MaxSim in numpy.

Training (``training/late_interaction.py``), the ONNX runtime (``exporter/runtime.py``) and the embedded
backend all build a text's input ids here, so the three cannot drift from each other; the verifier holds
them to Vespa's own ``ai.vespa.embedding.ColBertEmbedder`` (8.700), which builds:

- query:    [CLS] [Q] tokens[:Lq−3] [SEP] [MASK] … up to Lq; attention 0 on the [MASK] padding, yet each of
  the Lq outputs is a query vector (attend-to-expansion-tokens, Vespa's default, which the package sets);
- document: [CLS] [D] tokens with punctuation tokens removed, [:Ld−3], [SEP]; every output a vector.

The tokens come from the tokenizer without special tokens, truncated at ``TOKENIZER_MAX``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"  # what Vespa's colbert-embedder drops from documents
# the tokenizer's own truncation: tokenizer.json and the package's max-tokens say the same
TOKENIZER_MAX = 512


@dataclass
class LateConfig:
    """What Vespa's colbert-embedder must be told to build the inputs the model was trained on."""

    dim: int = 128
    query_tokens: int = 32
    document_tokens: int = 128
    query_token_id: int = 1
    document_token_id: int = 2
    start_token_id: int = 101
    end_token_id: int = 102
    mask_token_id: int = 103
    pad_token_id: int = 0

    FILE = "late_interaction.json"

    @classmethod
    def for_vocabulary(
        cls, vocab: dict, specials: dict, dim: int, query_tokens: int, document_tokens: int
    ) -> LateConfig:
        """[Q]/[D] are the vocabulary's [unused0]/[unused1] (ids 1 and 2 in BERT's, Vespa's defaults);
        ``specials``: its cls, sep, mask and pad ids."""
        missing = [t for t in ("[unused0]", "[unused1]") if t not in vocab]
        missing += [name for name, i in specials.items() if i is None]
        if missing:
            raise ConfigError(
                f"late interaction needs a BERT-style vocabulary with {', '.join(missing)} "
                "(the query/document markers and special tokens Vespa's colbert-embedder inserts)"
            )
        if not 4 <= query_tokens <= document_tokens <= TOKENIZER_MAX:
            raise ConfigError(
                f"need 4 ≤ query tokens ({query_tokens}) ≤ document tokens ({document_tokens}) "
                f"≤ {TOKENIZER_MAX}"
            )
        if dim % 8:
            raise ConfigError(f"token vector size {dim} must be a multiple of 8 (Vespa packs bits into int8)")
        return cls(
            dim,
            query_tokens,
            document_tokens,
            vocab["[unused0]"],
            vocab["[unused1]"],
            specials["cls"],
            specials["sep"],
            specials["mask"],
            specials["pad"],
        )

    @classmethod
    def load(cls, model_dir) -> LateConfig:
        return cls(**json.loads((Path(model_dir) / cls.FILE).read_text()))

    def save(self, model_dir) -> None:
        (Path(model_dir) / self.FILE).write_text(json.dumps(asdict(self), indent=2))


def skip_ids(encode) -> set[int]:
    """The ids of each punctuation character tokenized alone (``encode(text) -> ids``, no special tokens)."""
    return {i for c in PUNCTUATION for i in encode(c)}


def input_ids(tokens: list[int], kind: str, late: LateConfig, skip: set[int]) -> tuple[list[int], int]:
    """One text's input ids from its tokens, and how many of them attend (the rest: the query's [MASK]s)."""
    query = kind == "query"
    if not query:
        tokens = [t for t in tokens if t not in skip]
    limit = late.query_tokens if query else late.document_tokens
    ids = [
        late.start_token_id,
        late.query_token_id if query else late.document_token_id,
        *tokens[: limit - 3],
        late.end_token_id,
    ]
    attending = len(ids)
    if query:
        ids += [late.mask_token_id] * (limit - attending)
    return ids, attending


class TokenStore:
    """Documents' token vectors in one (Σn, D) matrix: MaxSim against all of them is one matrix product."""

    def __init__(self, docs: list[np.ndarray]):
        self.flat = np.concatenate(docs).astype(np.float32)
        self.starts = np.cumsum([0] + [len(d) for d in docs[:-1]])

    def maxsim_all(self, query: np.ndarray) -> np.ndarray:
        """Σ_i max_j q_i · d_j of ``query`` (Lq, D) against every document: (n_docs,)."""
        sims = self.flat @ query.astype(np.float32).T  # (Σn, Lq)
        return np.maximum.reduceat(sims, self.starts, axis=0).sum(1)


def maxsim(query: np.ndarray, docs: list[np.ndarray]) -> np.ndarray:
    """Σ_i max_j q_i · d_j of one query's (Lq, D) vectors against each document's (n, D) vectors."""
    return TokenStore(docs).maxsim_all(query) if docs else np.zeros(0, dtype=np.float32)
