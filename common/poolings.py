"""The poolings our encoder has, and which of them Vespa's hugging-face-embedder can do itself.

Vespa's embedder pools ``last_hidden_state`` with its ``pooling-strategy`` (mean | cls), or reads an
already pooled output when the strategy is ``none``. A pooling Vespa cannot do (the learned attention
pooling) is therefore baked into the exported ONNX graph, and the manifest says ``none``.
"""

from __future__ import annotations

# our pooling → Vespa's pooling-strategy that reproduces it from last_hidden_state (None: bake it in)
POOLINGS: dict[str, str | None] = {"mean": "mean", "cls": "cls", "attention": None}
VESPA_POOLINGS = ("mean", "cls", "none")


def vespa_can_pool(pooling: str) -> bool:
    return POOLINGS[pooling] is not None


def vespa_pooling(pooling: str) -> str:
    """The manifest's (and services.xml's) pooling-strategy for a model that pools with ``pooling``."""
    return POOLINGS[pooling] or "none"


# How a chunked document's score comes from its chunks'
# similarities: the best chunk's, or the mean of its best two.
CHUNK_POOLINGS = ("best", "top2")
