"""Cutting passages longer than the encoder's window into chunks: one implementation for evaluation, the
embedded backend, training and the feed.

A chunk holds at most ``max_tokens`` tokens of the model's own tokenizer, counting the special tokens
([CLS], [SEP]) and the passage prefix, so the encoder sees all of it. Sentences stay whole where they fit; a
sentence longer than a chunk is cut at token boundaries. Consecutive chunks share ``overlap`` tokens: whole
sentences from the end of the previous chunk, or tokens where a long sentence is cut.

    chunker = Chunker.from_file("export/tokenizer.json", max_tokens=128, overlap=32)
    chunker.chunks("First sentence. Second sentence. ...")   # ['First sentence. Second ...', ...]
    chunker.passage_chunks(doc.title, doc.text)               # the title leads each chunk
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from .errors import ConfigError

# A sentence ends at . ! or ? followed by space and what can start a sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")


@dataclass
class _Piece:
    start: int  # character span in the text
    end: int
    tokens: int


# Tokens neighbouring chunks share unless told: best on the guards (CISI +1.0 over none) for 10 % more vectors
# (benchmarks/chunking.py, docs/long-documents.md); at most a quarter of the chunk.
CHUNK_OVERLAP = 32


def default_overlap(tokens: int) -> int:
    """The overlap of chunks of ``tokens`` tokens when none is
    given: one default for run, app build and eval."""
    return min(CHUNK_OVERLAP, tokens // 4)


class Chunker:
    def __init__(self, tokenizer: Tokenizer, max_tokens: int, overlap: int = 0, prefix: str = ""):
        if max_tokens < 8:
            raise ConfigError(f"max_tokens {max_tokens} leaves no room for text")
        if not 0 <= overlap < max_tokens // 2:
            raise ConfigError(
                f"overlap {overlap} must be at least 0 and under half of max_tokens ({max_tokens})"
            )
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: counting must not truncate or pad
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.max_tokens, self.overlap = max_tokens, overlap
        specials = len(self.tokenizer.encode("", add_special_tokens=True).ids)
        self.budget = max_tokens - specials - self.count(prefix)
        if self.budget < 4:
            raise ConfigError(f"max_tokens {max_tokens} leaves no room for text after the prefix {prefix!r}")

    @classmethod
    def from_file(cls, tokenizer_json, max_tokens: int, overlap: int = 0, prefix: str = "") -> Chunker:
        return cls(Tokenizer.from_file(str(tokenizer_json)), max_tokens, overlap, prefix)

    @classmethod
    def for_model(cls, model_dir, max_tokens: int, overlap: int = 0, prefix: str = "") -> Chunker:
        """From a model or export directory's ``tokenizer.json``."""
        return cls.from_file(Path(model_dir) / "tokenizer.json", max_tokens, overlap, prefix)

    def spec(self) -> dict:
        """The chunking as packages and indexes record it."""
        return {"tokens": self.max_tokens, "overlap": self.overlap}

    def count(self, text: str) -> int:
        """Tokens of ``text`` without special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids) if text else 0

    def fits(self, text: str, reserve: int = 0) -> bool:
        return self.count(text) <= self.budget - reserve

    def chunks(self, text: str, reserve: int = 0) -> list[str]:
        """``text`` in chunks of at most the budget less ``reserve`` tokens; [] for an empty text."""
        budget = self.budget - reserve
        if budget < 4:
            raise ConfigError(f"{reserve} reserved tokens leave no room in a {self.max_tokens}-token chunk")
        text = text.strip()
        if not text:
            return []
        if self.count(text) <= budget:
            return [text]
        pieces = [p for s in self._sentences(text) for p in self._cut(text, s, budget)]
        chunks, i = [], 0
        while i < len(pieces):
            j, total = i, 0
            while j < len(pieces) and total + pieces[j].tokens <= budget:
                total += pieces[j].tokens
                j += 1
            chunks.append(text[pieces[i].start : pieces[j - 1].end])
            if j == len(pieces):
                break
            k, back = j, 0  # step back over whole trailing sentences that fit in the overlap
            while k - 1 > i and back + pieces[k - 1].tokens <= self.overlap:
                back += pieces[k - 1].tokens
                k -= 1
            i = k
        return chunks

    def passage_chunks(self, title: str, text: str) -> list[str]:
        """The chunks of a passage, each led by its title (the title alone if it has no text). A title that
        would take more than half a chunk is chunked with the text instead. Every passage has at least one
        chunk, an empty one for an empty passage, so every document has a vector."""
        title, text = title.strip(), text.strip()
        title_tokens = self.count(title) + 1 if title else 0
        if not title or title_tokens > self.budget // 2:
            return self.chunks(f"{title} {text}".strip()) or [""]
        if not text:
            return [title]
        return [f"{title} {chunk}" for chunk in self.chunks(text, reserve=title_tokens)]

    def _sentences(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for m in _SENTENCE_END.finditer(text):
            spans.append((start, m.start()))
            start = m.end()
        spans.append((start, len(text)))
        return spans

    def _cut(self, text: str, span: tuple[int, int], budget: int) -> list[_Piece]:
        """A sentence as one piece, or, longer than ``budget``, as
        windows of tokens that overlap by ``overlap``."""
        start, end = span
        n = self.count(text[start:end])
        if n <= budget:
            return [_Piece(start, end, n)]
        encoding = self.tokenizer.encode(text[start:end], add_special_tokens=False)
        offsets, word = encoding.offsets, encoding.word_ids
        pieces, first = [], 0
        while first < len(offsets):
            last = min(first + budget, len(offsets)) - 1
            # Windows end and start on word boundaries, unless one word is longer than a window.
            while last + 1 < len(offsets) and last > first and word[last] == word[last + 1]:
                last -= 1
            if last == first and first + 1 < len(offsets) and word[first] == word[first + 1]:
                last = min(first + budget, len(offsets)) - 1
            # A window cut inside a word can tokenise longer than its
            # tokens did in context: shrink until it fits.
            while True:
                a, b = start + offsets[first][0], start + offsets[last][1]
                tokens = self.count(text[a:b])
                if tokens <= budget or last == first:
                    break
                last -= 1
            pieces.append(_Piece(a, b, tokens))
            if last == len(offsets) - 1:
                break
            following = max(last + 1 - self.overlap, first + 1)
            while following > first + 1 and word[following - 1] == word[following]:
                following -= 1
            first = following
        return pieces
