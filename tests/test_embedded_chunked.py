"""The embedded backend, chunked: a vector per chunk, a document as close as its best chunk, the best chunk
returned with each hit; a 100-page document indexed whole, its deepest passage retrievable."""

import json

import numpy as np
import pytest
from conftest import SCIFACT, hundred_pages

from common.chunking import Chunker
from common.data import read_beir
from common.vectors import normalize
from vespa_app.embedded import BadIndexError, EmbeddedIndex


@pytest.fixture(scope="module")
def chunked(tiny_export, small_beir, tmp_path_factory):
    beir = read_beir(small_beir, "test")
    long_doc = hundred_pages(read_beir(SCIFACT, "test").corpus)
    docs = list(beir.corpus.values()) + [long_doc]
    chunker = Chunker.for_model(tiny_export, 32, 8, prefix="passage: ")
    path = tmp_path_factory.mktemp("chunked-idx") / "index"
    return EmbeddedIndex.build(path, tiny_export, docs, progress=False, chunker=chunker), beir, long_doc


def test_every_chunk_of_the_hundred_pages_is_indexed(chunked):
    idx, _, long_doc = chunked
    rows = np.flatnonzero(idx.owners == len(idx.docs) - 1)
    assert len(rows) > 1500  # ~65,000 tokens in chunks of 32 with 8 shared: nothing truncated away
    text = " ".join(idx.chunks[r][1] for r in rows)
    assert long_doc.text.split()[-1] in text and idx.chunks[rows[-1]][1].endswith(long_doc.text[-20:])
    assert idx.meta["chunking"] == {"tokens": 32, "overlap": 8} and idx.meta["vectors"] == len(idx.embeddings)


def test_deepest_passage_is_retrieved_with_its_chunk(chunked):
    idx, _, _ = chunked
    rows = np.flatnonzero(idx.owners == len(idx.docs) - 1)
    deep = rows[int(len(rows) * 0.9)]  # 90 pages in
    positions, close = idx.nearest(idx.embeddings[deep], 5)
    assert positions[0] == len(idx.docs) - 1 and close[0] == pytest.approx(1.0, abs=1e-5)
    assert idx.best_chunk(idx.embeddings[deep], positions[0])[0] == deep


def test_chunked_hnsw_agrees_with_exact_chunked_search(chunked):
    idx, beir, _ = chunked
    vectors = idx.embedder.embed(list(beir.queries.values()) + [c for _, c in idx.chunks[:200:4]], "query")
    exact, _ = idx.exact(vectors, 10)
    hits = [set(idx.nearest(v, 10)[0].tolist()) for v in vectors]
    recall = np.mean([len(h & set(e.tolist())) / 10 for h, e in zip(hits, exact)])
    assert recall >= 0.99
    # exact = brute force over every chunk, a document at its best chunk
    sims = normalize(vectors[:3]) @ normalize(idx.embeddings).T
    brute = np.array([[sims[q, idx.owners == p].max() for p in range(len(idx.docs))] for q in range(3)])
    np.testing.assert_array_equal(exact[:3], np.argsort(-brute, axis=1, kind="stable")[:, :10])


def test_hits_carry_their_best_chunk(chunked):
    idx, beir, _ = chunked
    text = next(iter(beir.queries.values()))
    hits = idx.query(text, "semantic", hits=5)
    vector = idx.embed_query(text)
    for hit in hits:
        position = [d.id for d in idx.docs].index(hit.id)
        row, cos = idx.best_chunk(vector, position)
        assert hit.passage == idx.chunks[row][1] and hit.score == pytest.approx(1 / (2 - cos), abs=1e-5)
    assert all(h.passage == "" for h in idx.query(text, "bm25", hits=3))  # BM25 embeds nothing


def test_reopened_and_checked(chunked):
    idx, _, _ = chunked
    again = EmbeddedIndex.open(idx.path)
    assert again.chunked and len(again.chunks) == len(idx.chunks)
    np.testing.assert_array_equal(again.owners, idx.owners)
    lines = (idx.path / "chunks.jsonl").read_text().splitlines()
    (idx.path / "chunks.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    try:
        with pytest.raises(BadIndexError, match="chunks.jsonl"):
            EmbeddedIndex.open(idx.path)
    finally:
        (idx.path / "chunks.jsonl").write_text("\n".join(lines) + "\n")
    assert json.loads((idx.path / "meta.json").read_text())["vectors"] == len(lines)
