"""What `siamese app check` sends through Vespa's code: real documents of each kind the feed meets, and query
texts, plain and hostile."""

from __future__ import annotations

from common.data import Doc

PLAIN_QUERIES = [
    "What does the immune system do against viral infection?",
    "Vitamin D deficiency and bone density in older adults",
]
# Texts that would change the query if they were read as YQL, query syntax or JSON rather than as data.
HOSTILE_QUERIES = [
    "quotes \"inside\" and 'single' ones",
    "braces {targetHits:1} and nearestNeighbor(embedding, q) in the text",
    '") or true or ("',
    'back\\slash \\" and \\u0041 escapes',
    "select * from sources * where true; -- and or not userQuery()",
    "naïve café, 東京 — ümlaut",
    "smoking -induced +cancer title:lung TNF-α NOT (a OR b)",
    ("protein folding and misfolding in neurodegenerative disease " * 200)[:10_000],
]


def sample_documents(docs: list[Doc]) -> list[tuple[str, Doc]]:
    """Real documents of each kind the feed meets. Title-only and text-only ones are made from real
    documents when the corpus has none (SciFact gives every abstract a title)."""
    docs = [d for d in docs if d.title or d.text]
    if not docs:
        return []
    titled = next((d for d in docs if d.title and d.text), docs[0])
    title_only = next((d for d in docs if d.title and not d.text), None) or Doc(
        f"{titled.id}-title-only", titled.title, ""
    )
    text_only = next((d for d in docs if d.text and not d.title), None) or Doc(
        f"{titled.id}-text-only", "", titled.text
    )
    non_ascii = next((d for d in docs if not d.passage.isascii() and d.id != titled.id), None)
    longest = max(docs, key=lambda d: len(d.passage))
    chosen = [("title", titled), ("title-only", title_only), ("text-only", text_only)]
    if non_ascii:
        chosen.append(("non-ASCII", non_ascii))
    chosen.append(("long", longest))
    return chosen
