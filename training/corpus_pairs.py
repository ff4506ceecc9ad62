"""Pairs made from the corpus itself, so every document takes part in training, not only the few with a
labelled query (no labels needed):

- ``title``: a document's title → its body (where it has both);
- ``ict``: inverse cloze (Lee et al., 2019): one sentence → the rest of its passage, the sentence removed;
- ``crop``: two independent random spans of the passage (Contriever, Izacard et al., 2022), 10–50 % of its
  words each.

No pair has a text as its own positive; a document too short for a kind yields no pair of that kind.
"""

from __future__ import annotations

import random
import re

from common.data import Doc

from .pairs import Pair

KINDS = ("title", "ict", "crop")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
MIN_WORDS = 8  # a query or positive shorter than this carries too little to learn from


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def title_pairs(docs: list[Doc], rng: random.Random) -> list[Pair]:
    return [
        Pair(d.title.strip(), d.text.strip(), source="title")
        for d in docs
        if d.title.strip() and len(d.text.split()) >= MIN_WORDS and d.title.strip() != d.text.strip()
    ]


def ict_pairs(docs: list[Doc], rng: random.Random) -> list[Pair]:
    pairs = []
    for d in docs:
        parts = sentences(d.text)
        if len(parts) < 2:
            continue
        i = rng.randrange(len(parts))
        rest = " ".join(parts[:i] + parts[i + 1 :])
        if len(parts[i].split()) >= 4 and len(rest.split()) >= MIN_WORDS:
            pairs.append(Pair(parts[i], f"{d.title} {rest}".strip(), source="ict"))
    return pairs


def crop_pairs(docs: list[Doc], rng: random.Random) -> list[Pair]:
    def span(words: list[str]) -> str:
        n = max(MIN_WORDS, int(len(words) * rng.uniform(0.1, 0.5)))
        start = rng.randrange(len(words) - n + 1)
        return " ".join(words[start : start + n])

    pairs = []
    for d in docs:
        words = d.passage.split()
        if len(words) < 2 * MIN_WORDS:
            continue
        query, positive = span(words), span(words)
        if query != positive:
            pairs.append(Pair(query, positive, source="crop"))
    return pairs


MAKERS = {"title": title_pairs, "ict": ict_pairs, "crop": crop_pairs}


def corpus_pairs(docs: list[Doc], kinds: list[str], n: int, seed: int = 0) -> list[Pair]:
    """Up to ``n`` pairs of the given kinds, shared evenly, drawn from ``docs`` with a fixed seed."""
    rng = random.Random(seed)
    per_kind = n // max(len(kinds), 1)
    chosen = []
    for kind in kinds:
        made = MAKERS[kind](docs, rng)
        chosen += rng.sample(made, min(per_kind, len(made)))
    return chosen
