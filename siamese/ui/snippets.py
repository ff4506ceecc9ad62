"""A hit's snippet with the query's words marked, as pieces the template escapes: no text of a document or a
query ever reaches the page unescaped, so a title holding ``<script>`` shows as text."""

from __future__ import annotations

import re

WORD = re.compile(r"\w+", re.UNICODE)
STOP = frozenset(
    "a an and are as at be by for from how in is it of on or that the this to was what when where which "
    "who why with does do did can".split()
)
WINDOW = 40  # words of a snippet


def query_terms(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text) if w.lower() not in STOP and len(w) > 1}


def snippet(text: str, terms: set[str], window: int = WINDOW) -> list[tuple[str, bool]]:
    """``window`` words of ``text`` around its first query term (its start if none), as (piece, marked)."""
    words = text.split()
    first = next((i for i, w in enumerate(words) if _bare(w) in terms), 0)
    start = max(0, first - window // 4)
    shown = words[start : start + window]
    pieces = [("… " if start else "", False)]
    for i, word in enumerate(shown):
        pieces.append((word, _bare(word) in terms))
        pieces.append((" " if i < len(shown) - 1 else "", False))
    if start + window < len(words):
        pieces.append((" …", False))
    return [p for p in pieces if p[0]]


def _bare(word: str) -> str:
    return "".join(WORD.findall(word)).lower()
