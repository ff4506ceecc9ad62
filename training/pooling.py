"""Pooling: token embeddings (B, T, D) and an attention mask (B, T) → one vector per text (B, D).

Which of these Vespa's hugging-face-embedder can do itself is recorded in ``common/poolings.py``;
the learned ``attention`` pooling it cannot, so the exporter bakes it into the ONNX graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from common.poolings import POOLINGS


def mean_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the unmasked token vectors: Σ_t m_t h_t / Σ_t m_t."""
    m = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * m).sum(1) / m.sum(1).clamp(min=1e-9)


def cls_pool(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return tokens[:, 0]


class AttentionPooling(nn.Module):
    """Learned attention pooling: a_t = softmax_t(w·h_t + b) over unmasked tokens, output Σ_t a_t h_t.

    Initialised with w = 0, so training starts from exact mean pooling and only moves away when that helps.
    It doubles as a sentence-transformers module (``forward(features)``, ``save``, ``load``), so a saved
    model directory loads in ``SentenceTransformer`` with this package installed.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.score = nn.Linear(dim, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def pool(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        logits = self.score(tokens).squeeze(-1).float()
        logits = logits.masked_fill(mask == 0, torch.finfo(logits.dtype).min)
        weights = torch.softmax(logits, dim=-1).to(tokens.dtype)
        return torch.einsum("bt,btd->bd", weights, tokens)

    # sentence-transformers module interface
    def forward(self, features: dict) -> dict:
        features["sentence_embedding"] = self.pool(features["token_embeddings"], features["attention_mask"])
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def save(self, path, **_) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"dim": self.dim}))
        torch.save({k: v.cpu() for k, v in self.state_dict().items()}, path / "pooling.pt")

    @staticmethod
    def load(path) -> AttentionPooling:
        path = Path(path)
        module = AttentionPooling(json.loads((path / "config.json").read_text())["dim"])
        module.load_state_dict(torch.load(path / "pooling.pt", map_location="cpu", weights_only=True))
        return module


def pool(kind: str, tokens: torch.Tensor, mask: torch.Tensor, attention: AttentionPooling | None = None):
    """Pool with the pooling named ``kind``, one of ``common.poolings.POOLINGS``."""
    if kind == "mean":
        return mean_pool(tokens, mask)
    if kind == "cls":
        return cls_pool(tokens, mask)
    if kind == "attention":
        return attention.pool(tokens, mask)
    raise ValueError(f"unknown pooling '{kind}': choose one of {', '.join(POOLINGS)}")
