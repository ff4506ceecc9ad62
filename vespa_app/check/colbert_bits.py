"""Vespa's colbert field against our token vectors: packed sign bits (int8 cells) or bfloat16 vectors."""

from __future__ import annotations

import numpy as np

from common.vectors import cosine, pack_bits
from vespa_app.check.bounds import MIN_COSINE_BF16, SIGN_NOISE


def token_matrix(by_label: dict) -> np.ndarray:
    """A mapped-indexed tensor as Vespa's verifier returns it ({"0": [...], "1": [...]}) → (tokens, cells)."""
    return np.asarray([by_label[str(i)] for i in range(len(by_label))], dtype=np.float32)


def sign_agreement(packed: np.ndarray, ours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per token: are Vespa's packed int8 cells our vectors' sign bits, and are they apart from the signs of
    values within ``SIGN_NOISE`` of 0 (boolean arrays)."""
    differ = np.unpackbits(packed.astype(np.int8).view(np.uint8), axis=-1) != np.unpackbits(
        pack_bits(ours), axis=-1
    )
    return ~differ.any(-1), ~(differ & (np.abs(ours) >= SIGN_NOISE)).any(-1)


def colbert_agreement(theirs: dict, ours: np.ndarray) -> tuple[int, float]:
    """(token vectors in Vespa's colbert field, share of them equal to ours): the packed sign bits of an int8
    field, or a bfloat16 field's vectors within bfloat16 precision. Another token count agrees on nothing."""
    if len(theirs) != len(ours):
        return len(theirs), 0.0
    cells = token_matrix(theirs)
    if cells.shape[1] * 8 == ours.shape[1]:
        return len(theirs), float(sign_agreement(cells, ours)[0].mean())
    return len(theirs), float((cosine(cells, ours) >= MIN_COSINE_BF16).mean())
