"""BM25 from the bm25s library (English stopwords, Snowball stemming), used for hard-negative mining,
the evaluation baseline and the embedded search backend alike. bm25s scores; the ranking is ours
(``common.vectors.top_k``), so that documents with equal scores come in the same order on every machine."""

from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from .vectors import top_k

_STEMMER = Stemmer.Stemmer("english")


def _tokens(texts: list[str], return_ids: bool = True):
    return bm25s.tokenize(
        list(texts), stopwords="en", stemmer=_STEMMER, show_progress=False, return_ids=return_ids
    )


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
        scores = np.zeros((len(queries), self.size), dtype=np.float32)
        for row, words in zip(scores, _tokens(queries, return_ids=False)):
            known = self.retriever.get_tokens_ids(words)
            if known:  # a query with no word of the corpus scores every document 0
                row[:] = self.retriever.get_scores_from_ids(known)
        return top_k(scores, k)

    def save(self, path) -> None:
        self.retriever.save(str(path))

    @classmethod
    def load(cls, path) -> BM25:
        return cls(retriever=bm25s.BM25.load(str(Path(path))))
