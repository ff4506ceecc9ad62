"""BM25 from the bm25s library (English stopwords, Snowball stemming), used for hard-negative mining,
the evaluation baseline and the embedded search backend alike."""
from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import Stemmer

_STEMMER = Stemmer.Stemmer("english")


def _tokens(texts: list[str]):
    return bm25s.tokenize(list(texts), stopwords="en", stemmer=_STEMMER, show_progress=False)


class BM25:
    """Ranks a fixed list of texts; results are positions in that list."""

    def __init__(self, texts: list[str] | None = None, retriever: bm25s.BM25 | None = None):
        self.retriever = retriever or bm25s.BM25()
        if texts is not None:
            self.size = len(texts)
            self.retriever.index(_tokens(texts), show_progress=False)
        else:
            self.size = int(self.retriever.scores["num_docs"])

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores), each (len(queries), k'), best first, k' = min(k, corpus size)."""
        k = min(k, self.size)
        positions, scores = self.retriever.retrieve(_tokens(queries), k=k, show_progress=False, n_threads=1)
        return np.asarray(positions), np.asarray(scores)

    def save(self, path) -> None:
        self.retriever.save(str(path))

    @classmethod
    def load(cls, path) -> "BM25":
        return cls(retriever=bm25s.BM25.load(str(Path(path))))
