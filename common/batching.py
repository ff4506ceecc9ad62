"""Batches of similar length, so padding stays small (used by every encoder: PyTorch and ONNX alike)."""

from __future__ import annotations

import numpy as np


def length_sorted_batches(lengths: list[int], batch_size: int, desc: str | None = None):
    """Index batches, longest texts first, so padding stays small and memory peaks early; with ``desc``,
    a progress bar."""
    order = np.argsort([-n for n in lengths], kind="stable")
    starts = range(0, len(order), batch_size)
    if desc:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    for start in starts:
        yield order[start : start + batch_size]
