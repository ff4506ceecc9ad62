"""Chunk boundaries with MiniLM's real tokenizer: every chunk fits the window, nothing is lost, neighbours
overlap, sentences stay whole where they fit."""

import re

import pytest
from conftest import SCIFACT

from common.chunking import Chunker
from common.data import read_beir
from training.model_dir import default_base_model


@pytest.fixture(scope="module")
def chunker():
    return Chunker.for_model(default_base_model(), max_tokens=64, overlap=16)


def words(text):
    return re.findall(r"\w+", text)


def full_tokens(chunker, text):
    return len(chunker.tokenizer.encode(text).ids)  # with [CLS] and [SEP], as the encoder sees it


def test_empty_and_short_texts(chunker):
    assert chunker.chunks("") == [] and chunker.chunks("   ") == []
    assert chunker.chunks("One short sentence.") == ["One short sentence."]
    assert chunker.passage_chunks("A title", "") == ["A title"]
    assert chunker.passage_chunks("", "Only text.") == ["Only text."]
    assert chunker.passage_chunks("", "") == [""]  # every document has a chunk, so a vector


def test_real_abstracts_fit_cover_and_overlap(chunker):
    corpus = read_beir(SCIFACT, "test").corpus
    long_docs = sorted(corpus.values(), key=lambda d: -len(d.text))[:20]
    overlaps = 0
    for doc in long_docs:
        chunks = chunker.chunks(doc.text)
        assert len(chunks) > 1
        assert all(full_tokens(chunker, c) <= 64 for c in chunks)
        # nothing lost: the chunks, in order, hold every word of the text
        assert set(words(doc.text)) <= {w for c in chunks for w in words(c)}
        assert doc.text.startswith(chunks[0]) and doc.text.endswith(chunks[-1])
        position = 0
        for c in chunks:  # spans of the text, never rewritten, in order, with nothing but space between
            start = doc.text.index(c, max(0, position - len(c)))
            assert not doc.text[position:start].strip()
            position = start + len(c)
        # neighbours share whole trailing sentences of up to 16
        # tokens; across longer ones they meet end to end
        shared = [a for a, b in zip(chunks, chunks[1:]) if doc.text.index(b) < doc.text.index(a) + len(a)]
        overlaps += len(shared)
    assert overlaps > 0


def test_sentences_stay_whole_where_they_fit(chunker):
    sentences = [f"Sentence number {i} talks about protein folding in cells." for i in range(12)]
    chunks = chunker.chunks(" ".join(sentences))
    for c in chunks:
        assert c.startswith("Sentence number") and c.endswith("cells.")
    # the overlap is whole sentences of at most 16 tokens: each
    # chunk after the first repeats the last sentence
    for a, b in zip(chunks, chunks[1:]):
        assert a.split(". ")[-1] == b.split(". ")[0] + "." or a.endswith(b.split(". ")[0] + ".")


def test_a_sentence_longer_than_the_window_is_cut_with_overlap(chunker):
    sentence = " ".join(f"word{i}" for i in range(300))  # no sentence end anywhere
    chunks = chunker.chunks(sentence)
    assert len(chunks) > 3
    assert all(full_tokens(chunker, c) <= 64 for c in chunks)
    assert words(chunks[0])[0] == "word0" and words(chunks[-1])[-1] == "word299"
    for a, b in zip(chunks, chunks[1:]):
        assert words(b)[0] in words(a)  # windows overlap


def test_title_leads_every_chunk(chunker):
    doc = max(read_beir(SCIFACT, "test").corpus.values(), key=lambda d: len(d.text))
    chunks = chunker.passage_chunks(doc.title, doc.text)
    assert len(chunks) > 1 and all(c.startswith(doc.title + " ") for c in chunks)
    assert all(full_tokens(chunker, c) <= 64 for c in chunks)


def test_prefix_and_bad_settings_are_counted_and_refused():
    base = default_base_model()
    plain = Chunker.for_model(base, 64)
    prefixed = Chunker.for_model(base, 64, prefix="passage: ")
    assert prefixed.budget == plain.budget - plain.count("passage: ")
    with pytest.raises(ValueError, match="overlap"):
        Chunker.for_model(base, 64, overlap=40)
    with pytest.raises(ValueError, match="no room"):
        Chunker.for_model(base, 4)


def test_chunk_scores_against_brute_force():
    import numpy as np

    from common.vectors import chunk_scores

    rng = np.random.default_rng(0)
    owners = np.sort(rng.integers(0, 40, 200))
    owners = np.unique(owners, return_inverse=True)[1]  # documents 0..n-1, each with at least one chunk
    sims = rng.normal(size=(7, len(owners)))
    for pooling in ("best", "top2"):
        got = chunk_scores(sims, owners, pooling)
        for d in range(owners.max() + 1):
            own = np.sort(sims[:, owners == d], axis=1)[:, ::-1]
            want = own[:, 0] if pooling == "best" else own[:, :2].mean(1)
            np.testing.assert_allclose(got[:, d], want, rtol=1e-6)


def test_eval_with_chunks(tiny_model, small_beir, capsys):
    from siamese.cli import main

    common = [
        "eval",
        "--data",
        str(small_beir),
        "--models",
        str(tiny_model),
        "--no-bm25",
        "--max-length",
        "64",
    ]
    assert main(common + ["--chunk-overlap", "8", "--chunk-pooling", "top2"]) == 0
    assert "chunked 64/8, top2" in capsys.readouterr().out
    assert main(common + ["--chunk-tokens", "128"]) == 2
    assert "--chunk-tokens 128 is above" in capsys.readouterr().err
    assert main(common + ["--chunk-tokens", "32", "--backend", "embedded", "--index", "x"]) == 2
    assert "exact search" in capsys.readouterr().err


def test_run_chooses_chunking_from_the_corpus(tiny_export):
    from common.data import Doc
    from siamese.run.options import RunOptions, chunking_choice

    short = [Doc(str(i), "t", "a short text") for i in range(10)]
    long = short[:7] + [Doc(f"l{i}", "t", "protein folding in cells. " * 40) for i in range(3)]
    assert chunking_choice(RunOptions(), long, tiny_export) == (
        None,
        "off: documents truncated to the model's window",
    )
    chunker, why = chunking_choice(RunOptions(chunk_tokens="auto"), short, tiny_export)
    assert chunker is None and why.startswith("auto → off: 0% of documents exceed 48 tokens")
    chunker, why = chunking_choice(RunOptions(chunk_tokens="auto"), long, tiny_export)
    assert (
        chunker.max_tokens == 48 and chunker.overlap == 12 and why.startswith("auto → on: 30% of documents")
    )
    chunker, why = chunking_choice(RunOptions(chunk_tokens=32, chunk_overlap=4), short, tiny_export)
    assert (chunker.max_tokens, chunker.overlap) == (
        32,
        4,
    ) and why == "on: chunks of 32 tokens sharing 4 (asked for)"
